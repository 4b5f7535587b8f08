"""Where the engine's time goes, per phase, at batch 1 and 64, per compute type.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/profile_engine.py [--model default] \
        [--options iterations=10,length_beam=5] [--threads 2] [--n 256] [--n-batch1 64]

For each compute type the CPU runs natively, the engine's profiler (Translator.set_profiling)
splits the wall time of translating the first test2016 sentences into gemm (the linear layers),
vocab (the fused vocabulary projection + log-softmax + argmax), attention, remask (the refinement
bookkeeping) and layers_other (norms, embeddings, residuals). Writes <out>/profile.{json,md}, or with
--options <out>/profile_<options>.{json,md} (e.g. profile_T10_K5.md), so that runs do not overwrite each other.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

PHASES = ("gemm", "vocab", "attention", "remask", "layers_other")


def parse_options(s: str) -> dict:
    out = {}
    for kv in filter(None, s.split(",")):
        k, v = kv.split("=")
        out[k] = int(v) if v.lstrip("-").isdigit() else v
    return out


SHORT = {"iterations": "T", "length_beam": "K"}


def output_stem(options: str) -> str:
    """profile, or profile_T10_K5 for --options iterations=10,length_beam=5 (other keys spelt out)."""
    return "_".join(["profile"] + [f"{SHORT.get(k, k)}{v}" for k, v in parse_options(options).items()])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data-dir", default=os.environ.get("GMLM_DATA_DIR"))
    p.add_argument("--options", default="", help="decoding options, k=v,...; default: the Translator's defaults")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n", type=int, default=256)
    p.add_argument("--n-batch1", type=int, default=64)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    from gmlm_engine import _core
    from gmlm_engine.data import load_split
    from gmlm_engine.engine import Translator

    src = load_split(args.data_dir, "test2016")[0]

    opts = parse_options(args.options)     # absent options: the model's own defaults
    rows = []
    for ct in _core.build_info()["native_compute_types"]:
        tr = Translator(args.model, intra_threads=args.threads, compute_type=ct)
        tr.translate_batch(src[:64], **opts)                              # warm-up (and oneDNN primitives)
        for batch, n in ((1, args.n_batch1), (64, args.n)):
            tr.set_profiling(True)
            t0 = time.perf_counter()
            for i in range(0, n, batch):
                tr.translate_batch(src[i:i + batch], max_batch_size=batch, **opts)
            wall = time.perf_counter() - t0
            prof = tr.profile()
            tr.set_profiling(False)
            total = prof["total"]
            row = {"compute_type": ct, "batch": batch, "sentences": n, "sent_per_s": n / wall, "wall_s": wall,
                   "engine_s": total, "python_s": wall - total}
            row.update({ph: prof[ph] / total for ph in PHASES})
            rows.append(row)
            print(row)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = output_stem(args.options)
    (out / f"{stem}.json").write_text(json.dumps({"model": str(args.model), "options": opts, "threads": args.threads,
                                                  "rows": rows}, indent=1))
    md = [f"model {args.model}, options {opts}, {args.threads} threads; shares of the engine's time; python_s is "
          "tokenization and the Python front end", "",
          "| compute type | batch | sent/s | " + " | ".join(PHASES) + " | engine s | python s |",
          "|---|---|---|" + "---|" * len(PHASES) + "---|---|"]
    for r in rows:
        md.append(f"| {r['compute_type']} | {r['batch']} | {r['sent_per_s']:.1f} | "
                  + " | ".join(f"{100 * r[ph]:.0f} %" for ph in PHASES) + f" | {r['engine_s']:.2f} | {r['python_s']:.2f} |")
    (out / f"{stem}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
