"""Deleting and repairing a repeat, emulated over the reference decoder (not a decoding
option: measured, not built). The GMLM's repeats sit in length candidates one word too long, so: decode (T=8 K=2,
repeat_remask and repeat_penalty 0.1), then for each output that repeats itself (`gmlm eval`'s measure) take its
first repeated word of 5+ letters or repeated word bigram, and either
  - delete: drop the less confident occurrence (its word pieces), mask W positions on each side of the gap and
    run P repair passes at the shorter length (each further pass re-masks the less confident half), or
  - replace: keep the length, mask the occurrence and W positions on each side, ban the repeated piece at its
    first position, and run P repair passes;
then keep the repair always ("always"), or when its mean confidence beats the original's less 0.1 and less 0.1 again
if it still repeats ("by confidence"). BLEU, repetition rate and length ratio for each variant.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/repeat_repair.py [--split val] [--out FILE.md]
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from gmlm_engine.common import encode_sources
from gmlm_engine.data import load_split
from gmlm_engine.pytorch.reference import ReferenceTranslator
from gmlm_engine.tools.evaluate import format_table, repeats, score

PENALTY = 0.1
VARIANTS = [("delete", 1, 1), ("delete", 2, 2), ("delete", 3, 2), ("replace", 0, 1), ("replace", 1, 2), ("replace", 2, 2)]


class Capturing(ReferenceTranslator):
    """The reference decoder, keeping every scored candidate's output and confidences (by output)."""
    conf: dict = {}

    @staticmethod
    def _output(tokens, conf, lengths, r, o):
        ids, s = ReferenceTranslator._output(tokens, conf, lengths, r, o)
        L = int(lengths[r])
        t, c = tokens[r, :L].tolist(), conf[r, :L].tolist()
        keep = [j for j in range(L) if not o.stutter_remask or j == 0 or t[j] != t[j - 1]]
        Capturing.conf[tuple(ids)] = [c[j] for j in keep]
        return ids, s


def words(pieces: list[str]) -> list[tuple[int, int, str]]:
    """(begin, end, lower-cased letters and digits) of each word: a piece starting with '▁' and what follows it."""
    out: list[list] = []
    for j, p in enumerate(pieces):
        if p.startswith("\u2581") or not out:
            out.append([j, j + 1, p])
        else:
            out[-1][1], out[-1][2] = j + 1, out[-1][2] + p
    return [(a, b, re.sub(r"\W", "", w.lower())) for a, b, w in out if re.sub(r"\W", "", w)]


def first_repeat(pieces: list[str], conf: list[float]) -> tuple[int, int] | None:
    """The piece span of the less confident occurrence of the first repeated 5+-letter word or word bigram."""
    ws = words(pieces)
    for j in range(len(ws)):
        for i in range(j):
            if len(ws[j][2]) >= 5 and ws[i][2] == ws[j][2]:
                spans = [(ws[i][0], ws[i][1]), (ws[j][0], ws[j][1])]
            elif i >= 1 and i != j - 1 and ws[i][2] == ws[j][2] and ws[i - 1][2] == ws[j - 1][2]:
                spans = [(ws[i - 1][0], ws[i][1]), (ws[j - 1][0], ws[j][1])]
            else:
                continue
            return min(spans, key=lambda s: (float(np.mean(conf[s[0]:s[1]])), -s[0]))
    return None


@torch.inference_mode()
def repair(tr, src: list[int], ids: list[int], conf: list[float], span, mode: str, w: int, passes: int):
    m, cfg = tr.model, tr.cfg
    a, b = span
    if mode == "delete":
        new, cf, lo, hi, ban = ids[:a] + ids[b:], conf[:a] + conf[b:], a - w, a + w, None
    else:
        new, cf, lo, hi, ban = list(ids), list(conf), a - w, b + w, (a, ids[a])
    L = len(new)
    if L == 0:
        return None
    toks, c = torch.tensor([new]), torch.tensor([cf])
    mask = torch.zeros(1, L, dtype=torch.bool)
    mask[0, max(0, lo):min(L, hi)] = True
    s = torch.tensor([src])
    sm = torch.ones_like(s, dtype=torch.bool)
    ckv = m.cross_kv(m.encode(s, sm))
    for p in range(passes):
        inp = torch.where(mask, torch.full_like(toks, cfg.mask_id), toks)
        h = m.decode(inp, torch.ones_like(inp, dtype=torch.bool), None, sm, ckv, torch.zeros(1, dtype=torch.long))
        lp = F.log_softmax(m.vocab_logits(h[mask]).float(), -1)
        pos = mask[0].nonzero().squeeze(1).tolist()
        if ban is not None and ban[0] in pos:
            lp[pos.index(ban[0]), ban[1]] = float("-inf")
        pred = lp.argmax(-1)
        toks[mask], c[mask] = pred, lp.gather(1, pred[:, None]).squeeze(1)
        n = len(pos) // 2
        if p + 1 == passes or n == 0:
            break
        order = torch.tensor(pos)[torch.argsort(c[0, pos], stable=True)]
        mask = torch.zeros_like(mask)
        mask[0, order[:n]] = True
    out, cc = toks[0].tolist(), c[0].tolist()
    keep = [j for j in range(L) if j == 0 or out[j] != out[j - 1]]
    return [out[j] for j in keep], [cc[j] for j in keep]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="val")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    src, ref = load_split(args.data_dir, args.split, "en", "de")
    tr = Capturing("default", threads=2)
    tok = tr.tokenizer
    res = tr.translate_batch(src, repeat_remask=True, repeat_penalty=PENALTY, max_batch_size=64)
    srcs = encode_sources(tok, tr.cfg, src)
    base = [r.text for r in res]
    s0 = score(base, ref)
    rows = [{"variant": "decoded (T=8 K=2, both rules)", "repaired": 0, "bleu": s0["bleu"],
             "repetition_%": s0["repetition"], "len_ratio": s0["len_ratio"]}]
    for mode, w, passes in VARIANTS:
        always, chosen, n = list(base), list(base), 0
        for i, (s, r) in enumerate(zip(srcs, res)):
            if not repeats(r.text):
                continue
            ids = [tok.sp.PieceToId(x) for x in r.tokens]
            conf = Capturing.conf[tuple(ids)]
            span = first_repeat(r.tokens, conf)
            got = span and repair(tr, s, ids, conf, span, mode, w, passes)
            if not got:
                continue
            n += 1
            text = tok.decode(got[0])
            always[i] = text
            if np.mean(got[1]) - (PENALTY if repeats(text) else 0.0) > np.mean(conf) - PENALTY:
                chosen[i] = text
        for how, hyp in (("always", always), ("by confidence", chosen)):
            sc = score(hyp, ref)
            rows.append({"variant": f"{mode}, window {w}, {passes} pass(es), {how}", "repaired": n, "bleu": sc["bleu"],
                         "repetition_%": sc["repetition"], "len_ratio": sc["len_ratio"]})
        print(rows[-2], rows[-1], file=sys.stderr, flush=True)
    table = format_table(rows, ["variant", "repaired", "bleu", "repetition_%", "len_ratio"])
    print(table)
    if args.out:
        Path(args.out).write_text(f"# Deleting and repairing a repeat, {args.split} (reference decoder, float32)\n\n"
                                  f"`python bench/repeat_repair.py {' '.join(argv or sys.argv[1:])}`\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
