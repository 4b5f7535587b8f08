"""Parallel text: aligned files (plain or .gz), Multi30k splits, token-count batching."""
from __future__ import annotations

import gzip
import os
import random
from pathlib import Path

SPLITS = {"train": "train", "val": "val", "test2016": "test_2016_flickr"}
LANGS = ("en", "de", "fr")
DATA_ENV = "GMLM_DATA_DIR"


def read_lines(path: str | os.PathLike) -> list[str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n").rstrip("\r") for line in f]


def read_parallel(src_path, tgt_path) -> tuple[list[str], list[str]]:
    src, tgt = read_lines(src_path), read_lines(tgt_path)
    if len(src) != len(tgt):
        raise ValueError(f"parallel files are not aligned: {src_path} has {len(src)} lines, "
                         f"{tgt_path} has {len(tgt)}")
    return src, tgt


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The Multi30k directory: the given path, else $GMLM_DATA_DIR; never a built-in path."""
    p = path or os.environ.get(DATA_ENV)
    if not p:
        raise FileNotFoundError(f"no data directory: pass --data-dir or set {DATA_ENV} to a folder "
                                "holding Multi30k's train/val/test_2016_flickr.{en,de,fr}[.gz]")
    p = Path(p)
    if not p.is_dir():
        raise FileNotFoundError(f"data directory not found: {p}")
    return p


def split_file(directory: str | os.PathLike | None, split: str, lang: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    d = data_dir(directory)
    for name in (f"{SPLITS[split]}.{lang}.gz", f"{SPLITS[split]}.{lang}"):
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"{d}: no file for split {split!r} language {lang!r} "
                            f"(expected {SPLITS[split]}.{lang}[.gz])")


def load_split(directory, split: str, src_lang: str = "en", tgt_lang: str = "de"):
    return read_parallel(split_file(directory, split, src_lang), split_file(directory, split, tgt_lang))


def token_batches(lengths: list[int], max_tokens: int, shuffle: bool = True, seed: int = 0,
                  bucket_size: int = 100, max_sentences: int = 0) -> list[list[int]]:
    """Group example indices into batches of at most max_tokens padded tokens.

    Length bucketing: examples are sorted by length (within random chunks of bucket_size batches'
    worth when shuffling, to keep some randomness), so that padding is small; batch order is shuffled.
    lengths[i] is the padded cost of example i (e.g. max of source and target length).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be >= 1")
    rng = random.Random(seed)
    idx = list(range(len(lengths)))
    if shuffle:
        rng.shuffle(idx)
        chunk = max(1, bucket_size * max(1, max_tokens // 16))
        idx = [i for c in range(0, len(idx), chunk) for i in sorted(idx[c:c + chunk], key=lambda j: lengths[j])]
    else:
        idx.sort(key=lambda j: lengths[j])
    batches, cur, cur_max = [], [], 0
    for i in idx:
        m = max(cur_max, lengths[i])
        if cur and (m * (len(cur) + 1) > max_tokens or (max_sentences and len(cur) >= max_sentences)):
            batches.append(cur)
            cur, m = [], lengths[i]
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    if shuffle:
        rng.shuffle(batches)
    return batches
