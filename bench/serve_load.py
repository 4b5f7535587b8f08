"""Load test of `gmlm serve`: continuous batching vs static batching vs one request at a time.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/serve_load.py [--model default] [--seconds 15]

For each scheduler mode a real server is started on loopback (2 engine threads) and driven by a real
HTTP client (httpx, asyncio):
  1. saturation: --burst single-sentence requests sent at once; throughput = requests / time;
  2. open loop: Poisson arrivals of single test2016 sentences at fractions of static batching's
     saturation throughput (--loads), each for --seconds (at most --max-requests); latency per
     request (send to response), p50/p95/p99, achieved throughput.
Decoding options: the Translator's defaults. Static batching: up to --max-batch requests or
--max-wait-ms after the first, then the batch runs to completion (nobody joins).
Results: bench/results/serve_load.{json,md,png}.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

MODES = ("continuous", "static", "single")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(model: str, mode: str, threads: int, max_batch: int, max_wait_ms: float):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gmlm_engine.tools.cli", "serve", "--model", model, "--port", str(port),
                             "--threads", str(threads), "--mode", mode, "--max-batch", str(max_batch),
                             "--max-wait-ms", str(max_wait_ms), "--max-queue", "100000", "--log-level", "warning"])
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server ({mode}) did not start")


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q / 100 * (len(xs) - 1))))] if xs else float("nan")


async def burst(url: str, sentences: list[str], n: int) -> float:
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=n)) as c:
        t0 = time.perf_counter()
        await asyncio.gather(*(c.post(url + "/v1/translate", json={"text": [sentences[i % len(sentences)]]})
                               for i in range(n)))
        return n / (time.perf_counter() - t0)


async def open_loop(url: str, sentences: list[str], rate: float, seconds: float, max_requests: int, seed: int):
    rng = random.Random(seed)
    lat, errors = [], 0
    async with httpx.AsyncClient(timeout=600, limits=httpx.Limits(max_connections=10000)) as c:
        async def one(i):
            nonlocal errors
            t = time.perf_counter()
            r = await c.post(url + "/v1/translate", json={"text": [sentences[i % len(sentences)]]})
            if r.status_code != 200:
                errors += 1
            lat.append(time.perf_counter() - t)
            return time.perf_counter()

        tasks, t0, at = [], time.perf_counter(), 0.0
        while at < seconds and len(tasks) < max_requests:
            delay = t0 + at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(len(tasks))))
            at += rng.expovariate(rate)
        ends = await asyncio.gather(*tasks)
    span = max(ends) - t0
    return {"offered_per_s": rate, "requests": len(tasks), "errors": errors, "achieved_per_s": len(tasks) / span,
            "p50_ms": 1e3 * pct(lat, 50), "p95_ms": 1e3 * pct(lat, 95), "p99_ms": 1e3 * pct(lat, 99)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--data-dir", default=os.environ.get("GMLM_DATA_DIR"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=15.0)
    p.add_argument("--max-requests", type=int, default=3000)
    p.add_argument("--burst", type=int, default=512)
    p.add_argument("--loads", default="0.3,0.5,0.7,0.9,1.1", help="fractions of static batching's saturation")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=20.0)
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    if not args.data_dir:
        raise SystemExit("set GMLM_DATA_DIR or --data-dir")
    from gmlm_engine.data import load_split

    sentences = load_split(args.data_dir, "test2016")[0]
    servers = {m: start(args.model, m, args.threads, args.max_batch, args.max_wait_ms) for m in MODES}
    result = {"model": args.model, "threads": args.threads, "seconds": args.seconds, "saturation": {}, "rows": []}
    try:
        for m, (_, url) in servers.items():          # warm-up, then saturation throughput
            asyncio.run(burst(url, sentences, 64))
            result["saturation"][m] = asyncio.run(burst(url, sentences, args.burst))
            print(f"{m}: saturation {result['saturation'][m]:.1f} req/s", file=sys.stderr)
        sat = result["saturation"]["static"]
        for frac in map(float, args.loads.split(",")):
            for m, (_, url) in servers.items():
                row = asyncio.run(open_loop(url, sentences, frac * sat, args.seconds, args.max_requests, seed=1))
                row.update(mode=m, load=frac)
                result["rows"].append(row)
                print(row, file=sys.stderr)
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    by = {(r["mode"], r["load"]): r for r in result["rows"]}
    goals = {}
    if (("continuous", 0.7) in by) and (("static", 0.7) in by):
        goals["p99_at_0.7_ratio"] = by[("continuous", 0.7)]["p99_ms"] / by[("static", 0.7)]["p99_ms"]
    goals["saturation_ratio"] = result["saturation"]["continuous"] / result["saturation"]["static"]
    result["goals"] = goals
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "serve_load.json").write_text(json.dumps(result, indent=1))
    md = [f"model {args.model}, {args.threads} engine threads, {args.seconds} s per rate; saturation (req/s): "
          + ", ".join(f"{m} {v:.1f}" for m, v in result["saturation"].items()), "",
          "| load (x static saturation) | mode | offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms | errors |",
          "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        md.append(f"| {r['load']} | {r['mode']} | {r['offered_per_s']:.1f} | {r['achieved_per_s']:.1f} | "
                  f"{r['p50_ms']:.0f} | {r['p95_ms']:.0f} | {r['p99_ms']:.0f} | {r['errors']} |")
    md += ["", f"goals: p99 continuous / static at 0.7 = {goals.get('p99_at_0.7_ratio', float('nan')):.2f} "
               f"(goal <= 0.5); saturation continuous / static = {goals['saturation_ratio']:.2f} (goal >= 0.9)"]
    (out / "serve_load.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        for m in MODES:
            rs = [r for r in result["rows"] if r["mode"] == m]
            ax.plot([r["offered_per_s"] for r in rs], [r["p99_ms"] for r in rs], marker="o", label=m)
        ax.set_xlabel("offered load (requests/s, Poisson)")
        ax.set_ylabel("p99 latency (ms)")
        ax.set_yscale("log")
        ax.legend()
        ax.set_title("gmlm serve: p99 latency vs load")
        fig.tight_layout()
        fig.savefig(out / "serve_load.png", dpi=120)
    except ImportError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
