"""Repeated phrases against quality: repeat_remask and repeat_penalty (docs/decoding.md, steps 3 and 4) on a
split, the compiled engine (float32 unless --compute-type). BLEU, the repetition rate of `gmlm eval` (percent of outputs with a
repeated word bigram or a repeated word of 5+ letters), the length ratio, and decoder passes per sentence.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/repetition.py [--split val] [--model default] \
        [--compute-type float32] [--time ROUNDS] [--out bench/results/repetition_val]

Select on val; report test2016.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gmlm_engine import Translator
from gmlm_engine.data import load_split
from gmlm_engine.tools.evaluate import format_table, score

# (T, K, repeat_remask, repeat_penalty, length_offset)
CONFIGS = [(8, 2, rr, p, 1) for rr in (False, True) for p in (0.0, 0.1, 0.3, 1.0, 100.0)] + \
          [(t, k, True, p, 1) for t, k in ((8, 3), (6, 3), (5, 3), (4, 4), (10, 3)) for p in (0.0, 0.1, 0.3, 100.0)]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--split", default="val")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compute-type", default="float32")
    p.add_argument("--configs", default=None,
                   help="T:K:repeat_remask(0|1):repeat_penalty[:length_offset],... (default: the grid; offset 1)")
    p.add_argument("--time", type=int, default=0, metavar="ROUNDS",
                   help="also time each config at batch 1 and 64 (sent/s, median of ROUNDS interleaved rounds)")
    p.add_argument("--paired", action="store_true",
                   help="paired bootstrap resampling (sacreBLEU, 1000 samples): each config's BLEU against the first's")
    p.add_argument("--out", default=None, help="write OUT.json and OUT.md")
    args = p.parse_args(argv)
    configs = CONFIGS if not args.configs else [
        (int(t), int(k), bool(int(r)), float(pen), int(off[0]) if off else 1)
        for t, k, r, pen, *off in (c.split(":") for c in args.configs.split(","))]
    src, ref = load_split(args.data_dir, args.split, "en", "de")
    tr = Translator(args.model, compute_type=args.compute_type, intra_threads=args.threads)
    rows, hyps = [], []
    for t, k, rr, pen, off in configs:
        res = tr.translate_batch(src, iterations=t, length_beam=k, repeat_remask=rr, repeat_penalty=pen,
                                 length_offset=off, max_batch_size=64)
        hyps.append([r.text for r in res])
        s = score(hyps[-1], ref)
        rows.append({"T": t, "K": k, "length_offset": off, "repeat_remask": rr, "repeat_penalty": pen, "passes": t * k,
                     "bleu": s["bleu"], "repetition_%": s["repetition"], "len_ratio": s["len_ratio"]})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    cols = ["T", "K", "length_offset", "repeat_remask", "repeat_penalty", "passes", "bleu", "repetition_%", "len_ratio"]
    if args.paired and len(rows) > 1:
        from sacrebleu.metrics import BLEU
        from sacrebleu.significance import PairedTest

        _, sig = PairedTest([(str(i), h) for i, h in enumerate(hyps)], {"BLEU": BLEU(tokenize="13a")},
                            references=[ref], test_type="bs", n_samples=1000)()
        for row, r in zip(rows[1:], sig["BLEU"][1:]):
            row["p vs first"] = round(r.p_value, 3)
        cols.append("p vs first")
    if args.time:
        import statistics
        import time

        speed = {(i, b): [] for i in range(len(configs)) for b in (1, 64)}
        for _ in range(args.time):
            for i, (t, k, rr, pen, off) in enumerate(configs):
                for b in (1, 64):
                    start = time.perf_counter()
                    tr.translate_batch(src, iterations=t, length_beam=k, repeat_remask=rr, repeat_penalty=pen,
                                       length_offset=off, max_batch_size=b)
                    speed[i, b].append(len(src) / (time.perf_counter() - start))
        for i, row in enumerate(rows):
            for b in (1, 64):
                row[f"sent/s batch {b}"] = round(statistics.median(speed[i, b]), 1)
                row[f"vs first, batch {b}"] = round(row[f"sent/s batch {b}"] / rows[0][f"sent/s batch {b}"], 3)
        cols += ["sent/s batch 1", "vs first, batch 1", "sent/s batch 64", "vs first, batch 64"]
    table = format_table(rows, cols)
    print(table)
    if args.out:
        Path(args.out + ".json").write_text(json.dumps({"model": args.model, "split": args.split, "rows": rows},
                                                       indent=1) + "\n")
        Path(args.out + ".md").write_text(f"# Repetition, {args.split}, {args.model} (engine {args.compute_type})\n\n"
                                          f"`{' '.join(['python bench/repetition.py'] + (argv or sys.argv[1:]))}`"
                                          f"\n\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
