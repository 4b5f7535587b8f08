"""Where refinement pays: the engine's GMLM against the engine's AR greedy, on random-weight models.

    python bench/crossover.py [--compute-type auto] [--threads 2] [--out bench/results]

Speed does not depend on the weights' values once the output lengths are fixed, so every system is
forced to emit exactly L pieces: AR greedy can never choose </s> (its output row is zero, every other
logit row random, and max_target_len = L ends it at L), and the GMLM's length head is all zero
(every length ties, so the K candidates are 1..K) with length_offset = L - 1 clamped to
max_target_len = L: all K candidates have length L. Sources are 20 random ids.

Grid: d_model {256, 512, 1024} (d_ff = 4 d_model, 64-dim heads), decoder layers {1, 3, 6} (encoder 3),
vocabulary {8000, 32000}, L {16, 32, 64}, batch {1, 8, 64}. Sampled to keep the run near 10 minutes:
every corner of (d_model, layers, vocabulary, L, batch) at {256, 1024} x {1, 6} x {8k, 32k} x
{16, 64} x {1, 64}, and every one-factor line through the centre (512, 3, 8000, 32, 8).
Systems: AR greedy (KV cache) and GMLM (T, K) in {(1, 1), (4, 1), (8, 2)}, and (8, 2) with cached refinement
never refreshed (cache_refresh=0, docs/decoding.md; its share of decoder rows computed is the engine's count
on one source), one engine with --threads intra-op threads each, the same compute type. Reported per cell and system: ms per sentence (median
of 3 timed runs of at least --min-seconds), multiply-adds per sentence and weight bytes read per
sentence (the decoder's and the output projection's GEMM weights once per step or pass and batch,
at the compute type's width; the encoder is the same for every system and counted apart).
Results: crossover.json, crossover.md and crossover.png in --out.
"""
from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from gmlm_engine import _core
from gmlm_engine.config import ModelConfig
from gmlm_engine.engine import resolve_cpu_compute_type

# name, (T, K, cache_refresh) or None for AR greedy
SYSTEMS = [("AR greedy", None), ("GMLM T=1 K=1", (1, 1, 1)), ("GMLM T=4 K=1", (4, 1, 1)), ("GMLM T=8 K=2", (8, 2, 1)),
           ("GMLM T=8 K=2 cached", (8, 2, 0))]
GMLM_NAMES = [n for n, tk in SYSTEMS if tk]
SRC_LEN = 20
ENC_LAYERS = 3
CENTRE = dict(d=512, layers=3, vocab=8000, L=32, batch=8)
AXES = dict(d=(256, 512, 1024), layers=(1, 3, 6), vocab=(8000, 32000), L=(16, 32, 64), batch=(1, 8, 64))
CORNERS = dict(d=(256, 1024), layers=(1, 6), vocab=(8000, 32000), L=(16, 64), batch=(1, 64))


def cells() -> list[dict]:
    out = [dict(zip(CORNERS, v)) for v in itertools.product(*CORNERS.values())]
    for axis, values in AXES.items():
        out += [{**CENTRE, axis: v} for v in values]
    uniq = {tuple(sorted(c.items())): c for c in out}
    return sorted(uniq.values(), key=lambda c: (c["d"], c["layers"], c["vocab"], c["L"], c["batch"]))


def model(objective: str, d: int, layers: int, vocab: int, L: int, seed: int = 0):
    """A random model (config dict, weights) for _core.Engine: forced to emit exactly L pieces."""
    cfg = ModelConfig(objective=objective, vocab_size=vocab, d_model=d, d_kv=64, d_ff=4 * d, num_heads=d // 64,
                      num_encoder_layers=ENC_LAYERS, num_decoder_layers=layers, tie_word_embeddings=False,
                      max_source_len=SRC_LEN + 2, max_target_len=L, relative_attention_num_buckets=32,
                      relative_attention_max_distance=128)
    rng = np.random.default_rng(seed)
    w = {}
    for name, shape in cfg.weight_shapes().items():
        fan_in = shape[-1]
        a = rng.standard_normal(shape, dtype=np.float32) / np.float32(np.sqrt(fan_in))
        if name.endswith("layer_norm.weight"):
            a = np.ones(shape, np.float32)
        w[name] = a
    w["lm_head.weight"][[cfg.eos_id, cfg.pad_id]] = 0.0   # AR: </s> (and padding) never win: the max of the
                                                          # other, random logits is above 0
    if objective == "gmlm":
        w["length_head.weight"][:] = 0.0               # every length ties: candidates 1..K, then + (L - 1)
    return cfg, w


def macs_and_bytes(objective: str, d: int, layers: int, vocab: int, L: int, batch: int, T: int = 1, K: int = 1,
                   width: float = 1.0, rows: float = 1.0) -> dict:
    """Decoder + output-projection multiply-adds and weight bytes per sentence (the encoder apart); rows: the
    share of decoder rows computed (cached refinement)."""
    I, F = d, 4 * d                                  # heads x 64 = d_model
    per_row = 3 * d * I + I * d + d * I + I * d + 2 * d * F      # self qkv, o, cross q, o, feed-forward
    dec_weights = layers * per_row                  # = the decoder's GEMM weights
    S = SRC_LEN + (1 if objective == "gmlm" else 0) + 1
    if objective == "ar":
        attn = sum(layers * 2 * I * ((t + 1) + S) for t in range(L))
        macs = L * (per_row * layers + d * vocab) + attn
        reads = L                                   # one pass over the weights per step
    else:
        masked = sum(L if t == 0 else L * (T - t) // T for t in range(T))   # rows on the vocabulary per candidate
        attn = T * K * L * layers * 2 * I * (L + S)
        macs = rows * (T * K * L * per_row * layers + attn) + K * masked * d * vocab
        reads = T
    bytes_ = reads * (dec_weights + vocab * d) * width / batch
    return {"macs": int(macs), "weight_bytes": int(bytes_)}


def time_system(run, min_seconds: float, repeats: int = 3) -> float:
    """Median seconds of one call (each timed run loops until it lasts min_seconds)."""
    run()
    t0 = time.perf_counter()
    run()
    one = max(time.perf_counter() - t0, 1e-6)
    if one > 4 * min_seconds:                  # a long call: one more, and the median of the two
        t0 = time.perf_counter()
        run()
        return statistics.median([one, time.perf_counter() - t0])
    loops = max(1, int(min_seconds / one))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(loops):
            run()
        times.append((time.perf_counter() - t0) / loops)
    return statistics.median(times)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--compute-type", default="auto")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-seconds", type=float, default=0.25)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--limit", type=int, default=0, help="the first N cells only (a quick check)")
    args = p.parse_args(argv)
    ct = resolve_cpu_compute_type(args.compute_type, _core)
    width = {"float32": 4.0, "bfloat16": 2.0, "int8": 1.0}[ct]
    todo = cells()[:args.limit or None]
    rows, engines = [], {}
    started = time.perf_counter()
    for i, c in enumerate(todo):
        key = (c["d"], c["layers"], c["vocab"], c["L"])
        if key not in engines:
            engines.clear()                            # one model pair in memory at a time
            for obj in ("ar", "gmlm"):
                cfg, w = model(obj, *key)
                engines[obj] = _core.Engine(cfg.to_dict(), w, args.threads, ct)
            engines["key"] = key
        rng = np.random.default_rng(i)
        srcs = [[int(x) for x in rng.integers(5, c["vocab"], SRC_LEN)] + [1] for _ in range(c["batch"])]
        gsrcs = [[4] + s for s in srcs]
        row = {**c, "compute_type": ct, "threads": args.threads, "systems": {}}
        for name, tk in SYSTEMS:
            if tk is None:
                run = lambda: engines["ar"].translate_ar(srcs, beam_size=1)  # noqa: E731
                mb = macs_and_bytes("ar", c["d"], c["layers"], c["vocab"], c["L"], c["batch"], width=width)
                check = engines["ar"].translate_ar(srcs[:1])[0]
            else:
                T, K, R = tk
                opts = dict(iterations=T, length_beam=K, stutter_remask=False, length_offset=c["L"] - 1, cache_refresh=R,
                            repeat_penalty=0.0)   # random weights, no tokenizer: no word pieces
                run = lambda o=opts: engines["gmlm"].translate(gsrcs, **o)  # noqa: E731
                engines["gmlm"].set_profiling(True)
                check = engines["gmlm"].translate(gsrcs[:1], **opts)[0]
                prof = engines["gmlm"].profile()
                engines["gmlm"].set_profiling(False)
                share = prof["decoder_rows"] / prof["decoder_positions"]
                mb = {**macs_and_bytes("gmlm", c["d"], c["layers"], c["vocab"], c["L"], c["batch"], T, K, width, share),
                      "rows_computed": round(share, 3)}
            if len(check[0]) != c["L"]:
                raise RuntimeError(f"{name} emitted {len(check[0])} pieces, not L = {c['L']} ({c})")
            secs = time_system(run, args.min_seconds)
            row["systems"][name] = {"ms_per_sentence": round(1000 * secs / c["batch"], 4), **mb}
        ar = row["systems"]["AR greedy"]["ms_per_sentence"]
        row["speedup_over_ar"] = {n: round(ar / s["ms_per_sentence"], 3) for n, s in row["systems"].items()
                                  if n != "AR greedy"}
        rows.append(row)
        print(f"[{i + 1}/{len(todo)}] d={c['d']} layers={c['layers']} V={c['vocab']} L={c['L']} batch={c['batch']}: "
              f"AR {ar:.3f} ms/sent; GMLM speed-up " + ", ".join(f"{n[5:]} {v:.2f}x" for n, v in
                                                                 row["speedup_over_ar"].items()),
              file=sys.stderr, flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from gmlm_engine.tools.benchmark import machine_info

    doc = {"command": "python bench/crossover.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine_info(args.threads), "compute_type": ct, "seconds": round(time.perf_counter() - started, 1),
           "method": __doc__, "rows": rows}
    (out / "crossover.json").write_text(json.dumps(doc, indent=1) + "\n")
    (out / "crossover.md").write_text(markdown(doc))
    plot(rows, out / "crossover.png", doc)
    print((out / "crossover.md").read_text())
    return 0


def markdown(doc: dict) -> str:
    m = doc["machine"]
    lines = [f"# Where refinement pays: GMLM vs AR greedy on the same engine ({doc['compute_type']}, "
             f"{doc['rows'][0]['threads'] if doc['rows'] else '?'} threads)", "",
             f"- Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs; command `{doc['command']}`; {doc['seconds']} s",
             "- Random-weight models, every system forced to emit exactly L pieces (see bench/crossover.py).",
             "- speed-up = AR greedy ms per sentence / the GMLM's (above 1: refinement is faster). MACs and bytes: "
             "decoder + output projection per sentence, in millions / MB.", "",
             "- cached: T=8 K=2 with cache_refresh=0; rows: its share of decoder rows computed.", "",
             "| d_model | dec layers | vocab | L | batch | AR ms/sent | T=1 K=1 | T=4 K=1 | T=8 K=2 | T=8 K=2 cached | rows "
             "| AR MMACs | T=8 K=2 MMACs | cached MMACs | AR MB | T=8 K=2 MB |", "|" + "---|" * 16]
    for r in doc["rows"]:
        s = r["systems"]
        lines.append(f"| {r['d']} | {r['layers']} | {r['vocab']} | {r['L']} | {r['batch']} | "
                     f"{s['AR greedy']['ms_per_sentence']:.3f} | "
                     + " | ".join(f"{r['speedup_over_ar'][n]:.2f}x" for n in GMLM_NAMES)
                     + f" | {s['GMLM T=8 K=2 cached']['rows_computed']:.2f}"
                     + f" | {s['AR greedy']['macs'] / 1e6:.1f} | {s['GMLM T=8 K=2']['macs'] / 1e6:.1f} | "
                     f"{s['GMLM T=8 K=2 cached']['macs'] / 1e6:.1f} | "
                     f"{s['AR greedy']['weight_bytes'] / 1e6:.2f} | {s['GMLM T=8 K=2']['weight_bytes'] / 1e6:.2f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for name, marker in zip(GMLM_NAMES, "os^v"):
        xs = [r["systems"]["AR greedy"]["weight_bytes"] / max(r["systems"]["AR greedy"]["macs"], 1) for r in rows]
        ys = [r["speedup_over_ar"][name] for r in rows]
        axes[0].scatter(xs, ys, marker=marker, label=name, alpha=0.7)
        bs = sorted({r["batch"] for r in rows})
        axes[1].plot(bs, [statistics.median([r["speedup_over_ar"][name] for r in rows if r["batch"] == b]) for b in bs],
                     marker=marker, label=name)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("AR greedy: weight bytes per multiply-add (memory traffic vs arithmetic)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("batch size (median over the cells)")
    for ax in axes:
        ax.set_yscale("log")
        ax.axhline(1.0, color="k", linewidth=0.8)
        ax.set_ylabel("speed-up of the GMLM over AR greedy (same engine)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{doc['machine']['cpu']}, {doc['compute_type']}: where refinement pays (above 1)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
