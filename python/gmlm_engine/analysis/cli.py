"""``gmlm analyze``: run parts 1-3 and write the report (see docs/analysis.md).

gmlm_engine.tools.cli wires it as ``add_arguments(subparser)`` and ``run(args)``.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

PARTS = ("exact", "masking", "translations")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``gmlm analyze``."""
    parser.add_argument("--out", default="analysis_report", metavar="DIR",
                        help="report folder: report.md, PNG plots, results.json (default: analysis_report)")
    parser.add_argument("--quick", action="store_true", help="small sizes: runs in seconds (for tests)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS),
                        help="which parts to run: exact (1: exact samplers), masking (2: masking ratio vs "
                             "sample efficiency), translations (3: error modes on real outputs); default: all")
    parser.add_argument("--gmlm-model", metavar="DIR", default=None,
                        help="GMLM model directory for part 3 (default: the shipped default GMLM)")
    parser.add_argument("--ar-model", metavar="DIR", default=None,
                        help="AR model directory of the same size for part 3 (default: the shipped AR model)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="Multi30k folder for part 3 (default: $GMLM_DATA_DIR)")
    parser.add_argument("--split", default="test2016", choices=("train", "val", "test2016"),
                        help="Multi30k split for part 3 (default: test2016)")
    parser.add_argument("--src-lang", default="en", help="source language (default: en)")
    parser.add_argument("--tgt-lang", default="de", help="target language (default: de)")
    parser.add_argument("--num-sentences", type=int, default=100, metavar="N",
                        help="sentences decoded per configuration in part 3 (default: 100; --quick: 10)")
    parser.add_argument("--length-beam", type=int, default=3, help="GMLM length candidates (default: 3)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads for numpy's BLAS and PyTorch (default: 1, fastest for these small problems)")


def _command(args: argparse.Namespace) -> str:
    parts = ["gmlm", "analyze", "--out", str(args.out)]
    if args.quick:
        parts.append("--quick")
    if list(args.parts) != list(PARTS):
        parts += ["--parts", *args.parts]
    for flag, value in (("--gmlm-model", args.gmlm_model), ("--ar-model", args.ar_model),
                        ("--data-dir", args.data_dir)):
        if value is not None:
            parts += [flag, str(value)]
    if args.gmlm_model or args.ar_model:
        parts += ["--split", args.split, "--src-lang", args.src_lang, "--tgt-lang", args.tgt_lang,
                  "--num-sentences", str(args.num_sentences)]
    return " ".join(shlex.quote(p) for p in parts)


def _translations(args: argparse.Namespace, log) -> dict:
    if not (args.gmlm_model or args.ar_model):
        # no model named: the shipped pair (an explicit error if this installation has none)
        from .. import default_model_dir

        args.gmlm_model, args.ar_model = str(default_model_dir("gmlm")), str(default_model_dir("ar"))
        log(f"part 3 on the shipped models: {args.gmlm_model}, {args.ar_model}")
    from .translations import default_configs, load_test_set, run_translation_study

    num = min(args.num_sentences, 10) if args.quick else args.num_sentences
    src, ref = load_test_set(args.data_dir, args.split, args.src_lang, args.tgt_lang, num)
    res = run_translation_study(src, ref, args.gmlm_model, args.ar_model, default_configs(args.quick),
                                length_beam=args.length_beam, progress=log, threads=args.threads)
    res.update(split=args.split, direction=f"{args.src_lang}->{args.tgt_lang}")
    return res


def run(args: argparse.Namespace) -> int:
    """Run ``gmlm analyze``; returns the exit code (0 ok, 2 bad input)."""
    from ..config import ModelError
    from ._blas import blas_threads
    from .experiments import Sizes, exact_study, masking_efficiency
    from .report import write_report

    if args.num_sentences < 1:
        print("gmlm analyze: error: --num-sentences must be >= 1", file=sys.stderr)
        return 2
    if args.threads < 0:
        print("gmlm analyze: error: --threads must be >= 0", file=sys.stderr)
        return 2
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:6.1f}s] {msg}", file=sys.stderr, flush=True)

    sizes = Sizes.quick() if args.quick else Sizes()
    results: dict = {"meta": {"command": _command(args), "quick": bool(args.quick), "seconds": {}}}
    seconds = results["meta"]["seconds"]
    try:
        with blas_threads(args.threads or os.cpu_count() or 1):
            for part in PARTS:
                if part not in args.parts:
                    continue
                start = time.perf_counter()
                if part == "exact":
                    results["exact"] = exact_study(sizes, log)
                elif part == "masking":
                    results["masking"] = masking_efficiency(sizes, log)
                else:
                    results["translations"] = _translations(args, log)
                seconds[part] = time.perf_counter() - start
            seconds["total"] = time.perf_counter() - t0
            path = write_report(results, args.out)
    except (ValueError, FileNotFoundError, ImportError, ModelError) as e:
        print(f"gmlm analyze: error: {e}", file=sys.stderr)
        return 2
    log(f"report written to {path}")
    return 0


def main(argv=None) -> int:
    """Stand-alone entry point: python -m gmlm_engine.analysis.cli [options]."""
    parser = argparse.ArgumentParser(prog="gmlm analyze", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
