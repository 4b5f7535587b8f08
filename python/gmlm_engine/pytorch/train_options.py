"""The options of `gmlm train`, apart from train.py so that building the CLI parser does not import torch
(`gmlm translate` runs on the engine alone, and `gmlm bench` must load CTranslate2 before torch)."""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--objective", choices=("gmlm", "ar", "ctc"), required=True)
    p.add_argument("--ctc-upsample", type=lambda v: float(v) if "." in v else int(v), default=2,
                   help="ctc: the canvas has this many positions per encoder token, rounded up (2, 1.5, ...; "
                        "--max-target-len bounds it)")
    p.add_argument("--out", required=True, help="output folder (checkpoints, logs)")
    p.add_argument("--data-dir", default=None, help="Multi30k folder (default: $GMLM_DATA_DIR)")
    p.add_argument("--src-lang", default="en")
    p.add_argument("--tgt-lang", default="de")
    p.add_argument("--train-target", default=None, help="file of training targets (e.g. distilled) "
                   "replacing the reference targets, aligned with the training sources")
    p.add_argument("--repeat-fallback", action="store_true",
                   help="with --train-target: where a target repeats itself (gmlm eval's repetition test: a word "
                        "bigram or a word of 5+ letters twice) and the split's reference does not, train on the "
                        "reference (the student should not learn its teacher's loops)")
    p.add_argument("--train-limit", type=int, default=0, help="use only the first N training pairs")
    p.add_argument("--spm", default=None, help="existing SentencePiece model (default: train one)")
    p.add_argument("--vocab-size", type=int, default=8000)
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--d-kv", type=int, default=64)
    p.add_argument("--d-ff", type=int, default=1024)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--encoder-layers", type=int, default=4)
    p.add_argument("--decoder-layers", type=int, default=3)
    p.add_argument("--ffn", choices=("relu", "gated-gelu"), default="relu")
    p.add_argument("--untie", action="store_true", help="separate lm_head instead of tied embeddings")
    p.add_argument("--max-source-len", type=int, default=96)
    p.add_argument("--max-target-len", type=int, default=96)
    p.add_argument("--init-from", default=None, help="initialise from a Hugging Face T5 checkpoint folder "
                   "(matching names and shapes are copied)")
    p.add_argument("--init-stretch-layers", action="store_true",
                   help="with --init-from into a stack of another depth: block i takes the checkpoint's block "
                        "floor(i * its depth / this depth) (3 encoder blocks -> 0,0,1,1,2,2 of 6; 3 decoder "
                        "blocks -> block 0 of 1) instead of copying only the blocks whose names match")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=1000)
    p.add_argument("--schedule-offset", type=int, default=0,
                   help="the learning-rate schedule starts this many steps in (continuing a model given by "
                        "--init-from on its own schedule instead of warming up again)")
    p.add_argument("--restart-warmup", type=int, default=0,
                   help="the first N steps of this run ramp the learning rate linearly up to the schedule's value "
                        "(with --schedule-offset: a fresh AdamW state would otherwise take full-size steps at once; "
                        "0: off)")
    p.add_argument("--cooldown-steps", type=int, default=0,
                   help="the last N steps before --max-steps decay the learning rate linearly to 0 (0: off); "
                        "set it when resuming to finish a run on a cool-down")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--embedding-lr-scale", type=float, default=None,
                   help="learning-rate multiplier of the std-1 tables (shared embedding, decoder positions); "
                   "default sqrt(d_model), which makes AdamW move them as fast as the rest (1: T5's original)")
    p.add_argument("--query-lr-scale", type=float, default=1.0,
                   help="learning-rate multiplier of the attention queries (T5 folds 1/sqrt(d_kv) into q's "
                   "init, so AdamW moves q sqrt(d_kv) times faster than k, v); 0: d_kv^-0.5")
    p.add_argument("--autocast", choices=("auto", "bf16", "off"), default="auto",
                   help="bf16 autocast: auto = on CUDA and on CPUs with AMX-BF16/AVX512-BF16, else fp32")
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--dropout", type=float, default=0.1,
                   help="dropout on embeddings, residual branches and final norms (and, unless set apart "
                        "below, attention probabilities and feed-forward hidden units)")
    p.add_argument("--attention-dropout", type=float, default=None,
                   help="dropout on the attention probabilities (default: --dropout)")
    p.add_argument("--activation-dropout", type=float, default=None,
                   help="dropout on the feed-forward hidden units (default: --dropout)")
    p.add_argument("--clip", type=float, default=1.0)
    p.add_argument("--max-tokens", type=int, default=4096, help="padded target+source tokens per batch")
    p.add_argument("--max-steps", type=int, default=100_000)
    p.add_argument("--max-minutes", type=float, default=0, help="stop after this wall time (0: no limit)")
    p.add_argument("--length-loss-weight", type=float, default=0.1)
    p.add_argument("--corrupt-keep", type=float, default=0.0, help="gmlm: share of noised positions kept")
    p.add_argument("--corrupt-random", type=float, default=0.0, help="gmlm: share replaced by random tokens")
    p.add_argument("--glancing-ratio", type=float, default=0.0,
                   help="gmlm and ctc: glancing training (GLAT; ctc: over the best alignment): reveal this share of the first pass's wrong positions' "
                        "count as reference tokens and mask the rest (0: off, the uniform masking ratio only)")
    p.add_argument("--glancing-share", type=float, default=1.0,
                   help="gmlm: share of each batch's sentences masked by glancing; the rest keep the uniform ratio")
    p.add_argument("--predicted-context", type=float, default=0.0, metavar="SHARE",
                   help="gmlm: this share of each batch's sentences is trained as decoding's pass 1 sees it: the "
                        "lowest-confidence positions of the model's own first pass masked, its predictions around "
                        "them (0: off)")
    p.add_argument("--correction", type=float, default=0.0, metavar="SHARE",
                   help="gmlm: correction training for update='all' decoding: this share of each batch's sentences "
                        "holds the model's own predictions at part of the masked positions, and is trained at "
                        "every position (0: off; validation then decodes with update='all')")
    p.add_argument("--multistep", type=float, default=0.0, metavar="WEIGHT",
                   help="gmlm: multi-step distillation (DiMS-like): add WEIGHT x KL(teacher || model) at the masked "
                        "positions, the teacher (the --init-from model, frozen) decoding two passes where the model "
                        "gets one (0: off)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-bleu-sentences", type=int, default=200)
    p.add_argument("--keep-last", type=int, default=5, help="checkpoints kept for averaging")
    p.add_argument("--average-last", type=int, default=5, help="average the last N checkpoints at the end (0: off)")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--no-progress", action="store_true")
