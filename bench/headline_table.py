"""The README's speed table from `gmlm bench --headline` runs, one row group per run (per CPU kind).

    python bench/headline_table.py bench/results/isa-avx2-capped bench/results/isa-avx512-zen5 ...

For each run: the engine's AR greedy, CTranslate2 greedy, the GMLM defaults and the few-pass points, each at its
best compute type and thread setting in that run (sentences/s at batch 1 and 64), BLEU, and the ratios to the
engine's AR greedy and to CTranslate2 greedy within the run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

# (label, system-name prefixes: the best row of any of them counts)
SYSTEMS = [
    ("engine AR greedy", ("engine-ar greedy", "engine-ar-bfloat16 greedy", "engine-ar-int8 greedy")),
    ("CTranslate2 greedy", ("ct2-ar greedy", "ct2-ar-int8 greedy")),
    ("GMLM T=8 K=2 (defaults, 16 passes)", ("gmlm-engine T=8 K=2", "gmlm-engine-bfloat16 T=8 K=2", "gmlm-engine-int8 T=8 K=2")),
    ("GMLM T=4 K=1 (4 passes)", ("gmlm-engine T=4 K=1", "gmlm-engine-bfloat16 T=4 K=1", "gmlm-engine-int8 T=4 K=1")),
    ("GMLM T=1 K=1 (1 pass)", ("gmlm-engine T=1 K=1", "gmlm-engine-bfloat16 T=1 K=1", "gmlm-engine-int8 T=1 K=1")),
]


def best(rows: list[dict], prefixes: tuple[str, ...], batch: int) -> dict | None:
    """The fastest row at this batch size among the systems (any thread setting: 'NAME' or 'NAME @IxJ')."""
    cand = [r for r in rows if r["batch_size"] == batch and r["system"].split(" @")[0] in prefixes]
    return max(cand, key=lambda r: r["sent_per_s"], default=None)


def cpu_label(meta: dict) -> str:
    m = meta["machine"]
    caps = m.get("isa_caps") or {}
    capped = f", capped to {m.get('engine_cpu_isa')} ({', '.join(f'{k}={v}' for k, v in caps.items())})" if caps.get(
        "GMLM_CPU_ISA") else ""
    return f"{m['cpu']} [{', '.join(m.get('cpu_isa', []))}]{capped}"


def table(run: Path) -> str:
    doc = json.loads((run / "bench.json").read_text())
    rows = doc["rows"]
    ar = {b: best(rows, SYSTEMS[0][1], b) for b in (1, 64)}
    ct2 = {b: best(rows, SYSTEMS[1][1], b) for b in (1, 64)}
    out = [f"**{cpu_label(doc['meta'])}** (`{run}`, {doc['meta'].get('date', '')[:10]})", "",
           "| system | BLEU | sent/s, batch 1 | sent/s, batch 64 | vs engine AR greedy (1 / 64) | vs CTranslate2 greedy (1 / 64) |",
           "| --- | --- | --- | --- | --- | --- |"]
    for label, prefixes in SYSTEMS:
        r = {b: best(rows, prefixes, b) for b in (1, 64)}
        if not r[1] or not r[64]:
            continue
        cell = {b: f"{r[b]['sent_per_s']:.0f} ({_ct(r[b])}, {r[b]['setting']})" for b in (1, 64)}
        rel = lambda ref: " / ".join(f"{r[b]['sent_per_s'] / ref[b]['sent_per_s']:.2f}x" for b in (1, 64))  # noqa: E731
        out.append(f"| {label} | {r[1]['bleu']:.2f} | {cell[1]} | {cell[64]} | {rel(ar)} | {rel(ct2)} |")
    return "\n".join(out)


def _ct(row: dict) -> str:
    base = row["system"].split(" @")[0].split(" ")[0]
    for ct in ("bfloat16", "int8"):
        if base.endswith(ct):
            return ct
    return "float32"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="folders written by gmlm bench --headline")
    args = p.parse_args()
    print("\n\n".join(table(r) for r in args.runs))


if __name__ == "__main__":
    main()
