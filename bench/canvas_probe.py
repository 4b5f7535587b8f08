"""What a ctc model's canvas costs at batch 1: the same weights decoded over canvases of u x the source's tokens
(config.json's ctc_upsample overridden in a temporary copy; only the speed means anything for a u the model was
not trained with), beside the engine's AR greedy, interleaved, median of the rounds.

    python bench/canvas_probe.py --ctc models/ctc-en-de --ar models/ar-en-de --upsample 1 2 --out probe.json

From two canvases the time per canvas row and the rest (encoder, front end, per-call costs) follow: the wall time
is linear in the canvas rows, so a ctc model at u runs AR / (rest + u x per_u) times AR greedy's speed.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctc", required=True, help="ctc model directory")
    ap.add_argument("--ar", required=True, help="ar model directory (greedy)")
    ap.add_argument("--upsample", type=int, nargs="+", default=[1, 2], help="canvas ratios to time")
    ap.add_argument("--n", type=int, default=200, help="test2016 sentences, one call each")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--compute-type", default="int8")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from gmlm_engine import Translator
    from gmlm_engine.data import load_split

    src, _ = load_split(args.data_dir, "test2016", "en", "de")
    src = src[:args.n]
    tmp = Path(tempfile.mkdtemp())
    systems = {}
    for u in args.upsample:
        d = tmp / f"u{u}"
        shutil.copytree(args.ctc, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["ctc_upsample"] = u
        (d / "config.json").write_text(json.dumps(cfg, indent=2))
        systems[f"ctc u={u}"] = Translator(d, intra_threads=args.threads, compute_type=args.compute_type)
    systems["AR greedy"] = Translator(args.ar, intra_threads=args.threads, compute_type=args.compute_type)
    for tr in systems.values():   # warm-up
        for s in src[:20]:
            tr.translate_batch([s])
    times = {k: [] for k in systems}
    for _ in range(args.rounds):
        for name, tr in systems.items():
            t0 = time.perf_counter()
            for s in src:
                tr.translate_batch([s])
            times[name].append((time.perf_counter() - t0) / len(src))
    ms = {k: 1e3 * statistics.median(v) for k, v in times.items()}
    out = {"args": vars(args), "ms_per_sentence": ms, "sent_per_s": {k: 1e3 / v for k, v in ms.items()}}
    us = sorted(args.upsample)
    if len(us) >= 2:
        lo, hi = us[0], us[-1]
        per_u = (ms[f"ctc u={hi}"] - ms[f"ctc u={lo}"]) / (hi - lo)   # ms per S canvas rows
        rest = ms[f"ctc u={lo}"] - lo * per_u
        out["ms_per_unit_of_upsample"] = per_u
        out["ms_rest"] = rest
        out["ratio_to_ar_greedy"] = {f"u={u / 4:g}": ms["AR greedy"] / (rest + u / 4 * per_u) for u in range(4, 13)}
        # a bound: the rest (encoder, front end) made free for both systems, the canvas at the largest u timed
        out[f"ratio_to_ar_greedy_if_the_rest_were_free_at_u={hi}"] = (ms["AR greedy"] - rest) / (hi * per_u)
    shutil.rmtree(tmp)
    text = json.dumps(out, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
