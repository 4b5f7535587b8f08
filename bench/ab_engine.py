"""Two builds of the compiled engine on the same work, interleaved: is a change neutral in speed and tokens?

    LD_LIBRARY_PATH=$VIRTUAL_ENV/lib python bench/ab_engine.py --a 'build/_core*.so' --b '/tmp/oldbuild/_core*.so' \
        [--rounds 5] [--threads 2] [--n 300] [--out bench/results/ab.json]

(a build folder's module finds OpenBLAS and oneDNN through LD_LIBRARY_PATH; an older build: `git worktree add
/tmp/old REV && cmake -S /tmp/old -B /tmp/oldbuild -G Ninja -DPython_EXECUTABLE=$(which python)
-Dpybind11_DIR=$(python -m pybind11 --cmakedir) && cmake --build /tmp/oldbuild`).

Each round runs every case (model x compute type x batch size x options) once in a fresh process per build, in
alternating order (a, b, b, a, ...), timing only the engine call (`_core.Engine.translate` / `translate_ar` on the
same encoded val sentences; no Python front end); the report gives per case the median seconds of each build, their
ratio b / a, and whether the two builds wrote the same tokens. The model directories and the sentences are read
with this checkout's Python package; each build only decodes.
"""
from __future__ import annotations

import argparse
import glob
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# (label, model, options, batch sizes)
CASES = [("AR greedy", "models/ar-en-de", dict(beam_size=1)), ("AR beam 4", "models/ar-en-de", dict(beam_size=4)),
         ("GMLM T=8 K=2", "models/gmlm-en-de", dict(iterations=8, length_beam=2)),
         ("GMLM T=4 K=1", "models/gmlm-en-de", dict(iterations=4, length_beam=1)),
         ("CTC T=1", "models/ctc-en-de", dict(iterations=1, blank_penalty=1.0, length_beam=1, length_offset=0,
                                              stutter_remask=False))]


def load_core(path: str):
    spec = importlib.util.spec_from_file_location("_core", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run_build(so: str, args) -> dict:
    """In this process: every case with the build at `so`; {case: (seconds, tokens)}."""
    sys.path.insert(0, str(ROOT / "python"))
    from gmlm_engine.config import load_weights_numpy, read_model_dir
    from gmlm_engine.common import encode_sources
    from gmlm_engine.tokenizer import load_model_tokenizer

    core = load_core(so)
    src = [line.strip() for line in open(args.source, encoding="utf-8")][:args.n]
    out = {}
    for label, model, opts in CASES:
        files = read_model_dir(ROOT / model)
        tok = load_model_tokenizer(files)
        ids = encode_sources(tok, files.config, src)
        for ct in args.compute_types:
            eng = core.Engine(files.config.to_dict(), load_weights_numpy(files), args.threads, ct, tok.word_pieces())
            call = eng.translate_ar if files.config.objective == "ar" else eng.translate
            for bs in args.batches:
                batches = [ids[i:i + bs] for i in range(0, len(ids), bs)]
                call(batches[0], **opts)   # warm-up
                t0 = time.perf_counter()
                toks = [r[0] for b in batches for r in call(b, **opts)]
                out[f"{label} | {ct} | batch {bs}"] = (time.perf_counter() - t0, toks)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", required=True, help="the first build's _core*.so (a glob)")
    ap.add_argument("--b", required=True, help="the second build's _core*.so (a glob)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--compute-types", nargs="+", default=["float32", "int8"])
    ap.add_argument("--source", default=None, help="sentences (default: Multi30k val.en from GMLM_DATA_DIR)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.source is None:
        import gzip

        d = os.environ.get("GMLM_DATA_DIR") or sys.exit("set GMLM_DATA_DIR or --source")
        args.source = "/tmp/ab_engine_val.en"
        Path(args.source).write_text(gzip.open(Path(d) / "val.en.gz", "rt", encoding="utf-8").read(), encoding="utf-8")
    if args.worker:
        res = run_build(args.worker, args)
        print(json.dumps({k: [t, toks] for k, (t, toks) in res.items()}))
        return
    so = {k: sorted(glob.glob(v))[0] for k, v in (("a", args.a), ("b", args.b))}
    times: dict[str, dict[str, list[float]]] = {}
    tokens: dict[str, dict[str, list]] = {}
    base = [sys.executable, __file__, "--a", args.a, "--b", args.b, "--threads", str(args.threads), "--n", str(args.n),
            "--source", args.source, "--batches", *map(str, args.batches), "--compute-types", *args.compute_types]
    for r in range(args.rounds):
        for k in (("a", "b") if r % 2 == 0 else ("b", "a")):
            res = json.loads(subprocess.run(base + ["--worker", so[k]], check=True, capture_output=True,
                                            text=True).stdout.splitlines()[-1])
            for case, (t, toks) in res.items():
                times.setdefault(case, {}).setdefault(k, []).append(t)
                tokens.setdefault(case, {})[k] = toks
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    rows = []
    for case, t in times.items():
        ma, mb = statistics.median(t["a"]), statistics.median(t["b"])
        rows.append({"case": case, "a_s": ma, "b_s": mb, "b_over_a": mb / ma,
                     "same_tokens": tokens[case]["a"] == tokens[case]["b"]})
        print(f"{case:40s} a {ma:.3f} s  b {mb:.3f} s  b/a {mb / ma:.3f}  same tokens {rows[-1]['same_tokens']}")
    if args.out:
        Path(args.out).write_text(json.dumps({"a": so["a"], "b": so["b"], "threads": args.threads, "n": args.n,
                                              "rounds": args.rounds, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
