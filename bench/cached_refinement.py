"""Cached refinement in the engine (docs/decoding.md, `cache_refresh`): quality, the share of
decoder rows computed, and speed, for each refresh rule at the given (T, K) configurations.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/cached_refinement.py [--configs 8x2,10x3] \
        [--refresh 1,4,2,0] [--quality-splits val,test2016] [--time-split test2016] [--batch-sizes 1,64] \
        [--compute-type int8] [--threads 2] [--repeats 3] [--out bench/results/cached-refinement]

Quality: the engine in float32 (the spec), sacreBLEU on detokenized cased output, the repetition rate of
`gmlm eval`, and the decoder rows computed over the rows an exact decoder computes (the engine's profile).
Speed: sentences/s on the time split at each batch size, every (configuration, rule) timed in each of
`--repeats` interleaved rounds, the median kept; the ratio to exact (cache_refresh=1) is taken within the run.
Select on val; report test2016.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from gmlm_engine import Translator
from gmlm_engine.data import load_split
from gmlm_engine.tools.evaluate import format_table, score


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--configs", default="8x2,10x3", help="T x K pairs")
    p.add_argument("--refresh", default="1,4,2,0", help="cache_refresh values (1 = exact, first)")
    p.add_argument("--quality-splits", default="val,test2016")
    p.add_argument("--time-split", default="test2016", help="'' to skip timing")
    p.add_argument("--batch-sizes", default="1,64")
    p.add_argument("--compute-type", default="int8", help="for the timing (quality is float32)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=None, help="a directory for results.json and table.md")
    args = p.parse_args(argv)
    configs = [tuple(int(x) for x in c.split("x")) for c in args.configs.split(",")]
    refresh = [int(r) for r in args.refresh.split(",")]
    if refresh[0] != 1:
        raise SystemExit("--refresh must start with 1 (exact): the ratios are taken against it")

    rows = []
    exact_tr = Translator(args.model, compute_type="float32", intra_threads=args.threads)
    for split in filter(None, args.quality_splits.split(",")):
        src, ref = load_split(args.data_dir, split, "en", "de")
        for t, k in configs:
            for r in refresh:
                exact_tr.set_profiling(True)
                res = exact_tr.translate_batch(src, iterations=t, length_beam=k, cache_refresh=r, max_batch_size=64)
                prof = exact_tr.profile()
                s = score([x.text for x in res], ref)
                rows.append({"split": split, "T": t, "K": k, "cache_refresh": r, "bleu": s["bleu"],
                             "repetition_%": s["repetition"],
                             "rows_computed": round(prof["decoder_rows"] / prof["decoder_positions"], 3)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    exact_tr.set_profiling(False)
    quality = format_table(rows, ["split", "T", "K", "cache_refresh", "bleu", "repetition_%", "rows_computed"])
    print(quality)

    timing, speed = [], ""
    if args.time_split:
        src, _ = load_split(args.data_dir, args.time_split, "en", "de")
        tr = Translator(args.model, compute_type=args.compute_type, intra_threads=args.threads)
        sizes = [int(b) for b in args.batch_sizes.split(",")]
        runs = {(c, r, b): [] for c in configs for r in refresh for b in sizes}
        tr.translate_batch(src[:64], max_batch_size=64)   # warm-up
        for _ in range(args.repeats):
            for (c, r, b), got in runs.items():
                t0 = time.perf_counter()
                tr.translate_batch(src, iterations=c[0], length_beam=c[1], cache_refresh=r, max_batch_size=b)
                got.append(len(src) / (time.perf_counter() - t0))
        for (c, r, b), got in runs.items():
            med = statistics.median(got)
            timing.append({"T": c[0], "K": c[1], "cache_refresh": r, "batch": b, "sent/s": round(med, 1),
                           "vs exact": round(med / statistics.median(runs[(c, 1, b)]), 3)})
        speed = format_table(timing, ["T", "K", "cache_refresh", "batch", "sent/s", "vs exact"])
        print(speed)

    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        cmd = " ".join(["python bench/cached_refinement.py"] + (argv if argv is not None else sys.argv[1:]))
        (out / "results.json").write_text(json.dumps({"model": args.model, "command": cmd, "quality": rows,
                                                      "timing": timing, "compute_type": args.compute_type,
                                                      "threads": args.threads, "time_split": args.time_split},
                                                     indent=1) + "\n")
        (out / "table.md").write_text(
            f"# Cached refinement, {args.model}\n\n`{cmd}`\n\nQuality (engine float32; rows_computed: decoder rows "
            f"over an exact decoder's):\n\n{quality}\n\nSpeed ({args.time_split}, {args.compute_type}, "
            f"{args.threads} threads, median of {args.repeats} interleaved rounds):\n\n{speed}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
