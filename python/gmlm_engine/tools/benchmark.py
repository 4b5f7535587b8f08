"""`gmlm bench`: speed and quality of GMLM decoding against autoregressive decoding, in one run.

The method (docs/benchmark.md says the same for readers of the results):

- Every system gets raw source strings and returns detokenized strings; SentencePiece encoding and
  decoding are inside the timed region for everyone (CTranslate2 included: its wrapper tokenizes with
  the same SentencePiece model). Model loading and the CTranslate2 export are outside.
- Quality: each system translates the whole test set once (batches of 64); sacreBLEU (13a, cased,
  detokenized) and chrF come from that system's own output, which is saved to outputs/ with its hash.
- Speed: for each batch size b, the systems translate the same fixed subset, the first N_b sentences
  of the test set, in batches of b consecutive sentences; a fast system loops over the subset so that
  one timed run lasts at least --min-seconds. Every system is warmed up first; then, for each repeat,
  every system runs once, in an order rotated between repeats, with a short pause before each run
  (idle OpenMP threads of the previous system stop spinning). sentences/s is the median over repeats.
- The outputs of every timed run are compared with the quality run's: results must not depend on
  the batch size (batch invariance) nor change between runs; each row reports how many differ.
- "core" systems (AR baselines, the reference decoder, the GMLM configurations on the speed-quality
  Pareto front of the quality run plus a few fixed ones) are timed at every batch size; the rest of
  the grid only at the grid batch: the largest batch that still helps the anchor configuration
  (within 3 % of its best throughput).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..options import DEFAULT_ITERATIONS, DEFAULT_LENGTH_BEAM
from .evaluate import format_table, score

QUALITY_BATCH = 64
HELPFUL_TOLERANCE = 0.03      # a bigger batch "helps" when it is more than 3 % faster


@dataclass
class System:
    name: str
    family: str                                   # one curve per family and batch size in the plot
    translate: Callable[[list[str]], list[str]]   # raw strings in, detokenized strings out
    options: dict = field(default_factory=dict)
    core: bool | None = True     # True: timed at every batch size; False: at the grid batch only;
                                 # None: core if on the speed-quality Pareto front of its family
    twin: str | None = None      # a system that must produce the same output (a correctness check)
    base: str | None = None      # the same system at another thread setting: `base` is its name at the default
    setting: str = ""            # threads as "INTRAxINTER" (intra-op threads x parallel workers)


def subset_size(batch: int, n: int) -> int:
    """N_b: how many sentences (the first N_b of the test set) are timed at batch size b."""
    return min(n, max(batch, {1: 100, 8: 200}.get(batch, 256)))


def percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def sha256_lines(lines: list[str]) -> str:
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", name).strip("_")


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names whose (speed, quality) no other point beats on both (ties keep both)."""
    return [a for a, (sa, qa) in points.items()
            if not any((sb >= sa and qb >= qa) and (sb > sa or qb > qa) for b, (sb, qb) in points.items() if b != a)]


def helpful_batch(throughput: dict[int, float]) -> int:
    """The smallest batch size within HELPFUL_TOLERANCE of the best throughput: bigger ones do not help."""
    best = max(throughput.values())
    return min(b for b, v in throughput.items() if v >= (1 - HELPFUL_TOLERANCE) * best)


def _spread(systems: list[System], rep: int, repeats: int) -> list[System]:
    """The run order of a repeat: rotated so that every system runs early in one repeat, late in another."""
    if not systems:
        return []
    k = (rep * max(1, len(systems) // max(1, repeats))) % len(systems)
    return systems[k:] + systems[:k]


def quality_pass(systems: list[System], src: list[str], ref: list[str], log) -> dict[str, dict]:
    out = {}
    for i, s in enumerate(systems):
        if s.base in out:        # the same system at another thread setting: the same output (the timed
            out[s.name] = out[s.base]     # runs check that it is)
            continue
        hyp: list[str] = []
        t0 = time.perf_counter()
        for j in range(0, len(src), QUALITY_BATCH):
            hyp += s.translate(src[j:j + QUALITY_BATCH])
        secs = time.perf_counter() - t0
        if len(hyp) != len(src):
            raise RuntimeError(f"{s.name}: {len(hyp)} outputs for {len(src)} sources")
        q = score(hyp, ref)
        out[s.name] = {**q, "outputs": hyp, "sha256": sha256_lines(hyp), "seconds": secs}
        log(f"  quality [{i + 1}/{len(systems)}] {s.name:<44} BLEU {q['bleu']:6.2f} chrF {q['chrf']:6.2f} "
            f"({len(src) / secs:7.1f} sent/s single run)")
    return out


def time_block(systems: list[System], src: list[str], batch: int, n: int, repeats: int, min_seconds: float,
               pause: float, log) -> dict[str, dict]:
    """Time every system on src[:n] in batches of `batch`, interleaved; see the module docstring."""
    sub = src[:n]
    batches = [sub[i:i + batch] for i in range(0, n, batch)]
    loops: dict[str, int] = {}
    for s in systems:                                      # warm-up, and how many loops reach min_seconds
        pilot = sub[:min(n, max(batch, 8), 64)]
        t0 = time.perf_counter()
        for i in range(0, len(pilot), batch):
            s.translate(pilot[i:i + batch])
        est = (time.perf_counter() - t0) * n / len(pilot)
        loops[s.name] = 1 if min_seconds <= 0 else max(1, min(100, math.ceil(min_seconds / max(est, 1e-6))))
    times: dict[str, list[float]] = {s.name: [] for s in systems}
    lats: dict[str, list[float]] = {s.name: [] for s in systems}
    outs: dict[str, list[list[str]]] = {s.name: [] for s in systems}
    for rep in range(repeats):
        for s in _spread(systems, rep, repeats):
            time.sleep(pause)
            runs: list[list[str]] = []
            t0 = time.perf_counter()
            for _ in range(loops[s.name]):
                run: list[str] = []
                for b in batches:
                    t1 = time.perf_counter()
                    run += s.translate(b)
                    lats[s.name].append(time.perf_counter() - t1)
                runs.append(run)
            times[s.name].append(time.perf_counter() - t0)
            outs[s.name] += runs
            log(f"  batch {batch:>4} repeat {rep + 1}/{repeats} {s.name:<44} {n * loops[s.name] / times[s.name][-1]:8.1f} "
                f"sent/s ({times[s.name][-1]:.2f} s, {loops[s.name]} x {n} sentences)")
    return {s.name: {"seconds": times[s.name], "latencies": lats[s.name], "outputs": outs[s.name],
                     "loops": loops[s.name]} for s in systems}


def _rows(block: dict, systems: list[System], quality: dict, batch: int, n: int, count_tokens, stage: str) -> list[dict]:
    rows = []
    for s in systems:
        t, q = block[s.name], quality[s.name]
        med = statistics.median(t["seconds"])
        first = t["outputs"][0]
        differing = sum(any(run[i] != q["outputs"][i] for run in t["outputs"]) for i in range(n))
        rows.append({
            "system": s.name, "family": s.family, "batch_size": batch, "stage": stage,
            "base": s.base or s.name, "setting": s.setting,
            "bleu": q["bleu"], "chrf": q["chrf"], "len_ratio": q["len_ratio"], "quality_sentences": len(q["outputs"]),
            "sent_per_s": round(n * t["loops"] / med, 2),
            "tok_per_s": round(count_tokens(first) * t["loops"] / med, 1),
            "latency_p50_ms": round(1000 * percentile(t["latencies"], 0.5), 2),
            "latency_p90_ms": round(1000 * percentile(t["latencies"], 0.9), 2),
            "timed_sentences": [0, n], "loops": t["loops"], "seconds": [round(x, 3) for x in t["seconds"]],
            "differing_sentences": differing, "batch_invariant": differing == 0,
            "output_sha256": q["sha256"], "output_file": f"outputs/{slug(s.name)}.txt", "options": s.options,
        })
    return rows


def run_benchmark(systems: list[System], src: list[str], ref: list[str], batch_sizes: list[int], repeats: int,
                  count_tokens: Callable[[list[str]], int], *, min_seconds: float = 2.0, pause: float = 0.3,
                  grid_batch: int | None = None, anchor: str | None = None, max_front: int = 5,
                  log=print) -> dict:
    """Quality pass, then speed at every batch size (core systems), then the rest at the grid batch."""
    names = [s.name for s in systems]
    if len(set(names)) != len(names):
        raise ValueError("system names must be unique")
    started = time.perf_counter()
    log(f"quality: {len(systems)} systems x {len(src)} sentences")
    quality = quality_pass(systems, src, ref, log)

    # core systems: the fixed ones, and each family's Pareto front of (quality-run speed, BLEU)
    core_names = {s.name for s in systems if s.core}
    for fam in dict.fromkeys(s.family for s in systems if s.core is None):
        cand = {s.name: (len(src) / quality[s.name]["seconds"], quality[s.name]["bleu"])
                for s in systems if s.core is None and s.family == fam}
        front = sorted(pareto_front(cand), key=lambda x: cand[x][0])
        if len(front) > max_front:       # keep max_front of them, spread along the front
            front = [front[round(i * (len(front) - 1) / (max_front - 1))] for i in range(max_front)] \
                if max_front > 1 else front[-1:]
        core_names.update(front)
    core = [s for s in systems if s.name in core_names]
    log(f"core systems (timed at every batch size): {', '.join(s.name for s in core)}")

    rows: list[dict] = []
    for b in sorted(batch_sizes):
        n = subset_size(b, len(src))
        log(f"speed: batch {b}, sentences 0..{n - 1}, {len(core)} systems, {repeats} repeats")
        rows += _rows(time_block(core, src, b, n, repeats, min_seconds, pause, log), core, quality, b, n,
                      count_tokens, "core")

    helpful = {}
    for s in core:
        # tokens/s: the subsets of small batch sizes are shorter, tokens/s corrects for their length
        helpful[s.name] = helpful_batch({r["batch_size"]: r["tok_per_s"] for r in rows if r["system"] == s.name})
    if grid_batch is None:
        grid_batch = helpful[anchor] if anchor in helpful else max(batch_sizes)
    rest = [s for s in systems if s.name not in core_names]
    drift = None
    if rest:
        again = [s for s in core if s.name == anchor]     # timed again: does the machine drift between stages?
        n = subset_size(grid_batch, len(src))
        log(f"speed: grid batch {grid_batch}, sentences 0..{n - 1}, {len(rest)} more systems")
        block = time_block(again + rest, src, grid_batch, n, repeats, min_seconds, pause, log)
        rows += _rows(block, rest, quality, grid_batch, n, count_tokens, "grid")
        if again:
            before = next(r for r in rows if r["system"] == anchor and r["batch_size"] == grid_batch)
            after = _rows(block, again, quality, grid_batch, n, count_tokens, "grid")[0]
            drift = {"system": anchor, "batch_size": grid_batch, "sent_per_s_core_stage": before["sent_per_s"],
                     "sent_per_s_grid_stage": after["sent_per_s"]}

    agreement = []
    for s in systems:
        if s.twin and s.twin in quality:
            a, b = quality[s.name]["outputs"], quality[s.twin]["outputs"]
            agreement.append({"system": s.name, "twin": s.twin, "differing_sentences": sum(x != y for x, y in zip(a, b))})
    return {"rows": rows, "quality": quality, "grid_batch": grid_batch, "helpful_batch": helpful,
            "headline": headline(rows), "thread_settings": thread_settings(rows),
            "core": [s.name for s in core], "drift_check": drift, "agreement": agreement,
            "quality_batch": QUALITY_BATCH, "seconds": round(time.perf_counter() - started, 1)}


# --- outputs ----------------------------------------------------------------------------------
ISA_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")


# The environment variables that cap an instruction set: the engine's kernels, oneDNN (the engine's and
# CTranslate2's), CTranslate2's own kernels, OpenBLAS's kernel choice.
ISA_CAPS = ("GMLM_CPU_ISA", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "CT2_FORCE_CPU_ISA", "OPENBLAS_CORETYPE")


def cpu_isa_flags() -> list[str]:
    """The vector/matrix instruction sets of this CPU that decide GEMM speed (from /proc/cpuinfo)."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                have = set(line.partition(":")[2].split())
                return [f for f in ISA_FLAGS if f in have]
    except OSError:
        pass
    return []


def machine_info(threads: int) -> dict:
    cpu, cores = platform.processor() or platform.machine(), set()
    try:
        phys = None
        for line in open("/proc/cpuinfo"):
            key, _, val = line.partition(":")
            key, val = key.strip(), val.strip()
            if key == "model name":
                cpu = val
            elif key == "physical id":
                phys = val
            elif key == "core id":
                cores.add((phys, val))
    except OSError:
        pass
    from .. import _core

    build = _core.build_info()
    # what the engine and the baselines actually ran: the kernels' instruction set, oneDNN's, and the caps
    # set in the environment (a bigger CPU measuring the AVX2 path: docs/benchmark.md)
    engine_isa = {"engine_cpu_isa": build.get("cpu_isa"), "onednn": build.get("onednn"),
                  "native_compute_types": build.get("native_compute_types"),
                  "isa_caps": {k: os.environ[k] for k in ISA_CAPS if os.environ.get(k)}}
    info = {"cpu": cpu, "cpu_isa": cpu_isa_flags(), **engine_isa, "logical_cpus": os.cpu_count(), "physical_cores": len(cores) or None,
            "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "threads_per_system": threads, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None}
    from importlib import metadata

    for mod in ("torch", "ctranslate2", "sacrebleu"):   # the versions without importing (see build_systems)
        try:
            info[mod] = metadata.version(mod)
        except metadata.PackageNotFoundError:
            pass
    try:
        from .. import _core

        info["engine_build"] = _core.build_info()
    except ImportError:
        pass
    return info


def machine_line(m: dict) -> str:
    caps = ", ".join(f"{k}={v}" for k, v in (m.get("isa_caps") or {}).items())
    isa = f", engine ISA {m.get('engine_cpu_isa')}, {m.get('onednn')}" if m.get("engine_cpu_isa") else ""
    return (f"{m['cpu']}, {m['physical_cores']} physical cores / {m['logical_cpus']} logical CPUs{isa}"
            f"{f' (capped: {caps})' if caps else ''}, {m['threads_per_system']} threads per system, {m['os']}")


COLUMNS = ["system", "batch_size", "bleu", "chrf", "len_ratio", "sent_per_s", "tok_per_s", "latency_p50_ms", "latency_p90_ms",
           "timed", "invariant"]


HEADLINE = [
    (f"GMLM T={DEFAULT_ITERATIONS} K={DEFAULT_LENGTH_BEAM} (defaults)",
     [f"gmlm-engine{x} T={DEFAULT_ITERATIONS} K={DEFAULT_LENGTH_BEAM}" for x in ("", "-bfloat16", "-int8")]),
    ("engine AR greedy", [f"engine-ar{x} greedy" for x in ("", "-bfloat16", "-int8")]),
    ("engine AR beam 4", [f"engine-ar{x} beam=4" for x in ("", "-bfloat16", "-int8")]),
    ("CTranslate2 greedy", ["ct2-ar greedy", "ct2-ar-int8 greedy"]),
    ("CTranslate2 beam 4", ["ct2-ar beam=4", "ct2-ar-int8 beam=4"]),
    ("CTC T=1 (--ctc-model)", [f"ctc-engine{x} T=1" for x in ("", "-bfloat16", "-int8")]),
]
RATIOS = [("engine AR greedy", "CTranslate2 greedy"), ("engine AR beam 4", "CTranslate2 beam 4"),
          (HEADLINE[0][0], "engine AR greedy"), (HEADLINE[0][0], "engine AR beam 4"), (HEADLINE[0][0], "CTranslate2 greedy"),
          (HEADLINE[-1][0], "engine AR greedy"), (HEADLINE[-1][0], "CTranslate2 greedy")]


def thread_settings(rows: list[dict]) -> list[dict]:
    """Per system (its base name) and batch size: sent/s at each thread setting, and the winner."""
    out = []
    for base in dict.fromkeys(r["base"] for r in rows):
        for b in sorted({r["batch_size"] for r in rows if r["base"] == base}):
            rs = [r for r in rows if r["base"] == base and r["batch_size"] == b]
            if len(rs) < 2:
                continue
            best = max(rs, key=lambda r: r["sent_per_s"])
            out.append({"system": base, "batch_size": b, "best_setting": best["setting"],
                        **{f"sent_per_s@{r['setting']}": r["sent_per_s"] for r in rs}})
    return out


def headline(rows: list[dict]) -> dict:
    """At the smallest and the largest batch size: each headline system at its best compute type and
    thread setting (named), and the ratios between them, all from this one run."""
    sizes = sorted({r["batch_size"] for r in rows})
    out = {"rows": [], "ratios": []}
    for b in dict.fromkeys([sizes[0], sizes[-1]]) if sizes else []:
        best = {}
        for label, bases in HEADLINE:
            rs = [r for r in rows if r["base"] in bases and r["batch_size"] == b]
            if rs:
                r = max(rs, key=lambda r: r["sent_per_s"])
                best[label] = r
                out["rows"].append({"what": label, "batch_size": b, "winner": r["system"], "setting": r["setting"],
                                    "sent_per_s": r["sent_per_s"], "bleu": r["bleu"], "latency_p50_ms": r["latency_p50_ms"]})
        for a, c in RATIOS:
            if a in best and c in best:
                out["ratios"].append({"batch_size": b, "ratio": f"{a} / {c}",
                                      "speed": round(best[a]["sent_per_s"] / best[c]["sent_per_s"], 2),
                                      "bleu_difference": round(best[a]["bleu"] - best[c]["bleu"], 2)})
    return out


def _table(rows: list[dict]) -> str:
    cells = [{**r, "timed": f"0-{r['timed_sentences'][1] - 1} x{r['loops']}",
              "invariant": "yes" if r["batch_invariant"] else f"NO ({r['differing_sentences']} differ)"} for r in rows]
    return format_table(cells, COLUMNS)


def markdown(result: dict, meta: dict) -> str:
    rows = sorted(result["rows"], key=lambda r: (r["batch_size"], r["family"], -r["sent_per_s"]))
    gb = result["grid_batch"]
    m = meta["machine"]
    md = [f"# gmlm bench: {meta['data']}", "",
          f"- Machine: {machine_line(m)}; load average at start {m['load_average']}, at end {meta['load_average_end']}",
          f"- Command: `{meta['command']}`  ({meta['date']}, {result['seconds']} s)",
          f"- Models: GMLM `{meta['gmlm_model']}`, raw GMLM `{meta['gmlm_raw_model']}`, AR `{meta['ar_model']}`",
          f"- Quality: sacreBLEU {meta['bleu_signature']} "
          f"and chrF, each system's own output on all {meta['sentences']} sentences (one run, batches of "
          f"{result['quality_batch']}). len_ratio: output length / reference length in BLEU's tokens (below 1, "
          f"BLEU's brevity penalty applies).",
          f"- Speed: {meta['method']}",
          f"- Grid batch (the largest batch that helps `{meta['anchor']}`): {gb}. "
          f"Timed column: sentences 0..N-1 of the test set x loops per run.", "",
          "## Headline: each system at its best compute type and thread setting", "",
          "Threads are written INTRAxINTER: intra-op threads x parallel workers (CTranslate2's inter_threads; for the "
          "engine, that many Translators, each translating part of every batch).", ""]
    hl = headline(result["rows"])
    if hl["rows"]:
        md += [format_table(hl["rows"], ["what", "batch_size", "winner", "setting", "sent_per_s", "bleu",
                                          "latency_p50_ms"]), "",
               format_table(hl["ratios"], ["batch_size", "ratio", "speed", "bleu_difference"]), ""]
    ts = thread_settings(result["rows"])
    if ts:
        cols = ["system", "batch_size", "best_setting"] + list(dict.fromkeys(k for r in ts for k in r if k.startswith("sent_")))
        md += ["## Thread settings (sentences/s)", "", format_table(ts, cols), ""]
    md += ["## All systems", "", _table(rows), "",
          "## Largest batch that helps (the smallest batch size within 3 % of the system's best tokens/s)", "",
          format_table([{"system": k, "batch_size": v} for k, v in result["helpful_batch"].items()],
                       ["system", "batch_size"]), ""]
    if meta.get("ablations"):
        md += [f"## Ablations (batch {gb})", ""]
        by_name = {r["system"]: r for r in result["rows"] if r["batch_size"] == gb}
        abl = [{"factor": f, **by_name[name]} for f, names in meta["ablations"].items() for name in names if name in by_name]
        md += [format_table(abl, ["factor", "system", "bleu", "chrf", "len_ratio", "sent_per_s", "tok_per_s", "latency_p50_ms"]), ""]
    checks = []
    if result["drift_check"]:
        d = result["drift_check"]
        checks.append(f"- Drift: `{d['system']}` at batch {d['batch_size']}: {d['sent_per_s_core_stage']} sent/s in the "
                      f"core stage, {d['sent_per_s_grid_stage']} sent/s when timed again with the grid.")
    for a in result["agreement"]:
        checks.append(f"- `{a['system']}` vs `{a['twin']}` (the same algorithm in another implementation): "
                      f"{a['differing_sentences']} of {meta['sentences']} translations differ.")
    bad = [r for r in result["rows"] if not r["batch_invariant"]]
    checks.append(f"- Batch invariance: {'all timed outputs equal the quality run' if not bad else ''}"
                  + "; ".join(f"`{r['system']}` batch {r['batch_size']}: {r['differing_sentences']} differ" for r in bad))
    md += ["## Checks", ""] + checks + [""]
    return "\n".join(md)


def write_results(result: dict, out_dir: str | Path, meta: dict, plot: bool = True) -> dict:
    out = Path(out_dir)
    (out / "outputs").mkdir(parents=True, exist_ok=True)
    for name, q in result["quality"].items():
        (out / "outputs" / f"{slug(name)}.txt").write_text("\n".join(q["outputs"]) + "\n", encoding="utf-8")
    quality = {k: {x: v for x, v in q.items() if x != "outputs"} for k, q in result["quality"].items()}
    doc = {"meta": meta, **{k: v for k, v in result.items() if k != "quality"}, "quality": quality}
    (out / "bench.json").write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    (out / "bench.md").write_text(markdown(result, meta))
    paths = {"json": out / "bench.json", "md": out / "bench.md", "outputs": out / "outputs"}
    if plot and result["rows"]:
        paths["png"] = plot_results(result["rows"], out / "speed_quality.png", meta)
    return paths


def plot_results(rows: list[dict], path: Path, meta: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 6))
    families = sorted({r["family"] for r in rows})
    batches = sorted({r["batch_size"] for r in rows})
    colors = {f: plt.cm.tab10(i % 10) for i, f in enumerate(families)}
    markers = dict(zip(batches, "o^sDvP*XhH"))
    for f in families:
        for b in batches:
            rs = [r for r in rows if r["family"] == f and r["batch_size"] == b]
            if not rs:
                continue
            ax.scatter([r["sent_per_s"] for r in rs], [r["bleu"] for r in rs], color=colors[f],
                       marker=markers.get(b, "x"), s=28, alpha=0.8)
            front = set(pareto_front({r["system"]: (r["sent_per_s"], r["bleu"]) for r in rs}))
            fr = sorted((r for r in rs if r["system"] in front), key=lambda r: r["sent_per_s"])
            ax.plot([r["sent_per_s"] for r in fr], [r["bleu"] for r in fr], color=colors[f],
                    marker=markers.get(b, "x"), label=f"{f}, batch {b}", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("sentences / s (log scale)")
    ax.set_ylabel("sacreBLEU (detokenized, cased, 13a)")
    ax.set_title(f"{meta.get('data', '')}\n{machine_line(meta['machine'])}", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.text(0.01, 0.01, "lines join each (family, batch) group's Pareto-optimal points", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- the systems and the command line ----------------------------------------------------------
DEFAULT_TK = (DEFAULT_ITERATIONS, DEFAULT_LENGTH_BEAM)     # the Translator's defaults: the headline row
GRID = list(dict.fromkeys([(t, k) for t in (1, 2, 4, 6, 10) for k in (1, 3, 5)] + [(5, 2), (6, 2), (8, 2), DEFAULT_TK]))
# Timed at every batch size: the defaults; (4, 3), (10, 5): the models issue's goals; (5, 2): a faster point of
# the val front (the defaults before 2026-12-05; docs/benchmark.md).
FIXED_CORE = list(dict.fromkeys([DEFAULT_TK, (4, 3), (5, 2), (10, 5)]))
THRESHOLDS = (0.5, 0.7, 0.9)
THRESHOLD_TK = (10, 3)
STUTTER_OFF = [(4, 3), (10, 5)]
PRUNED = [(4, 5, 2), (4, 5, 1), (10, 5, 2), (6, 3, 1)]
LOWP_GRID = list(dict.fromkeys([DEFAULT_TK, (4, 3), (1, 1), (2, 1), (5, 2), (8, 2), (10, 3), (10, 5), (4, 1), (6, 2)]))   # the engine in bfloat16 / int8
RAW = [(1, 1), (4, 3), (10, 5)]
ANCHOR = f"gmlm-engine T={DEFAULT_ITERATIONS} K={DEFAULT_LENGTH_BEAM}"
HEADLINE_GRID = list(dict.fromkeys([DEFAULT_TK, (4, 1), (1, 1)]))
CTC_PASSES = (1, 2, 4)     # --ctc-model: passes over the canvas (T=1 also at every thread setting)
QUICK = {"sentences": 16, "batch_sizes": [1, 8], "repeats": 2}


def add_arguments(p) -> None:
    p.add_argument("--gmlm-model", default=None, help="the GMLM (distilled); default: the shipped one")
    p.add_argument("--gmlm-raw-model", default=None, help="a GMLM trained on raw targets (ablation)")
    p.add_argument("--ctc-model", default=None,
                   help="a ctc model (docs/decoding.md, \"CTC models\"): timed at T=1, 2, 4 in every native compute type")
    p.add_argument("--ar-model", default=None, help="the AR model (PyTorch AR, and exported to CTranslate2)")
    p.add_argument("--ar-length-penalty", type=float, default=1.0,
                   help="the AR beam rows' length penalty (CTranslate2's, and the reference's): select it on val")
    p.add_argument("--ct2-model", default=None,
                   help="the AR model already exported to CTranslate2 (with spm.model); default: export --ar-model "
                        "into a temporary directory")
    p.add_argument("--data-dir", default=None, help="Multi30k (default: $GMLM_DATA_DIR)")
    p.add_argument("--split", default="test2016")
    p.add_argument("--src-lang", default="en")
    p.add_argument("--tgt-lang", default="de")
    p.add_argument("--src", default=None, help="source file instead of a Multi30k split (with --ref)")
    p.add_argument("--ref", default=None, help="reference file (with --src)")
    p.add_argument("--limit", type=int, default=0, help="the first N sentences only (0: all)")
    p.add_argument("--batch-sizes", default="1,8,64,256",
                   help="comma-separated; 128 too costs about 3 more minutes on 2 cores")
    p.add_argument("--grid-batch", default="auto",
                   help="batch size for the full GMLM grid: auto (the largest batch that helps) or one of --batch-sizes")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=2.0, help="a timed run loops over its subset at least this long")
    p.add_argument("--pause", type=float, default=0.3, help="seconds of pause before each timed run")
    p.add_argument("--max-front", type=int, default=4,
                   help="at most this many Pareto-front GMLM configurations are timed at every batch size")
    p.add_argument("--threads", type=int, default=2,
                   help="threads per system: the GMLM grid runs with this many intra-op threads; the headline systems "
                        "(GMLM defaults, engine AR, CTranslate2) are also timed at 1 thread and at this many 1-thread "
                        "workers, and the best setting is named")
    p.add_argument("--no-thread-search", dest="thread_search", action="store_false",
                   help="time every system at --threads intra-op threads only")
    p.add_argument("--headline", action="store_true",
                   help="only the headline systems: GMLM T=8 K=2, T=4 K=1, T=1 K=1 per compute type, engine AR and "
                        "CTranslate2 greedy and beam 4, PyTorch references (no grid, no ablations)")
    p.add_argument("--out", default="bench/results")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch systems")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quick", action="store_true",
                   help=f"a small slice that checks the harness in seconds: {QUICK['sentences']} sentences, batch sizes "
                        f"{QUICK['batch_sizes']}, {QUICK['repeats']} repeats, no minimum run time, a small grid")


def check_args(args) -> dict:
    """Validate the options; ValueError names the bad one. Returns the parsed settings."""
    if args.gmlm_model is None:
        from .. import default_model_dir

        args.gmlm_model = str(default_model_dir("gmlm"))
    try:
        sizes = [int(x) for x in str(args.batch_sizes).split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--batch-sizes must be comma-separated integers, got {args.batch_sizes!r}") from None
    if not sizes or any(b < 1 for b in sizes):
        raise ValueError(f"--batch-sizes must be integers >= 1, got {args.batch_sizes!r}")
    if len(set(sizes)) != len(sizes):
        raise ValueError(f"--batch-sizes has duplicates: {args.batch_sizes!r}")
    grid = None
    if args.grid_batch != "auto":
        try:
            grid = int(args.grid_batch)
        except ValueError:
            raise ValueError(f"--grid-batch must be 'auto' or an integer, got {args.grid_batch!r}") from None
        if grid not in sizes:
            raise ValueError(f"--grid-batch {grid} is not one of --batch-sizes {sizes}")
    for name, v, lo in (("--repeats", args.repeats, 1), ("--threads", args.threads, 1), ("--limit", args.limit, 0),
                        ("--max-front", args.max_front, 1)):
        if v < lo:
            raise ValueError(f"{name} must be >= {lo}, got {v}")
    for name, v in (("--min-seconds", args.min_seconds), ("--pause", args.pause)):
        if not v >= 0:
            raise ValueError(f"{name} must be >= 0, got {v}")
    if bool(args.src) != bool(args.ref):
        raise ValueError("--src and --ref go together")
    if args.ct2_model and not args.ar_model:
        raise ValueError("--ct2-model needs --ar-model (the same model, for PyTorch AR and the token limit)")
    if args.ct2_model and not (Path(args.ct2_model) / "spm.model").is_file():
        raise FileNotFoundError(f"--ct2-model {args.ct2_model}: no spm.model in it (export with gmlm export)")
    return {"batch_sizes": sizes, "grid_batch": grid}


def build_systems(args, tmp_dir: str) -> tuple[list[System], dict[str, list[str]]]:
    """The systems of `gmlm bench` (models loaded here, outside every timed region) and the ablation groups."""
    if args.ar_model:
        # CTranslate2 must be imported before torch: with torch loaded first, CTranslate2's bundled OpenMP/BLAS
        # threading in the same process ran 3.5-5x slower on the 2-core machine (ct2 greedy, batch 64: 139 vs
        # 492 sent/s) while torch's own speed did not depend on the order. This keeps the AR baseline at its speed.
        loaded = list(sys.modules)
        if "torch" in loaded and ("ctranslate2" not in loaded or loaded.index("torch") < loaded.index("ctranslate2")):
            print("warning: torch was imported before ctranslate2: the CTranslate2 baseline may run slower than "
                  "it can in its own process", file=sys.stderr)
        import ctranslate2  # noqa: F401
    import concurrent.futures

    from ..engine import Translator

    texts = lambda res: [r.text for r in res]  # noqa: E731
    T = args.threads
    # thread settings "INTRAxINTER": one engine with T threads, one with 1, and T engines of 1 thread each
    # working on parts of every batch at once (CTranslate2's inter_threads); the first is the default
    settings = list(dict.fromkeys([f"{T}x1", "1x1", f"1x{T}"])) if args.thread_search else [f"{T}x1"]
    workers = concurrent.futures.ThreadPoolExecutor(max(2, T))
    loaded: dict = {}

    def engines(model, ct, intra, n):
        """n Translators of `model` (loaded once per (model, compute type, threads))."""
        have = loaded.setdefault((str(model), ct, intra), [])
        while len(have) < n:
            have.append(Translator(model, intra_threads=intra, compute_type=ct))
        return have[:n]

    def parallel(fns, xs):
        """xs cut into len(fns) consecutive parts, translated at once (the engine releases the GIL)."""
        size = max(1, math.ceil(len(xs) / len(fns)))
        futs = [workers.submit(f, xs[i * size:(i + 1) * size]) for i, f in enumerate(fns) if xs[i * size:(i + 1) * size]]
        return [y for f in futs for y in f.result()]

    def engine_at(model, ct, **o):
        def make(intra, inter):
            fns = [lambda xs, tr=tr: texts(tr.translate_batch(xs, max_batch_size=len(xs), **o))
                   for tr in engines(model, ct, intra, inter)]
            return fns[0] if inter == 1 else (lambda xs: parallel(fns, xs))
        return make

    def threaded(base, family, make, options, core, twin=None):
        """One system per thread setting; the default setting keeps the plain name."""
        out = []
        for st in settings:
            intra, inter = (int(x) for x in st.split("x"))
            first = st == settings[0]
            out.append(System(base if first else f"{base} @{st}", family, make(intra, inter), {**options, "threads": st},
                              core, twin if first else None, None if first else base, st))
        return out

    def gmlm(tr, family, label, core, twin=None, **o):
        return System(f"{family} {label}", family, lambda xs: texts(tr.translate_batch(xs, max_batch_size=len(xs), **o)),
                      o, core, twin, None, f"{T}x1")

    if args.quick:
        grid, thresholds, lowp_grid = [(1, 1), (2, 1), DEFAULT_TK], THRESHOLDS[1:2], LOWP_GRID[:2]
    elif args.headline:
        grid, thresholds, lowp_grid = HEADLINE_GRID, (), HEADLINE_GRID
    else:
        grid, thresholds, lowp_grid = GRID, THRESHOLDS, LOWP_GRID
    eng = engines(args.gmlm_model, "float32", T, 1)[0]
    systems = []
    for t, k in grid:
        if (t, k) == DEFAULT_TK:
            systems += threaded(f"gmlm-engine T={t} K={k}", "gmlm-engine",
                                engine_at(args.gmlm_model, "float32", iterations=t, length_beam=k),
                                dict(iterations=t, length_beam=k), True)
        else:
            systems.append(gmlm(eng, "gmlm-engine", f"T={t} K={k}", True if (t, k) in FIXED_CORE else None,
                                iterations=t, length_beam=k))
    tt, tk = THRESHOLD_TK
    systems += [gmlm(eng, "gmlm-engine", f"threshold={p} T={tt} K={tk}", None, iterations=tt, length_beam=tk,
                     remask="threshold", threshold=p) for p in thresholds]
    if not args.headline:
        systems += [gmlm(eng, "gmlm-engine", f"T={t} K={k} keep={p}", None, iterations=t, length_beam=k,
                         length_beam_keep=p) for t, k, p in PRUNED[:1 if args.quick else None]]
        systems += [gmlm(eng, "gmlm-engine", f"T={t} K={k} no-stutter", False, iterations=t, length_beam=k,
                         stutter_remask=False) for t, k in STUTTER_OFF[:1 if args.quick else None]]
    # the engine's low-precision compute types (oneDNN), where this CPU runs them natively
    from .. import _core

    native = _core.build_info().get("native_compute_types", ["float32"])
    lowp = [ct for ct in ("bfloat16", "int8") if ct in native]
    for ct in lowp:
        low = engines(args.gmlm_model, ct, T, 1)[0]
        for t, k in lowp_grid:
            if (t, k) == DEFAULT_TK:
                systems += threaded(f"gmlm-engine-{ct} T={t} K={k}", f"gmlm-engine-{ct}",
                                    engine_at(args.gmlm_model, ct, iterations=t, length_beam=k),
                                    dict(iterations=t, length_beam=k), True)
            else:
                systems.append(gmlm(low, f"gmlm-engine-{ct}", f"T={t} K={k}", True if (t, k) in FIXED_CORE else None,
                                    iterations=t, length_beam=k))
    if args.ctc_model:
        for ct in ["float32"] + lowp:
            family = "ctc-engine" + ("" if ct == "float32" else f"-{ct}")
            systems += threaded(f"{family} T=1", family, engine_at(args.ctc_model, ct, iterations=1),
                                {"iterations": 1, "compute_type": ct}, True)
            ctc = engines(args.ctc_model, ct, T, 1)[0]
            systems += [gmlm(ctc, family, f"T={t}", True, iterations=t) for t in CTC_PASSES[1:1 if args.quick else None]]
    if args.gmlm_raw_model and not args.headline:
        raw = Translator(args.gmlm_raw_model, intra_threads=args.threads, compute_type="float32")
        systems += [gmlm(raw, "gmlm-engine-raw", f"T={t} K={k}", False, iterations=t, length_beam=k)
                    for t, k in RAW[:2 if args.quick else None]]
    if not args.ar_model:
        print("warning: no --ar-model: the AR baselines are skipped", file=sys.stderr)
    if not args.no_torch:
        from ..pytorch.reference import ReferenceTranslator

        ref = ReferenceTranslator(args.gmlm_model, threads=args.threads)      # also torch.set_num_threads
        systems.append(gmlm(ref, "gmlm-torch", ANCHOR.split(" ", 1)[1], True, twin=ANCHOR,
                            iterations=DEFAULT_ITERATIONS, length_beam=DEFAULT_LENGTH_BEAM))
    if args.ar_model:
        from ..config import read_model_dir
        from ..pytorch.export import CT2Translator, export_ctranslate2

        max_len = read_model_dir(args.ar_model).config.max_target_len
        ct2_dir = args.ct2_model or export_ctranslate2(args.ar_model, Path(tmp_dir) / "ct2")
        names = {1: "greedy", 4: "beam=4"}
        lp = lambda b: args.ar_length_penalty if b > 1 else 1.0  # noqa: E731
        # the engine's AR decoding of the same model: the same kernels as the GMLM rows, every compute type
        for ct in ["float32"] + lowp:
            family = "engine-ar" + ("" if ct == "float32" else f"-{ct}")
            for beam in (1, 4):
                systems += threaded(f"{family} {names[beam]}", family,
                                    engine_at(args.ar_model, ct, beam_size=beam, length_penalty=lp(beam)),
                                    {"beam_size": beam, "length_penalty": lp(beam), "compute_type": ct}, True,
                                    twin=None if ct != "float32" or args.no_torch else f"torch-ar {names[beam]}")
        # CTranslate2: float32 (the exported model) and int8 (its CPU default under compute_type="auto",
        # weights per output channel, activations per row: how its users run it on a CPU)
        ct2s: dict = {}

        def ct2_at(compute_type, beam):
            def make(intra, inter):
                key = (compute_type, intra, inter)
                if key not in ct2s:
                    ct2s[key] = CT2Translator(ct2_dir, threads=intra, compute_type=compute_type, inter_threads=inter)
                ct = ct2s[key]
                return lambda xs: ct.translate_batch(xs, beam_size=beam, max_batch_size=max(1, math.ceil(len(xs) / inter)),
                                                     max_decoding_length=max_len, length_penalty=lp(beam))
            return make

        for family, compute_type in (("ct2-ar", "float32"), ("ct2-ar-int8", "int8")):
            for beam in (1, 4):
                systems += threaded(f"{family} {names[beam]}", family, ct2_at(compute_type, beam),
                                    {"beam_size": beam, "max_decoding_length": max_len, "length_penalty": lp(beam),
                                     "compute_type": compute_type}, True)
        if not args.no_torch:
            ar = ReferenceTranslator(args.ar_model, threads=args.threads)
            for beam in (1, 4):
                systems.append(System(f"torch-ar {names[beam]}", "torch-ar",
                                      lambda xs, b=beam: texts(ar.translate_batch(
                                          xs, beam_size=b, max_batch_size=len(xs),
                                          length_penalty=args.ar_length_penalty if b > 1 else 1.0)),
                                      {"beam_size": beam, "length_penalty": args.ar_length_penalty if beam > 1 else 1.0},
                                      True, twin=f"ct2-ar {names[beam]}"))
    have = {s.name for s in systems}
    k3 = [f"gmlm-engine T={t} K=3" for t in (1, 2, 4, 6, 10)]
    ablations = {
        "distilled vs raw": [f"{fam} T={t} K={k}" for t, k in RAW for fam in ("gmlm-engine", "gmlm-engine-raw")],
        "iterations (K=3)": k3,
        "length beam (T=4)": [f"gmlm-engine T=4 K={k}" for k in (1, 3, 5)],
        "length beam (T=6)": [f"gmlm-engine T=6 K={k}" for k in (1, 2, 3, 5)],
        "passes at K=2": [f"gmlm-engine T={t} K=2" for t in sorted({DEFAULT_ITERATIONS, 6, 8})],
        "linear vs threshold": [f"gmlm-engine T={tt} K={tk}"]
                               + [f"gmlm-engine threshold={p} T={tt} K={tk}" for p in THRESHOLDS],
        "stutter re-masking": [f"gmlm-engine T={t} K={k}{x}" for t, k in STUTTER_OFF for x in ("", " no-stutter")],
        "length-candidate pruning": [n for t, k, p in PRUNED
                                     for n in (f"gmlm-engine T={t} K={k}", f"gmlm-engine T={t} K={k} keep={p}")],
        "AR compute type": [f"{fam} {b}" for b in ("greedy", "beam=4") for fam in ("ct2-ar", "ct2-ar-int8")],
        "GMLM compute type": [f"{fam} T={t} K={k}" for t, k in LOWP_GRID
                              for fam in ("gmlm-engine", "gmlm-engine-bfloat16", "gmlm-engine-int8")],
    }
    return systems, {f: [n for n in names if n in have] for f, names in ablations.items()}


def command_line(args) -> str:
    """The options of this run as a `gmlm bench` command line (defaults included)."""
    parts = ["gmlm bench"]
    for key, v in vars(args).items():
        if key in ("func", "command") or v is None or v is False:
            continue
        parts.append(f"--{key.replace('_', '-')}" + ("" if v is True else f" {v}"))
    return " ".join(parts)


def run(args) -> int:
    import tempfile

    from ..config import read_model_dir
    from ..data import load_split, read_parallel
    from ..tokenizer import Tokenizer

    settings = check_args(args)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.src:
        src, ref = read_parallel(args.src, args.ref)
        data = f"{args.src} ({len(src)} sentences)"
    else:
        src, ref = load_split(args.data_dir, args.split, args.src_lang, args.tgt_lang)
        data = f"Multi30k {args.split} {args.src_lang}->{args.tgt_lang}"
    batch_sizes, repeats, min_seconds, pause = settings["batch_sizes"], args.repeats, args.min_seconds, args.pause
    limit = args.limit
    if args.quick:
        batch_sizes, repeats, min_seconds, pause = QUICK["batch_sizes"], QUICK["repeats"], 0.0, 0.0
        limit = limit or QUICK["sentences"]
        settings["grid_batch"] = None
    if limit:
        src, ref = src[:limit], ref[:limit]
    if not src:
        raise ValueError("no sentences to translate (check --limit and the data)")
    data += f", {len(src)} sentences"
    machine = machine_info(args.threads)
    if machine["load_average"] and machine["load_average"][0] > 0.5:
        log(f"warning: load average {machine['load_average'][0]:.2f} before the run: other processes share the CPU")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        log("loading models (not timed)")
        systems, ablations = build_systems(args, tmp)
        spm = Tokenizer(read_model_dir(args.gmlm_model).spm_path)
        count = lambda outs: sum(len(x) for x in spm.encode(outs))  # noqa: E731
        result = run_benchmark(systems, src, ref, batch_sizes, repeats, count, min_seconds=min_seconds, pause=pause,
                               grid_batch=settings["grid_batch"], anchor=ANCHOR, max_front=args.max_front, log=log)
    subsets = {b: subset_size(b, len(src)) for b in batch_sizes}
    bleu_sig = next(iter(result["quality"].values()))["bleu_signature"]
    meta = {
        "data": data, "sentences": len(src), "machine": machine, "load_average_end": os.getloadavg(),
        "command": command_line(args),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_seconds": round(time.perf_counter() - t_start, 1),
        "gmlm_model": str(args.gmlm_model), "gmlm_raw_model": args.gmlm_raw_model, "ar_model": args.ar_model,
        "ct2_model": args.ct2_model or "exported from --ar-model to a temporary directory",
        "threads": args.threads, "repeats": repeats, "batch_sizes": batch_sizes, "min_seconds": min_seconds,
        "pause_seconds": pause, "timed_subsets": {str(b): [0, n] for b, n in subsets.items()},
        "timed_sentences_format": "[start, end): 0-based line numbers of the test set; a timed run translates them "
                                  "`loops` times in batches of batch_size consecutive sentences",
        "anchor": ANCHOR, "ablations": ablations, "bleu_signature": bleu_sig,
        "tokenization": "raw source strings in, detokenized strings out; SentencePiece encode and decode inside the "
                        "timed region for every system; target tokens = SentencePiece pieces of the output, counted "
                        "with the GMLM's model outside the timed region",
        "method": (f"median of {repeats} repeats, systems interleaved (order rotated per repeat), {pause} s pause "
                   f"before each run, warm-up excluded, model loading excluded; {args.threads} threads per system "
                   f"(engine intra_threads, CTranslate2 intra_threads, torch.set_num_threads). Timed sentences per "
                   "batch size: " + ", ".join(f"batch {b}: 0..{n - 1}" for b, n in subsets.items())
                   + f"; a run loops over its subset until it lasts at least {min_seconds} s. Latency: wall time of "
                     "one call on one batch, p50/p90 over all calls of all repeats. Tokenization inside the timed "
                     "region for every system."),
    }
    paths = write_results(result, args.out, meta, plot=not args.no_plot)
    print(Path(paths["md"]).read_text())
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
