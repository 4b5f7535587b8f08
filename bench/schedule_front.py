"""Refinement schedules at equal work: BLEU and candidate passes per sentence of the linear schedule
(T x K), length-candidate pruning (length_beam_keep=1), early_stop and threshold re-masking.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/schedule_front.py [--split val] [--model default]

Engine, float32, 1 thread, batches of 64. "passes" counts every candidate's decoder passes (a pruned
candidate ran one), i.e. the decoder work per sentence in candidate passes; the linear schedule's is T x K.
Results: bench/results/schedule_front_{split}.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from gmlm_engine import Translator
from gmlm_engine.common import encode_sources
from gmlm_engine.options import validate_options
from gmlm_engine.data import load_split
from gmlm_engine.engine import engine_options
from gmlm_engine.tools.evaluate import score


def configs() -> list[dict]:
    out = [dict(iterations=t, length_beam=k) for t in (4, 6, 8, 10) for k in (1, 2, 3)]
    for t, k in ((8, 2), (10, 3), (8, 3)):
        out += [dict(iterations=t, length_beam=k, length_beam_keep=1), dict(iterations=t, length_beam=k, early_stop=True)]
    out += [dict(iterations=t, length_beam=k, remask="threshold", threshold=thr)
            for thr in (0.5, 0.7, 0.8, 0.9, 0.95) for t, k in ((8, 2), (10, 3), (10, 2))]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data-dir", default=os.environ.get("GMLM_DATA_DIR"))
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    if not args.data_dir:
        raise SystemExit("set GMLM_DATA_DIR or --data-dir")
    src, ref = load_split(args.data_dir, args.split)[:2]
    tr = Translator(args.model, compute_type="float32", intra_threads=1)
    enc = encode_sources(tr.tokenizer, tr.cfg, src)
    idx = [i for i, e in enumerate(enc) if e]
    rows = []
    for c in configs():
        o = validate_options("gmlm", tr.cfg.max_target_len, **c)
        eo = engine_options(o) | {"return_candidates": True}
        res = []
        for b in range(0, len(idx), 64):
            res += tr._engine.translate([enc[i] for i in idx[b:b + 64]], **eo)
        hyp, passes = [""] * len(src), 0
        for i, r in zip(idx, res):
            hyp[i] = tr.tokenizer.decode(r[0])
            passes += sum(n for _, _, n in r[5]) + (o.length_beam - len(r[5]))   # pruned candidates ran 1 pass
        s = score(hyp, ref)
        rows.append(dict(c, bleu=s["bleu"], repetition=s["repetition"], passes=round(passes / len(src), 2)))
        print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"schedule_front_{args.split}.json").write_text(json.dumps(rows, indent=1))
    md = [f"{args.split}, model {args.model}, engine float32", "",
          "| schedule | candidate passes / sentence | BLEU | repetition % |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["passes"]):
        extra = {k: v for k, v in r.items() if k not in ("iterations", "length_beam", "bleu", "repetition", "passes")}
        name = f"T={r['iterations']} K={r['length_beam']}" + "".join(f" {k}={v}" for k, v in extra.items())
        md.append(f"| {name} | {r['passes']} | {r['bleu']} | {r['repetition']} |")
    (out / f"schedule_front_{args.split}.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
