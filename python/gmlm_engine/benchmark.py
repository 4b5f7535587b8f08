"""`gmlm bench`: speed and quality of GMLM decoding against autoregressive decoding, in one run.

Every system gets the same raw source strings and returns detokenized strings: SentencePiece
encoding and decoding are inside the timed region for everyone (CTranslate2 included: its wrapper
tokenizes with the same SentencePiece model). Model loading is outside. Systems are interleaved:
for each batch size and repeat, every system runs once over the test set, in an order rotated per
repeat; the reported time is the median over repeats. BLEU and chrF come from each system's own output.
"""
from __future__ import annotations

import json
import platform
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .evaluate import format_table, score


@dataclass
class System:
    name: str
    family: str                                  # curve in the plot: gmlm-engine, gmlm-torch, ct2-ar, torch-ar
    translate: Callable[[list[str]], list[str]]
    options: dict = field(default_factory=dict)
    batch_sizes: tuple[int, ...] | None = None    # None: every batch size of the run


def _percentile(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    if not xs:
        return 0.0
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def run_benchmark(systems: list[System], src: list[str], ref: list[str], batch_sizes: list[int], repeats: int,
                  count_tokens: Callable[[list[str]], int], progress: bool = True) -> list[dict]:
    rows = []
    for bs in batch_sizes:
        active = [s for s in systems if s.batch_sizes is None or bs in s.batch_sizes]
        times: dict[str, list[float]] = {s.name: [] for s in active}
        lat: dict[str, list[list[float]]] = {s.name: [] for s in active}
        outputs: dict[str, list[str]] = {}
        for rep in range(repeats):
            order = active[rep % len(active):] + active[:rep % len(active)] if active else []
            for s in order:
                out, lats = [], []
                t0 = time.perf_counter()
                for i in range(0, len(src), bs):
                    t1 = time.perf_counter()
                    out += s.translate(src[i:i + bs])
                    lats.append(time.perf_counter() - t1)
                times[s.name].append(time.perf_counter() - t0)
                lat[s.name].append(lats)
                if s.name not in outputs:
                    outputs[s.name] = out
                elif out != outputs[s.name]:
                    raise RuntimeError(f"{s.name}: output changed between repeats (not reproducible)")
                if progress:
                    print(f"  batch {bs:>4} repeat {rep + 1}/{repeats} {s.name:<40} {times[s.name][-1]:7.2f} s", flush=True)
        for s in active:
            med = statistics.median(times[s.name])
            k = times[s.name].index(med) if med in times[s.name] else 0
            q = score(outputs[s.name], ref)
            ntok = count_tokens(outputs[s.name])
            rows.append({"system": s.name, "family": s.family, "batch_size": bs, "bleu": q["bleu"], "chrf": q["chrf"],
                         "sent_per_s": round(len(src) / med, 2), "tok_per_s": round(ntok / med, 1),
                         "latency_p50_ms": round(1000 * _percentile(lat[s.name][k], 0.5), 2),
                         "latency_p90_ms": round(1000 * _percentile(lat[s.name][k], 0.9), 2),
                         "seconds": [round(t, 3) for t in times[s.name]], "options": s.options,
                         "bleu_signature": q["bleu_signature"]})
    return rows


def machine_info() -> str:
    import os

    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def write_results(rows: list[dict], out_dir: str | Path, meta: dict, plot: bool = True) -> dict:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2) + "\n")
    cols = ["system", "batch_size", "bleu", "chrf", "sent_per_s", "tok_per_s", "latency_p50_ms", "latency_p90_ms"]
    md = [f"# Benchmark: {meta.get('data', '')}", "", f"Machine: {meta.get('machine', '')}", "",
          f"sacreBLEU: {rows[0]['bleu_signature'] if rows else ''}; {meta.get('method', '')}", "",
          format_table(rows, cols), ""]
    (out / "bench.md").write_text("\n".join(md))
    paths = {"json": out / "bench.json", "md": out / "bench.md"}
    if plot and rows:
        paths["png"] = plot_results(rows, out / "speed_quality.png", meta)
    return paths


def plot_results(rows: list[dict], path: Path, meta: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5))
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["family"], r["batch_size"]), []).append(r)
    markers = {"gmlm-engine": "o", "gmlm-torch": "s", "ct2-ar": "^", "torch-ar": "v"}
    for (fam, bs), rs in sorted(groups.items()):
        rs = sorted(rs, key=lambda r: r["sent_per_s"])
        ax.plot([r["sent_per_s"] for r in rs], [r["bleu"] for r in rs], marker=markers.get(fam, "x"),
                linestyle="-" if len(rs) > 1 else "none", label=f"{fam}, batch {bs}")
    ax.set_xscale("log")
    ax.set_xlabel("sentences / s (log)")
    ax.set_ylabel("sacreBLEU (detok., cased)")
    ax.set_title(f"{meta.get('data', '')} — {meta.get('machine', '')}"[:110], fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# --- the systems of `gmlm bench` -------------------------------------------------------------
FULL_GRID = [(t, k) for t in (1, 2, 4, 6, 10) for k in (1, 3, 5)]
SMALL_GRID = [(2, 3), (4, 3), (10, 5)]
THRESHOLDS = (0.5, 0.7, 0.9)


def add_arguments(p) -> None:
    p.add_argument("--gmlm-model", default="default", help="the GMLM (default: the shipped one)")
    p.add_argument("--gmlm-raw-model", default=None, help="a GMLM trained on raw targets (ablation)")
    p.add_argument("--ar-model", default=None, help="the AR model (default: models/ar-en-de when shipped)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test2016")
    p.add_argument("--src-lang", default="en")
    p.add_argument("--tgt-lang", default="de")
    p.add_argument("--limit", type=int, default=0, help="first N sentences only")
    p.add_argument("--batch-sizes", default="1,8,64,256")
    p.add_argument("--full-grid-batch", type=int, default=64,
                   help="batch size at which every GMLM configuration runs (others: a small grid)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="bench/results")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch systems")
    p.add_argument("--quick", action="store_true", help="a small slice, 1 repeat (seconds): checks the harness")


def build_systems(args, bsizes: list[int]) -> list[System]:
    systems: list[System] = []
    grid_bs = (args.full_grid_batch,)
    small = None if args.quick else tuple(b for b in bsizes)
    texts = lambda res: [r.text for r in res]  # noqa: E731

    from .engine import Translator

    eng = Translator(args.gmlm_model, intra_threads=args.threads)

    def gmlm(tr, fam, label, **o):
        return System(f"{fam} {label}", fam, lambda xs, o=o: texts(tr.translate_batch(xs, max_batch_size=len(xs), **o)), o)

    grid = [(4, 3), (2, 1)] if args.quick else FULL_GRID
    for t, k in grid:
        s = gmlm(eng, "gmlm-engine", f"T={t} K={k}", iterations=t, length_beam=k)
        s.batch_sizes = small if (t, k) in SMALL_GRID or args.quick else grid_bs
        systems.append(s)
    if not args.quick:
        for thr in THRESHOLDS:
            s = gmlm(eng, "gmlm-engine", f"threshold {thr} T=10 K=3", iterations=10, length_beam=3,
                     remask="threshold", threshold=thr)
            s.batch_sizes = small if thr == 0.9 else grid_bs
            systems.append(s)
        for t, k in ((4, 3), (10, 5)):
            s = gmlm(eng, "gmlm-engine", f"T={t} K={k} no-stutter", iterations=t, length_beam=k, stutter_remask=False)
            s.batch_sizes = grid_bs
            systems.append(s)
        if args.gmlm_raw_model:
            raw = Translator(args.gmlm_raw_model, intra_threads=args.threads)
            for t, k in ((4, 3), (10, 5)):
                s = gmlm(raw, "gmlm-engine-raw", f"T={t} K={k}", iterations=t, length_beam=k)
                s.batch_sizes = grid_bs
                systems.append(s)
    if not args.no_torch:
        from .reference import ReferenceTranslator

        ref = ReferenceTranslator(args.gmlm_model, threads=args.threads)
        s = gmlm(ref, "gmlm-torch", "T=4 K=3", iterations=4, length_beam=3)
        systems.append(s)
    if args.ar_model:
        import tempfile

        from .config import read_model_dir
        from .export import CT2Translator, export_ctranslate2

        max_len = read_model_dir(args.ar_model).config.max_target_len
        ct2_dir = Path(tempfile.mkdtemp()) / "ct2"
        export_ctranslate2(args.ar_model, ct2_dir)
        ct = CT2Translator(ct2_dir, threads=args.threads)
        for beam in (1, 4):
            systems.append(System(f"ct2-ar {'greedy' if beam == 1 else 'beam 4'}", "ct2-ar",
                                  lambda xs, b=beam: ct.translate_batch(xs, beam_size=b, max_batch_size=len(xs),
                                                                        max_decoding_length=max_len),
                                  {"beam_size": beam}))
        if not args.no_torch:
            from .reference import ReferenceTranslator

            ar = ReferenceTranslator(args.ar_model, threads=args.threads)
            for beam in (1, 4):
                systems.append(System(f"torch-ar {'greedy' if beam == 1 else 'beam 4'}", "torch-ar",
                                      lambda xs, b=beam: texts(ar.translate_batch(xs, beam_size=b, max_batch_size=len(xs))),
                                      {"beam_size": beam}, batch_sizes=None if args.quick else tuple(b for b in bsizes if b <= 64)))
    return systems


def run(args) -> int:
    from .data import load_split
    from .tokenizer import Tokenizer

    if args.ar_model is None:
        from . import default_model_dir

        cand = default_model_dir().parent / "ar-en-de"
        args.ar_model = str(cand) if (cand / "config.json").is_file() else None
    src, ref = load_split(args.data_dir, args.split, args.src_lang, args.tgt_lang)
    limit = args.limit or (24 if args.quick else 0)
    if limit:
        src, ref = src[:limit], ref[:limit]
    bsizes = [1, 8] if args.quick else [int(b) for b in args.batch_sizes.split(",")]
    if args.quick:
        args.repeats, args.full_grid_batch = 1, 8
    systems = build_systems(args, bsizes)
    from .config import read_model_dir

    spm = Tokenizer(read_model_dir(args.gmlm_model).spm_path)
    count = lambda outs: sum(len(x) for x in spm.encode(outs))  # noqa: E731
    rows = run_benchmark(systems, src, ref, bsizes, args.repeats, count)
    meta = {"data": f"Multi30k {args.split} {args.src_lang}->{args.tgt_lang}, {len(src)} sentences",
            "machine": machine_info(), "threads": args.threads, "repeats": args.repeats,
            "gmlm_model": str(args.gmlm_model), "gmlm_raw_model": args.gmlm_raw_model, "ar_model": args.ar_model,
            "method": "median of repeats, systems interleaved, SentencePiece encode/decode timed for every system, "
                      "model loading excluded"}
    paths = write_results(rows, args.out, meta, plot=True)
    print(Path(paths["md"]).read_text())
    return 0
