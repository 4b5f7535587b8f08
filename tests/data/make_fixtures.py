"""Regenerate tests/data/tiny-gmlm, tiny-ar and tiny-ctc (random tiny models, about 200 KB each).

    GMLM_DATA_DIR=../shared/data/multi30k python tests/data/make_fixtures.py [OBJECTIVE ...]

(named objectives only: the others are left as they are; tiny-ctc was added on 2026-12-07 this way.)

The SentencePiece model (vocab 256) is trained on the first 3000 Multi30k training pairs; the
weights are random (seeded): the fixtures test loading, shapes, parity and error handling, not quality.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from gmlm_engine.config import ModelConfig
from gmlm_engine.data import read_lines, split_file
from gmlm_engine.pytorch.model import T5Model, save_model_dir
from gmlm_engine.tokenizer import train_spm

HERE = Path(__file__).resolve().parent


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for lang in ("en", "de"):
            f = Path(tmp) / f"train.{lang}"
            f.write_text("\n".join(read_lines(split_file(None, "train", lang))[:3000]) + "\n")
            files.append(f)
        spm_path = Path(tmp) / "spm.model"
        tok = train_spm(files, spm_path, vocab_size=256)
        wanted = sys.argv[1:] or ["gmlm", "ar", "ctc"]
        for objective, ffn, tie in (("gmlm", "relu", True), ("ar", "gated-gelu", False), ("ctc", "relu", True)):
            if objective not in wanted:
                continue
            torch.manual_seed(7)
            cfg = ModelConfig(objective=objective, vocab_size=tok.vocab_size, d_model=32, d_kv=8, d_ff=64,
                              num_heads=4, num_encoder_layers=2, num_decoder_layers=2, feed_forward_proj=ffn,
                              tie_word_embeddings=tie, max_source_len=64, max_target_len=48,
                              relative_attention_num_buckets=16, relative_attention_max_distance=32,
                              mask_id=tok.mask_id, len_id=tok.len_id, ctc_upsample=2 if objective == "ctc" else 0)
            model = T5Model(cfg.validate())
            save_model_dir(model, HERE / f"tiny-{objective}", spm_path,
                           {"note": "random weights (seed 7), made by tests/data/make_fixtures.py"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
