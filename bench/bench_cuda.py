"""The engine on a GPU, the same-engine table: batch-1 latency, throughput and BLEU per compute type for the shipped
AR model (greedy, beam 4), the shipped GMLM (its defaults and the few-pass points) and the shipped ctc model, with
the ratios to AR greedy in the same compute type; the CPU engine on the same machine beside it (compute type auto).

    GMLM_DATA_DIR=../shared/data/multi30k python bench/bench_cuda.py [--ar models/ar-en-de] \
        [--gmlm models/gmlm-en-de] [--ctc models/ctc-en-de] [--compute-types float32 float16 bfloat16] \
        [--batches 64 256] [--n 1000] [--n-batch1 200] [--repeats 3] [--out bench/results/cuda.json]

Needs a CUDA build (GMLM_WITH_CUDA=ON, see docs/cuda.md) and a GPU; exits with a message otherwise.

- batch-1 latency: each of the first --n-batch1 test2016 sentences translated alone (median and p90 milliseconds,
  wall time around translate_batch, tokenization included);
- throughput: all --n sentences in batches of each --batches size (sentences/s, median of --repeats);
- quality: sacreBLEU (13a, cased, detokenized) of the batched output against test2016;
- ratios: each row's batch-1 speed (1 / median latency) and throughput over AR greedy's in the same device and
  compute type.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# (label, model key, options): the GMLM at its defaults and two few-pass points; the ctc model at its defaults
POINTS = [("AR greedy", "ar", dict(beam_size=1)), ("AR beam 4", "ar", dict(beam_size=4)),
          ("GMLM defaults", "gmlm", {}), ("GMLM T=4 K=1", "gmlm", dict(iterations=4, length_beam=1)),
          ("GMLM T=1 K=1", "gmlm", dict(iterations=1, length_beam=1)), ("CTC T=1", "ctc", {})]


def measure(tr, src, refs, opts, args) -> dict:
    tr.translate_batch(src[:64], **opts)  # warm-up: allocations, cuBLAS heuristics
    lat = []
    for s in src[:args.n_batch1]:
        t0 = time.perf_counter()
        tr.translate_batch([s], **opts)
        lat.append(time.perf_counter() - t0)
    lat.sort()
    res = {"batch1_ms": {"median": 1e3 * statistics.median(lat), "p90": 1e3 * lat[int(0.9 * (len(lat) - 1))]},
           "sent_per_s": {}}
    out = None
    for bs in args.batches:
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = tr.translate_batch(src, max_batch_size=bs, **opts)
            times.append(time.perf_counter() - t0)
        res["sent_per_s"][bs] = len(src) / statistics.median(times)
    import sacrebleu

    res["bleu"] = round(sacrebleu.corpus_bleu([r.text for r in out], [refs]).score, 2)
    return res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ar", default="models/ar-en-de")
    ap.add_argument("--gmlm", default="models/gmlm-en-de")
    ap.add_argument("--ctc", default="models/ctc-en-de")
    ap.add_argument("--data", default=os.environ.get("GMLM_DATA_DIR"))
    ap.add_argument("--compute-types", nargs="+", default=["float32", "float16", "bfloat16"])
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-batch1", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from gmlm_engine.engine import Translator, cuda_status

    status = cuda_status()
    if not status["built"] or status["device_count"] == 0:
        sys.exit(f"bench_cuda: the engine cannot use a GPU here: {status['reason']} (see docs/cuda.md)")
    if not args.data:
        sys.exit("bench_cuda: set GMLM_DATA_DIR or --data (the Multi30k directory)")
    from gmlm_engine.data import load_split

    src, refs = load_split(args.data, "test2016")[:2]
    src, refs = src[:args.n], refs[:args.n]
    models = {"ar": args.ar, "gmlm": args.gmlm, "ctc": args.ctc}
    report = {"device": status["devices"][0], "host": platform.node(), "cpu": platform.processor(), "n": len(src),
              "rows": []}
    print(f"device: {report['device']}")
    for device, types in (("cuda", args.compute_types), ("cpu", ["auto"])):
        for ct in types:
            translators = {k: Translator(d, device=device, compute_type=ct) for k, d in models.items()}
            base = None
            for label, key, opts in POINTS:
                tr = translators[key]
                row = {"system": label, "device": device, "compute_type": tr.compute_type, "options": opts,
                       **measure(tr, src, refs, opts, args)}
                base = base or row   # AR greedy, the first point
                row["x_ar_greedy"] = {"batch1": base["batch1_ms"]["median"] / row["batch1_ms"]["median"],
                                      **{b: row["sent_per_s"][b] / base["sent_per_s"][b] for b in args.batches}}
                report["rows"].append(row)
                print(f"{device} {tr.compute_type:9s} {label:14s} batch-1 {row['batch1_ms']['median']:.2f} ms "
                      f"(p90 {row['batch1_ms']['p90']:.2f}); "
                      + ", ".join(f"batch {b}: {v:.0f} sent/s" for b, v in row["sent_per_s"].items())
                      + f"; BLEU {row['bleu']}; x AR greedy: "
                      + ", ".join(f"{k} {v:.2f}" for k, v in row["x_ar_greedy"].items()), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
