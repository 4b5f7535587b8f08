"""Throughput of gmlm_engine.serving.ray.translate_dataset on this machine against one in-process Translator.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/ray_throughput.py [--sentences 10000] [--model default]

Systems (same model, same default decoding options, the first N Multi30k training sources):
  - in-process: one Translator with 2 engine threads, translate_batch in batches of 64;
  - ray 1 actor x 1 thread, ray 2 actors x 1 thread: a local Ray cluster of 2 CPUs, batches of 64.
Ray times run from building the dataset to the last row on the driver: actor start-up (model
transfer and load) included, ray.init excluded (it is paid once per cluster). Every system's output
is checked against the in-process one. Results: bench/results/ray_throughput.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sentences", type=int, default=10000)
    p.add_argument("--model", default="default")
    p.add_argument("--data-dir", default=os.environ.get("GMLM_DATA_DIR"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    if not args.data_dir:
        raise SystemExit("set GMLM_DATA_DIR or --data-dir to the Multi30k folder")

    import ray

    from gmlm_engine.data import load_split
    from gmlm_engine.engine import Translator
    from gmlm_engine.serving.ray import translate_dataset

    src = load_split(args.data_dir, "train")[0][:args.sentences]
    rows = []

    tr = Translator(args.model, intra_threads=2)
    tr.translate_batch(src[:64])                                   # warm-up
    t0 = time.perf_counter()
    ref = []
    for i in range(0, len(src), args.batch_size):
        ref += [r.text for r in tr.translate_batch(src[i:i + args.batch_size])]
    dt = time.perf_counter() - t0
    rows.append({"system": "in-process Translator, 2 threads", "seconds": dt, "sent_per_s": len(src) / dt})
    del tr

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    for actors in (1, 2):
        items = [{"id": i, "text": s} for i, s in enumerate(src)]
        t0 = time.perf_counter()
        ds = ray.data.from_items(items, override_num_blocks=max(8, len(src) // 500))
        out = translate_dataset(ds, model=args.model, concurrency=actors, num_cpus=1, batch_size=args.batch_size)
        got = sorted(out.take_all(), key=lambda r: r["id"])
        dt = time.perf_counter() - t0
        same = sum(g["translation"] == r for g, r in zip(got, ref))
        rows.append({"system": f"ray, {actors} actor(s) x 1 thread", "seconds": dt, "sent_per_s": len(src) / dt,
                     "same_as_in_process": same})
        print(rows[-1], file=sys.stderr)
    ray.shutdown()

    base = rows[0]["sent_per_s"]
    for r in rows:
        r["vs_in_process"] = r["sent_per_s"] / base
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    doc = {"sentences": len(src), "model": str(args.model), "cpu": cpu, "logical_cpus": os.cpu_count(),
           "ray": ray.__version__, "rows": rows}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ray_throughput.json").write_text(json.dumps(doc, indent=1))
    md = [f"{len(src)} Multi30k training sources, model {args.model}, {cpu}, {os.cpu_count()} logical CPUs, "
          f"Ray {ray.__version__}", "", "| system | seconds | sentences/s | vs in-process | outputs equal |",
          "|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['system']} | {r['seconds']:.1f} | {r['sent_per_s']:.1f} | {r['vs_in_process']:.2f} | "
                  f"{r.get('same_as_in_process', len(src))}/{len(src)} |")
    (out_dir / "ray_throughput.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
