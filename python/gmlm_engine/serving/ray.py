"""Batch translation past one machine, on Ray Data: read -> map_batches over a pool of translator
actors (one engine per actor) -> write. Needs the `[ray]` extra (`ray[data]`).

    import ray, gmlm_engine.serving.ray as gr
    ds = ray.data.read_parquet("s3://bucket/captions/")
    out = gr.translate_dataset(ds, column="text", concurrency=8, num_cpus=4, iterations=4)
    out.write_parquet("s3://bucket/captions-de/")

The model directory is read once on the driver and travels to the workers through Ray's object
store (no shared filesystem needed). Everything that can be checked is checked on the driver
before any work is scheduled: the model loads as it would in `Translator(model)` (the same
FileNotFoundError / ModelError), the options as in `translate_batch` (the same ValueError), and the
column must exist. Fault tolerance is Ray Data's: a worker that dies is restarted and its unfinished
batches run again, so every row is translated exactly once.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..options import int_option
from ..config import read_model_dir

DEFAULT_BATCH_SIZE = 64


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise ImportError("gmlm_engine.serving.ray needs Ray Data: pip install 'gmlm-engine[ray]'") from e
    return ray


def load_translator(model, threads: int):
    """The translator a worker uses: the compiled engine (gmlm and ar models alike)."""
    from ..engine import Translator

    return Translator(model, intra_threads=threads)


def pack_model_dir(model) -> dict[str, bytes]:
    """The files of a model directory (config.json, model.safetensors, spm.model, training.json)."""
    files = read_model_dir(model)
    return {p.name: p.read_bytes() for p in sorted(files.path.iterdir()) if p.is_file()}


def name_row(msg: str, batch: dict, column: str) -> str:
    """An error about source[i] of a map_batches batch, with source[i] replaced by what identifies the
    row in the dataset: its file and line (text input), else its other columns, else its value."""
    import re

    m = re.search(r"source\[(\d+)\]", msg)
    if not m:
        return msg
    i = int(m.group(1))

    def value(k):
        v = batch[k][i]
        return v.item() if hasattr(v, "item") else v

    if "path" in batch and "line" in batch:
        where = f"{value('path')} line {value('line')}"
    else:
        others = [k for k in batch if k != column]
        if others:
            where = "the row with " + ", ".join(f"{k}={value(k)!r}"[:80] for k in others[:4])
        else:
            where = f"the row whose {column!r} is {value(column)!r}"[:200]
    return msg.replace(m.group(0), f"{column!r} of {where}", 1)


class TranslatorActor:
    """A Ray Data map_batches worker: unpacks the model into a private folder, loads one engine
    with `threads` intra-op threads, and translates `column` into `output_column`."""

    def __init__(self, model_files: list, threads: int, column: str, output_column: str, options: dict):
        import ray

        packed = ray.get(model_files[0])  # a list around the ref: Ray would otherwise resolve it itself
        self.dir = tempfile.mkdtemp(prefix="gmlm-model-")
        for name, data in packed.items():
            Path(self.dir, name).write_bytes(data)
        self.tr = load_translator(self.dir, threads)
        self.column, self.output_column, self.options = column, output_column, options

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.column not in batch:
            raise ValueError(f"column {self.column!r} is not in the dataset (columns: {sorted(batch)})")
        texts = [str(x) if isinstance(x, np.str_) else x for x in batch[self.column].tolist()]
        try:
            results = self.tr.translate_batch(texts, **self.options)
        except ValueError as e:   # "source[i]" counts within this batch: name the row instead
            raise ValueError(name_row(str(e), batch, self.column)) from None
        batch[self.output_column] = np.array([r.text for r in results], dtype=object)
        return batch

    def __del__(self):
        shutil.rmtree(getattr(self, "dir", ""), ignore_errors=True)


def translate_dataset(ds, column: str = "text", output_column: str = "translation", model="default",
                      concurrency: int = 1, batch_size: int = DEFAULT_BATCH_SIZE, num_cpus: int = 1, **options):
    """Translate `ds[column]` (strings) on a pool of `concurrency` actors, each with `num_cpus` CPUs
    and as many engine threads; returns the Dataset with `output_column` added (every input column
    kept, so rows stay keyed by whatever identifies them). `options` are translate_batch's.
    Fault tolerance is Ray Data's default for actor pools: a dead actor is restarted without limit
    (max_restarts=-1) and its unfinished batches are retried (max_task_retries=-1); an exception
    raised by translate_batch (bad input) is not retried: it fails the job with its message."""
    ray = _ray()
    concurrency = int_option("concurrency", concurrency, 1)
    batch_size = int_option("batch_size", batch_size, 1)
    num_cpus = int_option("num_cpus", num_cpus, 1)
    for name, v in (("column", column), ("output_column", output_column)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{name} must be a non-empty column name, got {v!r}")
    if not isinstance(ds, ray.data.Dataset):
        raise ValueError(f"ds must be a ray.data.Dataset, got {type(ds).__name__}")
    # The schema, here on the driver: a lazily read dataset reads as little as it needs to know it.
    schema = ds.schema(fetch_if_missing=True)
    if schema is not None and column not in schema.names:
        raise ValueError(f"column {column!r} is not in the dataset (columns: {schema.names})")
    # the model and the options, checked here exactly as the Python API checks them
    probe = load_translator(model, 1)
    probe.validate_options(**options)
    del probe
    ref = ray.put(pack_model_dir(model))
    return ds.map_batches(
        TranslatorActor, batch_size=batch_size, batch_format="numpy", num_cpus=num_cpus,
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        fn_constructor_kwargs=dict(model_files=[ref], threads=num_cpus, column=column, output_column=output_column,
                                   options=dict(options)))


# --- files: what `gmlm translate --ray` reads and writes ------------------------------------------
FORMATS = {".txt": "text", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def input_format(path) -> str:
    """text / jsonl / parquet from the file name (a folder: from the files in it)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"--input {p}: no such file or folder")
    files = sorted(x for x in p.iterdir() if x.is_file() and not x.name.startswith(".")) if p.is_dir() else [p]
    kinds = {FORMATS.get(x.suffix.lower(), "text") for x in files}
    if not files:
        raise ValueError(f"--input {p}: the folder has no files")
    if len(kinds) > 1:
        raise ValueError(f"--input {p}: mixed formats {sorted(kinds)}; give one format per run")
    return kinds.pop()


def _lines_of_file(row: dict) -> list[dict]:
    """One text file (read whole) -> its lines, split by the one rule of read_text_lines, with their
    place (path, line number from 1) as the row id."""
    import io

    from ..textio import read_text_lines

    path = row["path"]
    lines = read_text_lines(io.BytesIO(row["bytes"]), path)
    return [{"path": path, "line": i + 1, "text": t} for i, t in enumerate(lines)]


def read_input(path, fmt: str):
    """A Dataset of the input: text files become rows (path, line, text); jsonl and parquet rows as they are."""
    ray = _ray()
    p = os.fspath(path)
    # Reading takes no CPU reservation (num_cpus=0): it is light next to translation, and actors that hold
    # every CPU of a small cluster would otherwise starve the reads that feed them (a deadlock).
    if fmt == "text":
        # whole files, split here (not by read_text: its line rule differs from the engine's)
        return ray.data.read_binary_files(p, include_paths=True, num_cpus=0).flat_map(_lines_of_file, num_cpus=0)
    if fmt == "jsonl":
        return ray.data.read_json(p, lines=True, num_cpus=0)
    return ray.data.read_parquet(p, num_cpus=0)


def write_output(ds, out_dir, fmt: str, output_column: str) -> int:
    """text: one file per input file, DIR/<name>, its translations line by line in input order
    (written as .partial and renamed when complete); jsonl / parquet: Ray's writers (every input
    column + output_column). Returns the number of rows written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        ds.write_json(os.fspath(out))
        return sum(sum(1 for _ in open(f, "rb")) for f in out.glob("*.json*"))
    if fmt == "parquet":
        import pyarrow.parquet as pq

        ds.write_parquet(os.fspath(out))
        return sum(pq.ParquetFile(f).metadata.num_rows for f in out.glob("*.parquet"))
    import contextlib

    from ..textio import AtomicOutput

    n, cur, expect = 0, None, 1
    with contextlib.ExitStack() as stack:
        f = None
        for row in ds.iter_rows():          # the context preserves order: files, then lines, as read
            if row["path"] != cur:
                stack.close()               # the previous file is complete: renamed into place
                cur, expect = row["path"], 1
                f = stack.enter_context(AtomicOutput(out / Path(cur).name))
            if row["line"] != expect:
                raise RuntimeError(f"{cur}: line {row['line']} arrived where line {expect} was expected")
            f.write(row[output_column] + "\n")
            n, expect = n + 1, expect + 1
    return n
