"""Is the GMLM's BLEU limited by its length head or by its token predictions?

Decodes val with the PyTorch reference decoder three ways: the model's own length candidates, lengths pulled
towards a source-length estimate (target = a * source + b, least squares on train, both in SentencePiece tokens),
and lengths forced to that estimate. Prints BLEU, brevity penalty and length ratio for each.

    python bench/length_probe.py --model models/gmlm-en-de --data-dir $GMLM_DATA_DIR     # ~2 minutes, 2 cores

Measured 2026-12-02 (T=4 K=3, val): own lengths 8.91 BLEU (ratio 0.67), pulled 9.25 (0.81), forced 9.06 (0.88):
longer outputs are mostly wrong tokens, so the token predictor, not the length head, bounds this model's quality.
"""
from __future__ import annotations

import argparse

import numpy as np
import sacrebleu
import torch
import torch.nn.functional as F

from gmlm_engine.config import read_model_dir
from gmlm_engine.data import load_split
from gmlm_engine.pytorch.reference import ReferenceTranslator
from gmlm_engine.tokenizer import Tokenizer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="models/gmlm-en-de")
    p.add_argument("--data-dir", default=None, help="Multi30k (default: $GMLM_DATA_DIR)")
    p.add_argument("--split", default="val")
    p.add_argument("--fit-pairs", type=int, default=8000, help="train pairs for the length fit")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    tr = ReferenceTranslator(args.model, threads=args.threads)
    tok = Tokenizer(read_model_dir(args.model).spm_path)
    tsrc, ttgt = load_split(args.data_dir, "train", "en", "de")
    s = np.array([len(x) for x in tok.encode(tsrc[:args.fit_pairs])])
    t = np.array([len(x) for x in tok.encode(ttgt[:args.fit_pairs])])
    a, b = np.polyfit(s, t, 1)
    print(f"length fit on train: target = {a:.3f} * source + {b:.3f} (correlation {np.corrcoef(s, t)[0, 1]:.3f})")

    # Wrap the model's encoder (to see each source's length) and length head (to re-weight its log-probabilities).
    m = tr.model
    encode, length_logits = m.encode, m.length_logits
    seen: dict[str, torch.Tensor] = {}
    pull = {"weight": 0.0}

    def encode_and_remember(src_ids, src_mask):
        seen["source_len"] = src_mask.sum(-1).float()
        return encode(src_ids, src_mask)

    def pulled_length_logits(enc):
        logits = length_logits(enc)
        if pull["weight"] == 0:
            return logits
        lengths = torch.arange(1, logits.shape[-1] + 1, dtype=torch.float32)
        target = torch.round(a * seen["source_len"] + b)[:, None]
        return F.log_softmax(logits.float(), -1) - pull["weight"] * (lengths[None] - target).abs()

    m.encode, m.length_logits = encode_and_remember, pulled_length_logits
    src, ref = load_split(args.data_dir, args.split, "en", "de")
    for name, weight in (("own lengths", 0.0), ("pulled to source estimate", 0.5), ("forced to estimate", 100.0)):
        pull["weight"] = weight
        for T, K in ((1, 1), (4, 3)):
            hyp = [r.text for r in tr.translate_batch(src, iterations=T, length_beam=K, max_batch_size=64)]
            bl = sacrebleu.corpus_bleu(hyp, [ref])
            print(f"{name:<26} T={T} K={K}: BLEU {bl.score:5.2f}  brevity penalty {bl.bp:.3f}  "
                  f"length ratio {bl.sys_len / bl.ref_len:.3f}", flush=True)


if __name__ == "__main__":
    main()
