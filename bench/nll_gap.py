"""How much does a model overfit? Mean negative log-likelihood per target piece (eval mode, no label
smoothing) on the first N training pairs and on val, for each model directory given.

    python bench/nll_gap.py models/ar-en-de runs/ar5/last --data-dir $GMLM_DATA_DIR    # ~1 minute per model, 2 cores

GMLM models are scored on the training objective's masks (a fixed seed: the same masks for every model);
AR models on teacher-forced targets. A train figure far below val means the model memorised its data.
"""
from __future__ import annotations

import argparse

import torch

from gmlm_engine.data import load_split
from gmlm_engine.pytorch.model import load_torch_model
from gmlm_engine.tokenizer import Tokenizer
from gmlm_engine.pytorch.train import Examples, validate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="model directories")
    p.add_argument("--data-dir", default=None, help="Multi30k (default: $GMLM_DATA_DIR)")
    p.add_argument("--train-pairs", type=int, default=1014, help="first N training pairs (val has 1014)")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.train_pairs <= 0:
        raise ValueError("--train-pairs must be > 0")
    torch.set_num_threads(args.threads)
    splits = {"train": load_split(args.data_dir, "train", "en", "de"), "val": load_split(args.data_dir, "val", "en", "de")}
    print("| model | train NLL | val NLL | gap |\n| --- | --- | --- | --- |")
    for path in args.models:
        model, files = load_torch_model(path)
        tok, cfg = Tokenizer(files.spm_path), files.config
        nll = {}
        for name, (src, ref) in splits.items():
            if name == "train":
                src, ref = src[:args.train_pairs], ref[:args.train_pairs]
            nll[name] = validate(model, Examples(tok, cfg, src, ref), cfg, torch.device("cpu"), tok, src, ref, 0)["val_loss"]
        print(f"| {path} | {nll['train']:.3f} | {nll['val']:.3f} | {nll['val'] - nll['train']:.3f} |")


if __name__ == "__main__":
    main()
