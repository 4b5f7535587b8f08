"""The models issue's quality table: an AR model (CTranslate2 greedy and beam 4, float32) and GMLM
models (the compiled engine at (T, K) = (1, 1), (4, 3), (10, 5)) on val and test2016, sacreBLEU 13a on
detokenized cased output, with the output/reference length ratio and, for AR, how many outputs reach
the length limit.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/model_table.py --ar models/ar-en-de \
        --gmlm models/gmlm-en-de [--gmlm runs/other/best ...] [--splits val,test2016] [--threads 2] \
        [--json bench/results/models.json]

Select on val; test2016 is for reporting. Quality only: for speed see `gmlm bench`.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import ctranslate2  # noqa: F401  (before anything that may import torch: see gmlm bench)

GMLM_CONFIGS = ((1, 1), (4, 3), (10, 5))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ar", action="append", default=[], help="ar model directory (repeatable)")
    p.add_argument("--gmlm", action="append", default=[], help="gmlm or ctc model directory (repeatable)")
    p.add_argument("--gmlm-configs", default=",".join(f"{t}x{k}" for t, k in GMLM_CONFIGS),
                   help="T x K pairs with an optional length offset and 'ns' for stutter re-masking off, e.g. "
                        "1x1,4x3,4x3+1,10x5ns (default offset: the Translator's)")
    p.add_argument("--beams", default="1,4", help="AR beam sizes")
    p.add_argument("--length-penalties", default="1.0", help="AR beam rows: CTranslate2 length penalties (comma-separated)")
    p.add_argument("--splits", default="val,test2016")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch1", type=int, default=0, metavar="N",
                   help="also time the GMLM configurations one sentence at a time on the first N sentences")
    p.add_argument("--compute-type", default="float32",
                   help="the engine's compute type for the GMLM rows (float32: the spec; auto: the fastest native)")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)

    from gmlm_engine.config import read_model_dir
    from gmlm_engine.data import load_split
    from gmlm_engine.tools.evaluate import format_table, score
    from gmlm_engine.pytorch.export import CT2Translator, export_ctranslate2

    splits = {s: load_split(args.data_dir, s) for s in args.splits.split(",")}
    rows = []

    def add(model, system, split, hyp, ref, secs, **extra):
        rows.append({"model": model, "system": system, "split": split, **score(hyp, ref),
                     "sent/s": round(len(hyp) / secs, 1), **extra})   # sent/s: batches of 64
        r = rows[-1]
        print(f"{model} {system} {split}: BLEU {r['bleu']} len ratio {r['len_ratio']}", file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        for i, ar in enumerate(args.ar):
            ct2 = export_ctranslate2(ar, Path(tmp) / f"ct2-{i}")
            max_len = read_model_dir(ar).config.max_target_len
            tr = CT2Translator(ct2, threads=args.threads)
            for split, (src, ref) in splits.items():
                for beam in map(int, args.beams.split(",")):
                    for lp in (map(float, args.length_penalties.split(",")) if beam > 1 else [1.0]):
                        t0 = time.perf_counter()
                        hyp = tr.translate_batch(src, beam_size=beam, max_batch_size=64, max_decoding_length=max_len,
                                                 length_penalty=lp)
                        secs = time.perf_counter() - t0
                        at_limit = sum(len(tr.tok.encode([h])[0]) >= max_len for h in hyp)
                        name = "AR greedy" if beam == 1 else f"AR beam {beam}" + (f" lp {lp:g}" if lp != 1.0 else "")
                        add(ar, name, split, hyp, ref, secs, at_length_limit=at_limit)
    if args.gmlm:
        from gmlm_engine import Translator
        from gmlm_engine.options import DEFAULT_LENGTH_OFFSET

        for g in args.gmlm:
            tr = Translator(g, intra_threads=args.threads, compute_type=args.compute_type)
            for split, (src, ref) in splits.items():
                for tk in args.gmlm_configs.split(","):
                    m = re.fullmatch(r"(\d+)x(\d+)([+-]\d+)?(ns)?(nr)?(all)?(?:bp(\d+(?:\.\d+)?))?", tk.strip())
                    if not m:
                        p.error(f"--gmlm-configs: {tk!r} is not TxK or TxK+O, optionally followed by ns (no stutter "
                                "re-masking), nr (repeat_remask off), all (update='all') and, for a ctc model, bpB "
                                "(blank_penalty B) (e.g. 4x3, 4x3+1, 4x3ns, 4x1all, 1x1bp2.5, 1x1nrbp1)")
                    t, k = int(m[1]), int(m[2])
                    upd = "all" if m[6] else "masked"
                    if tr.cfg.objective == "ctc":   # one canvas: T x 1 (offset and stutter do not apply)
                        if k != 1 or m[3] or m[4]:
                            p.error(f"--gmlm-configs: {tk!r} for the ctc model {g}: a ctc model takes Tx1 (and all)")
                        opts = dict(iterations=t, update=upd)
                        if m[5]:
                            opts["repeat_remask"] = False
                        if m[7]:
                            opts["blank_penalty"] = float(m[7])
                        system = (f"CTC T={t}" + (" all" if m[6] else "") + (" no-repeat-rule" if m[5] else "")
                                  + f" bp={opts.get('blank_penalty', 'default')}")
                    else:
                        if m[5] or m[7]:
                            p.error(f"--gmlm-configs: {tk!r}: nr and bp apply to ctc models (a gmlm model's "
                                    "repeat_remask is off by default; it has no blank)")
                        o = DEFAULT_LENGTH_OFFSET if m[3] is None else int(m[3])
                        opts = dict(iterations=t, length_beam=k, length_offset=o, stutter_remask=not m[4], update=upd)
                        system = f"GMLM T={t} K={k} O={o:+d}" + (" no-stutter" if m[4] else "") + (" all" if m[6] else "")
                    t0 = time.perf_counter()
                    hyp = [r.text for r in tr.translate_batch(src, max_batch_size=64, **opts)]
                    secs = time.perf_counter() - t0
                    extra = {}
                    if args.batch1:
                        t1 = time.perf_counter()
                        for s_ in src[:args.batch1]:
                            tr.translate_batch([s_], **opts)
                        extra["sent/s b=1"] = round(min(args.batch1, len(src)) / (time.perf_counter() - t1), 1)
                    add(g, system, split, hyp, ref, secs, compute_type=tr.compute_type, **extra)
    cols = ["model", "system", "split", "bleu", "chrf", "len_ratio", "repetition", "defects", "at_length_limit", "sent/s"]
    if args.batch1:
        cols.append("sent/s b=1")
    print(format_table(rows, cols))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
