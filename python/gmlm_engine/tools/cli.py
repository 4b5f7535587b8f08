"""The `gmlm` command: translate, train, distill, eval, export, analyze."""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from ..options import add_cli_flags, cli_options


def _decoding_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding (same names as translate_batch; absent: the Translator's defaults)")
    add_cli_flags(g)
    g.add_argument("--max-batch-size", type=int, default=64)
    g.add_argument("--batch-type", default="examples", choices=("examples", "tokens"))


def _options(args, objective: str) -> dict:
    opts = cli_options(args)
    opts.update(max_batch_size=args.max_batch_size, batch_type=args.batch_type)
    if objective == "gmlm" and getattr(args, "rerank_model", None) is not None:
        opts["rerank"] = True
    return opts


def _model_args(p):
    p.add_argument("--model", default="default", help="model directory (default: the shipped model)")
    p.add_argument("--engine", choices=("auto", "cpu", "torch"), default="auto",
                   help="cpu: the compiled engine (gmlm and ar models); torch: the PyTorch reference decoder; "
                        "auto: cpu")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu", help="the compiled engine's device: cpu, or cuda / cuda:N in a CUDA "
                   "build (docs/cuda.md)")
    p.add_argument("--compute-type", choices=("auto", "float32", "bfloat16", "int8", "float16"), default="auto",
                   help="the compiled engine's GEMM precision (cpu: auto = int8, else bfloat16, else float32, by what "
                        "this CPU runs natively; cuda: float32 (auto), float16 or bfloat16); the torch reference "
                        "decoder is float32 only")
    p.add_argument("--rerank-model", default=None, metavar="AR_DIR",
                   help="gmlm models: rank the length candidates by this ar model's mean log-probability "
                        "(rerank=True, docs/decoding.md)")


def _translator(args):
    engine = args.engine
    if engine == "torch":
        from ..pytorch.reference import ReferenceTranslator

        if args.compute_type not in ("auto", "float32"):
            raise ValueError(f"--compute-type {args.compute_type}: the torch reference decoder computes in float32 only")
        if args.device != "cpu":
            raise ValueError(f"--device {args.device}: the torch reference decoder runs on the CPU (--engine cpu for cuda)")
        return ReferenceTranslator(args.model, threads=args.threads, rerank_model=args.rerank_model)
    try:
        from ..engine import Translator
    except ImportError as e:
        raise RuntimeError(f"the compiled engine is not available ({e}); use --engine torch") from None
    return Translator(args.model, device=args.device, intra_threads=args.threads, compute_type=args.compute_type,
                      rerank_model=args.rerank_model)


def cmd_translate(args) -> int:
    """Lines from --input or stdin (split by textio.read_text_lines) to --output or stdout; --output is
    written only when every line is translated. With --ray: files to a folder on Ray Data."""
    if args.ray is not None:
        return cmd_translate_ray(args)
    import contextlib

    from ..options import int_option
    from ..textio import AtomicOutput, read_text_lines

    # the output path is checked before any work (a directory, a read-only file, the input itself)
    output = AtomicOutput(args.output, source=args.input or sys.stdin) if args.output else None
    tr = _translator(args)
    opts = _options(args, tr.cfg.objective)
    with contextlib.ExitStack() as stack:
        src = stack.enter_context(open(args.input, "rb")) if args.input else sys.stdin.buffer
        lines = read_text_lines(src, args.input or "<stdin>")
        tr.validate_options(**opts)                    # options checked here, before any line is read
        batch_size = int_option("--batch-size", args.batch_size, 1)
        results = tr._translate_chunks(lines, batch_size, opts, "line")   # errors name the line
        out = stack.enter_context(output) if output else sys.stdout
        for r in results:
            out.write(r.text + "\n")
            if not args.output:
                out.flush()
    return 0


def cmd_translate_ray(args) -> int:
    """--input (text: one row per line, output DIR/<name> line by line; jsonl / parquet: rows with the
    translation added, Ray's writers) on a Ray cluster, with Ray Data's progress bars."""
    if not args.input or not args.output:
        raise ValueError("--ray needs --input (a file or folder) and --output (a folder)")
    from pathlib import Path

    from ..serving import ray as gray

    fmt = gray.input_format(args.input)
    ray = gray._ray()
    if not ray.is_initialized():
        if args.ray == "local":    # a local cluster of --threads CPUs (0: all)
            ray.init(num_cpus=args.threads or None, include_dashboard=False)
        else:
            ray.init(address=args.ray)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True      # text output is written in input order
    ds = gray.read_input(args.input, fmt)
    column = "text" if fmt == "text" else args.column
    obj = gray.read_model_dir(args.model).config.objective
    out = gray.translate_dataset(ds, column=column, output_column=args.output_column, model=args.model,
                                 concurrency=args.concurrency, batch_size=args.batch_size, num_cpus=args.cpus_per_actor,
                                 **_options(args, obj))
    n = gray.write_output(out, args.output, fmt, args.output_column)
    if fmt == "text":                                  # empty input files get empty outputs
        src = Path(args.input)
        for f in (sorted(src.iterdir()) if src.is_dir() else [src]):
            if f.is_file() and not (Path(args.output) / f.name).exists():
                (Path(args.output) / f.name).write_text("")
    print(f"wrote {n} translations to {args.output}", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    from .evaluate import run

    tr = _translator(args)
    return run(args, tr, _options(args, tr.cfg.objective))


def cmd_export(args) -> int:
    from ..pytorch.export import export_ctranslate2, pack_model

    if not args.ctranslate2 and not args.pack:
        raise ValueError("export: give --ctranslate2 OUT_DIR and/or --pack OUT_DIR")
    if args.ctranslate2:
        out = export_ctranslate2(args.model_dir, args.ctranslate2, quantization=args.quantization, force=args.force)
        print(f"wrote {out}", file=sys.stderr)
    if args.pack:
        out = pack_model(args.model_dir, args.pack, dtype=args.dtype, force=args.force)
        print(f"wrote {out}", file=sys.stderr)
    return 0


def cmd_distill(args) -> int:
    import json
    import tempfile

    from ..data import split_file, read_lines
    from ..pytorch.export import CT2Translator, export_ctranslate2

    if args.source:
        src = read_lines(args.source)
        refs = read_lines(args.reference) if args.reference else None
    else:
        src = read_lines(split_file(args.data_dir, args.split, args.src_lang))
        refs = read_lines(args.reference or split_file(args.data_dir, args.split, args.tgt_lang))
    if refs is not None and len(refs) != len(src):
        raise ValueError(f"--reference has {len(refs)} lines, the sources {len(src)}")
    with tempfile.TemporaryDirectory() as tmp:
        export_ctranslate2(args.teacher, tmp + "/ct2", force=True)
        from ..config import read_model_dir

        max_len = read_model_dir(args.teacher).config.max_target_len
        ct = CT2Translator(tmp + "/ct2", threads=args.threads)
        from tqdm import tqdm

        with open(args.out, "w", encoding="utf-8") as f:
            for i in tqdm(range(0, len(src), args.chunk), unit="chunk", disable=args.no_progress):
                for line in ct.translate_batch(src[i:i + args.chunk], beam_size=args.beam_size,
                                               max_batch_size=64, max_decoding_length=max_len,
                                               length_penalty=args.length_penalty):
                    f.write(line + "\n")
    print(f"wrote {len(src)} lines to {args.out}", file=sys.stderr)
    if refs is not None:
        # how far the distilled targets are from the human ones (sacreBLEU 13a, cased, detokenized)
        import sacrebleu

        hyp = read_lines(args.out)
        bleu = sacrebleu.corpus_bleu(hyp, [refs])
        report = {"teacher": str(args.teacher), "beam_size": args.beam_size,
                  "length_penalty": args.length_penalty, "lines": len(src),
                  "bleu_vs_reference": round(bleu.score, 2),
                  "chrf_vs_reference": round(sacrebleu.corpus_chrf(hyp, [refs]).score, 2),
                  "length_ratio": round(bleu.sys_len / max(1, bleu.ref_len), 3)}
        print(json.dumps(report), file=sys.stderr)
        with open(args.out + ".json", "w") as f:
            f.write(json.dumps(report, indent=1) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gmlm", description="Generative masked language models: train, translate, evaluate")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("translate", help="translate lines from stdin or a file")
    _model_args(t)
    _decoding_args(t)
    t.add_argument("--input", "-i", default=None)
    t.add_argument("--output", "-o", default=None)
    t.add_argument("--batch-size", type=int, default=64)
    r = t.add_argument_group("Ray Data (many files or machines; needs the [ray] extra)")
    r.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run on a Ray cluster: ADDRESS (e.g. auto, ray://host:10001) or, without it, a local one; "
                        "--input is then a file or folder (.txt, .jsonl, .parquet) and --output a folder")
    r.add_argument("--column", default="text", help="the source column of jsonl / parquet input")
    r.add_argument("--output-column", default="translation")
    r.add_argument("--concurrency", type=int, default=1, help="translator actors")
    r.add_argument("--cpus-per-actor", type=int, default=1, help="CPUs (and engine threads) per actor")
    t.set_defaults(func=cmd_translate)

    sv = sub.add_parser("serve", help="HTTP JSON service with continuous batching (FastAPI + uvicorn)")
    from ..serving.http import add_arguments as serve_args

    serve_args(sv)
    sv.set_defaults(func=lambda a: __import__("gmlm_engine.serving.http", fromlist=["run"]).run(a))

    tr = sub.add_parser("train", help="train a gmlm, ar or ctc model")
    from ..pytorch.train_options import add_arguments

    add_arguments(tr)
    tr.set_defaults(func=lambda a: __import__("gmlm_engine.pytorch.train", fromlist=["run"]).run(a))

    e = sub.add_parser("eval", help="sacreBLEU / chrF / speed on a split or files")
    _model_args(e)
    _decoding_args(e)
    e.add_argument("--data-dir", default=None)
    e.add_argument("--split", default="test2016", help="train | val | test2016")
    e.add_argument("--src-lang", default="en")
    e.add_argument("--tgt-lang", default="de")
    e.add_argument("--src", default=None)
    e.add_argument("--ref", default=None)
    e.add_argument("--limit", type=int, default=0)
    e.add_argument("--json", default=None, help="write the result as JSON")
    e.add_argument("--output", default=None, help="write the translations")
    e.set_defaults(func=cmd_eval)

    x = sub.add_parser("export", help="export an ar model to CTranslate2, or pack a model with float16 weights")
    x.add_argument("model_dir")
    x.add_argument("--ctranslate2", default=None, metavar="OUT_DIR", help="export an ar model to CTranslate2")
    x.add_argument("--pack", default=None, metavar="OUT_DIR",
                   help="copy the model directory with float16 weights (the shipped models' format)")
    x.add_argument("--dtype", default="float16", help="storage dtype for --pack: float16 | float32")
    x.add_argument("--quantization", default=None)
    x.add_argument("--force", action="store_true")
    x.set_defaults(func=cmd_export)

    d = sub.add_parser("distill", help="translate training sources with an ar teacher (CTranslate2 beam search)")
    d.add_argument("--teacher", required=True)
    d.add_argument("--out", required=True)
    d.add_argument("--data-dir", default=None)
    d.add_argument("--split", default="train")
    d.add_argument("--src-lang", default="en")
    d.add_argument("--tgt-lang", default="de")
    d.add_argument("--source", default=None, help="source file instead of a Multi30k split")
    d.add_argument("--reference", default=None, help="reference translations of the sources: the distilled "
                   "targets' BLEU against them is reported (default with a split: the split's targets)")
    d.add_argument("--beam-size", type=int, default=4)
    d.add_argument("--length-penalty", type=float, default=1.0,
                   help="beam score = log-prob sum / length**P (CTranslate2). With P = 1 beam search writes "
                        "short targets (length ratio 0.93 on val) and the student learns that length")
    d.add_argument("--threads", type=int, default=0)
    d.add_argument("--chunk", type=int, default=1024)
    d.add_argument("--no-progress", action="store_true")
    d.set_defaults(func=cmd_distill)

    bn = sub.add_parser("bench", help="speed and quality: GMLM engine vs AR decoding (CTranslate2, PyTorch)")
    from .benchmark import add_arguments as bench_args

    bench_args(bn)
    bn.set_defaults(func=lambda a: __import__("gmlm_engine.tools.benchmark", fromlist=["run"]).run(a))

    try:
        from ..analysis.cli import add_arguments as analysis_args, run as analysis_run
    except ImportError:
        analysis_args = None
    if analysis_args is not None:
        a = sub.add_parser("analyze", help="the paper's theory and error modes: exact samplers, report")
        analysis_args(a)
        a.set_defaults(func=analysis_run)
    return p


class Terminated(KeyboardInterrupt):
    """The command was ended by a signal (exit status 128 + the signal's number)."""

    def __init__(self, signum: int):
        super().__init__(f"signal {signum}")
        self.signum = signum


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """While a command runs, SIGTERM (what timeout, systemd and Kubernetes send) ends it like Ctrl-C does,
    through Python's unwinding, so that an unfinished output file (textio.AtomicOutput's .partial) is
    removed. A command that runs a server installs its own handlers over this one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(signum)

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..config import ModelError

    try:
        with _sigterm_as_interrupt():
            return args.func(args)
    except (ValueError, OSError, RuntimeError, ModelError) as e:
        print(f"gmlm {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Terminated as e:
        print(f"terminated ({e})", file=sys.stderr)
        return 128 + e.signum
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
