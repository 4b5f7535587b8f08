"""The CUDA engine on a GPU: batch-1 latency, large-batch throughput, and one refinement
iteration's time at batch 1 against its two floors, for each compute type, with BLEU next to speed.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/bench_cuda.py --model runs/gmlm/best \
        [--compute-types float32 float16 bfloat16] [--batches 64 256] [--n 1000] [--n-batch1 200] \
        [--repeats 3] [--hbm-gbs 3350] [--out bench/results/cuda.json]

Needs a CUDA build (GMLM_WITH_CUDA=ON, see docs/cuda.md) and a GPU; exits with a message otherwise.

- batch-1 latency: each of the first --n-batch1 test2016 sentences translated alone (median and
  p90 milliseconds, wall time around translate_batch, tokenization included);
- throughput: all --n sentences in batches of each --batches size (sentences/s, median of repeats);
- one iteration at batch 1: for each sentence, wall time with iterations=10 minus iterations=1,
  divided by the difference in decoder passes the engine launched (its counters), so the encoder,
  length prediction and host overheads cancel; median over sentences, graphs on and off;
- the bandwidth floor of an iteration: bytes of the weights one decoder pass reads (every decoder
  layer except the cross-attention K/V projections, which run once per batch, plus the output
  embedding) / HBM bandwidth (--hbm-gbs, defaulted from the device name for A100/H100/H200);
- the launch floor: kernels per iteration (counted from the config as cuda/cuda_engine.cu launches
  them) x --launch-us (per kernel node of a replayed graph; 1 us is a typical figure, not measured
  here).
Quality: sacreBLEU (detokenized, cased) of each compute type's batched output, when references
are available.
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

OPTS = dict(iterations=4, length_beam=3)
HBM_GBS = {"H200": 4800.0, "H100": 3350.0, "A100": 2039.0}  # vendor peak figures (SXM parts)
CTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def decoder_pass_bytes(cfg, compute_type: str) -> float:
    """Weight bytes one decoder pass reads (norms are float32; everything else the compute type)."""
    D, I, F, V = cfg["d_model"], cfg["num_heads"] * cfg["d_kv"], cfg["d_ff"], cfg["vocab_size"]
    ffn_in = 2 * F if cfg["feed_forward_proj"] == "gated-gelu" else F
    per_layer = 3 * I * D + D * I + I * D + D * I + ffn_in * D + D * F  # self qkv, o; cross q, o; ffn
    b = CTYPE_BYTES[compute_type]
    return (cfg["num_decoder_layers"] * per_layer + V * D) * b + (3 * cfg["num_decoder_layers"] + 1) * D * 4 \
        + cfg["max_target_len"] * D * 4


def kernels_per_iteration(cfg, rows: int, logit_chunk: int | None = None) -> int:
    """Kernel (and cuBLAS call) launches of one iteration, as CudaEngine::Impl::enqueue_iteration
    issues them; cuBLAS may launch more than one kernel per GEMM, so this is a lower bound."""
    V = cfg["vocab_size"]
    chunk = logit_chunk or max(64, (64 << 20) // (4 * V))
    per_layer = 12  # norm, qkv, attention, o | norm, q, attention, o | norm, wi, activation, wo
    return 1 + cfg["num_decoder_layers"] * per_layer + 1 + 2 * -(-rows // chunk) + 2


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=os.environ.get("GMLM_DATA_DIR"))
    ap.add_argument("--compute-types", nargs="+", default=["float32", "float16", "bfloat16"])
    ap.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--n-batch1", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hbm-gbs", type=float, default=None, help="HBM bandwidth in GB/s (default: from the name)")
    ap.add_argument("--launch-us", type=float, default=1.0, help="per-kernel cost of a replayed graph, us")
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)

    from gmlm_engine.engine import Translator, cuda_status

    status = cuda_status()
    if not status["built"] or status["device_count"] == 0:
        sys.exit(f"bench_cuda: the CUDA engine is not usable here: {status['reason']} (see docs/cuda.md)")
    if not args.data:
        sys.exit("bench_cuda: set GMLM_DATA_DIR or --data (the Multi30k directory)")
    from gmlm_engine.data import load_split

    src, refs = load_split(args.data, "test2016")[:2]
    src, refs = src[:args.n], refs[:args.n]
    device = status["devices"][0]
    hbm = args.hbm_gbs or next((v for k, v in HBM_GBS.items() if k in device), None)
    report = {"device": device, "host": platform.node(), "options": OPTS, "n": len(src), "results": {}}
    print(f"device: {device}; HBM {hbm} GB/s" if hbm else f"device: {device}; HBM bandwidth unknown (--hbm-gbs)")

    for ct in args.compute_types:
        tr = Translator(args.model, device="cuda", compute_type=ct)
        cfg = tr.cfg.to_dict()
        tr.translate_batch(src[:64], **OPTS)  # warm-up: allocations, graph capture, cuBLAS heuristics
        res = {}
        # batch-1 latency
        lat = []
        for s in src[:args.n_batch1]:
            t0 = time.perf_counter()
            tr.translate_batch([s], **OPTS)
            lat.append(time.perf_counter() - t0)
        lat.sort()
        res["batch1_latency_ms"] = {"median": 1e3 * statistics.median(lat), "p90": 1e3 * lat[int(0.9 * (len(lat) - 1))]}
        # throughput
        res["throughput"] = {}
        out = None
        for bs in args.batches:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                out = tr.translate_batch(src, max_batch_size=bs, **OPTS)
                times.append(time.perf_counter() - t0)
            res["throughput"][bs] = len(src) / statistics.median(times)
        if out is not None and refs:
            try:
                import sacrebleu
                res["bleu"] = sacrebleu.corpus_bleu([r.text for r in out], [refs]).score
            except ImportError:
                res["bleu"] = None
        # one iteration at batch 1
        per_iter = {}
        for graphs in (True, False):
            tr._engine.set_use_graphs(graphs)
            samples = []
            for s in src[:min(args.n_batch1, 100)]:
                t = {}
                for iters in (1, 10):
                    n0 = tr._engine.stats()["iterations"]
                    t0 = time.perf_counter()
                    tr.translate_batch([s], iterations=iters, length_beam=3)
                    t[iters] = (time.perf_counter() - t0, tr._engine.stats()["iterations"] - n0)
                if t[10][1] > t[1][1]:
                    samples.append((t[10][0] - t[1][0]) / (t[10][1] - t[1][1]))
            per_iter["graphs" if graphs else "no_graphs"] = 1e6 * statistics.median(samples) if samples else None
        tr._engine.set_use_graphs(True)
        bytes_ = decoder_pass_bytes(cfg, ct)
        rows = 3 * 16  # batch 1, length_beam 3, a typical test2016 target length (rows = sum of lengths)
        res["iteration_us"] = per_iter
        res["bandwidth_floor_us"] = 1e6 * bytes_ / (hbm * 1e9) if hbm else None
        res["launch_floor_us"] = kernels_per_iteration(cfg, rows) * args.launch_us
        res["decoder_pass_weight_bytes"] = bytes_
        res["engine_stats"] = tr._engine.stats()
        report["results"][ct] = res
        print(f"{ct}: batch-1 {res['batch1_latency_ms']['median']:.2f} ms (p90 {res['batch1_latency_ms']['p90']:.2f}); "
              + ", ".join(f"batch {b}: {v:.0f} sent/s" for b, v in res["throughput"].items())
              + f"; BLEU {res.get('bleu')}; iteration {per_iter} us vs floors: bandwidth "
              f"{res['bandwidth_floor_us']} us, launch {res['launch_floor_us']:.1f} us")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
