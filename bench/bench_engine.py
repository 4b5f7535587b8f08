"""End to end: the compiled CPU engine vs the PyTorch reference decoder, same trained model, same
options, same test2016 sources, interleaved in one run, at several batch sizes; with the engine's
time breakdown and its GEMMs' GFLOP/s next to the BLAS's SGEMM on the same shapes.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/bench_engine.py --model runs/gmlm/best \
        [--batches 1 8 64] [--repeats 3] [--threads 2] [--n 1000] [--n-batch1 300] \
        [--out bench/results/engine_vs_reference.json]

For each repeat and batch size both systems translate the same sentences in batches of that size
(the order of the two systems alternates between repeats, with a 1 s pause before each run so
that the other system's idle threads have stopped spinning); sentences/s is the median over repeats,
wall time around translate_batch including tokenization for both. The breakdown comes from an
extra, profiled engine run (not timed). Quality: sacreBLEU of both systems' batch-64 output and
the number of sentences whose translations differ.
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

import numpy as np

OPTS = dict(iterations=4, length_beam=3)


def timed(tr, src, bs, opts):
    t0 = time.perf_counter()
    out = []
    for i in range(0, len(src), bs):
        out += tr.translate_batch(src[i:i + bs], max_batch_size=bs, **opts)
    return time.perf_counter() - t0, out


def blas_seconds(core, shapes, threads, repeats=3):
    """Time of the BLAS's own (threaded) SGEMM on every (M, N, K, calls) shape."""
    total = 0.0
    rng = np.random.default_rng(0)
    for M, N, K, calls, _ in shapes:
        a = rng.standard_normal((M, K), dtype=np.float32)
        b = rng.standard_normal((N, K), dtype=np.float32)
        core.ops.blas_sgemm(a, b, threads)
        best = []
        for _ in range(repeats):
            n = max(1, min(calls, 50))
            t0 = time.perf_counter()
            for _ in range(n):
                core.ops.blas_sgemm(a, b, threads)
            best.append((time.perf_counter() - t0) / n)
        total += min(best) * calls
    return total


def breakdown(core, eng, src, bs, threads):
    eng.set_profiling(True)
    t0 = time.perf_counter()
    for i in range(0, len(src), bs):
        eng.translate_batch(src[i:i + bs], max_batch_size=bs, **OPTS)
    wall = time.perf_counter() - t0
    p = eng.profile()
    eng.set_profiling(False)
    vg, vr = p["vocab_gemm_thread_seconds"], p["vocab_reduce_thread_seconds"]
    vocab_gemm = p["vocab"] * vg / (vg + vr) if vg + vr > 0 else 0.0
    parts = {k: p[k] for k in ("gemm", "attention", "vocab", "remask", "layers_other")}
    n = len(src)
    gemm_time = p["gemm"] + vocab_gemm
    blas_layers = blas_seconds(core, p["gemm_shapes"], threads)
    blas_vocab = blas_seconds(core, p["vocab_shapes"], threads)
    return {
        "wall_seconds": wall,
        "engine_seconds": p["total"],
        "per_sentence_ms": {**{k: 1e3 * v / n for k, v in parts.items()},
                            "vocab_gemm": 1e3 * vocab_gemm / n, "vocab_softmax_argmax": 1e3 * (p["vocab"] - vocab_gemm) / n,
                            "engine_other": 1e3 * (p["total"] - sum(parts.values())) / n,
                            "python_side": 1e3 * (wall - p["total"]) / n, "wall": 1e3 * wall / n},
        "gemm_seconds": gemm_time,
        "wall_over_gemm": wall / gemm_time,
        "engine_over_gemm": p["total"] / gemm_time,
        "gemm_gflops": {"layers": p["gemm_flops"] / p["gemm"] / 1e9,
                        "layers_blas_same_shapes": p["gemm_flops"] / blas_layers / 1e9,
                        "vocab": p["vocab_flops"] / vocab_gemm / 1e9 if vocab_gemm else None,
                        "vocab_blas_same_shapes": p["vocab_flops"] / blas_vocab / 1e9 if blas_vocab else None,
                        "all": (p["gemm_flops"] + p["vocab_flops"]) / gemm_time / 1e9,
                        "all_blas_same_shapes": (p["gemm_flops"] + p["vocab_flops"]) / (blas_layers + blas_vocab) / 1e9},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="runs/gmlm/best")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=1000, help="sentences at batch sizes > 1")
    ap.add_argument("--n-batch1", type=int, default=300, help="sentences at batch size 1")
    ap.add_argument("--out", default="bench/results/engine_vs_reference.json")
    args = ap.parse_args(argv)

    import torch

    from gmlm_engine import _core as core
    from gmlm_engine.data import load_split
    from gmlm_engine.engine import Translator
    from gmlm_engine.pytorch.reference import ReferenceTranslator

    torch.set_num_threads(args.threads)
    src, refs = load_split(args.data_dir, "test2016")
    eng = Translator(args.model, intra_threads=args.threads, compute_type="float32")
    ref = ReferenceTranslator(args.model)
    cfg = eng.cfg
    print(f"model {args.model}: d_model {cfg.d_model}, {cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers, "
          f"vocab {cfg.vocab_size}; options {OPTS}; {args.threads} threads; {core.build_info()['blas']}", flush=True)
    eng.translate_batch(src[:16], **OPTS)  # warm-up
    ref.translate_batch(src[:16], **OPTS)

    times = {(s, bs): [] for s in ("engine", "reference") for bs in args.batches}
    outputs = {}
    for r in range(args.repeats):
        for bs in args.batches:
            n = args.n_batch1 if bs == 1 else args.n
            systems = [("engine", eng), ("reference", ref)]
            for name, tr in (systems if r % 2 == 0 else systems[::-1]):
                time.sleep(1.0)  # let the other system's idle threads (OpenMP, the pool) stop spinning
                sec, out = timed(tr, src[:n], bs, OPTS)
                times[(name, bs)].append(sec)
                outputs[(name, bs)] = out
                print(f"repeat {r} batch {bs:3d} {name:9s} {n / sec:8.1f} sent/s", flush=True)

    result = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv), "model": str(args.model), "options": OPTS, "threads": args.threads,
              "machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
              "blas": core.build_info()["blas"], "batches": {}}
    try:
        import sacrebleu
    except ImportError:  # pragma: no cover
        sacrebleu = None
    for bs in args.batches:
        n = args.n_batch1 if bs == 1 else args.n
        e = statistics.median(times[("engine", bs)])
        t = statistics.median(times[("reference", bs)])
        a, b = outputs[("engine", bs)], outputs[("reference", bs)]
        entry = {"sentences": n, "engine_sent_per_s": n / e, "reference_sent_per_s": n / t, "speedup": t / e,
                 "engine_seconds": times[("engine", bs)], "reference_seconds": times[("reference", bs)],
                 "translations_differing": sum(x.text != y.text for x, y in zip(a, b))}
        if sacrebleu is not None:
            entry["bleu_engine"] = sacrebleu.corpus_bleu([x.text for x in a], [refs[:n]]).score
            entry["bleu_reference"] = sacrebleu.corpus_bleu([x.text for x in b], [refs[:n]]).score
        entry["breakdown"] = breakdown(core, eng, src[:n], bs, args.threads)
        result["batches"][str(bs)] = entry

    print("\nbatch  engine sent/s  reference sent/s  speedup  differing  BLEU(eng/ref)")
    for bs, e in result["batches"].items():
        print(f"{bs:>5}  {e['engine_sent_per_s']:13.1f}  {e['reference_sent_per_s']:16.1f}  {e['speedup']:6.2f}x  "
              f"{e['translations_differing']:9d}  {e.get('bleu_engine', float('nan')):.2f}/{e.get('bleu_reference', float('nan')):.2f}")
    print("\nengine time per sentence (ms), profiled run:")
    for bs, e in result["batches"].items():
        b = e["breakdown"]
        ms = b["per_sentence_ms"]
        print(f"  batch {bs:>3}: " + ", ".join(f"{k} {v:.3f}" for k, v in ms.items()))
        g = b["gemm_gflops"]
        print(f"             wall/GEMM {b['wall_over_gemm']:.2f}, engine/GEMM {b['engine_over_gemm']:.2f}; GEMM GFLOP/s "
              f"layers {g['layers']:.1f} (BLAS on same shapes {g['layers_blas_same_shapes']:.1f}), vocab "
              f"{g['vocab'] or 0:.1f} (BLAS {g['vocab_blas_same_shapes'] or 0:.1f}), all {g['all']:.1f} "
              f"(BLAS {g['all_blas_same_shapes']:.1f}, ratio {g['all'] / g['all_blas_same_shapes']:.0%})")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
