"""What the reference decoder and the compiled engine share: results, source encoding,
the counter-based RNG, batching of inputs, and the iterable/file front-ends.

No PyTorch here: the engine runtime imports this module.
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import numpy as np

from .options import (DEFAULT_ITERATIONS, DEFAULT_LENGTH_BEAM, DEFAULT_LENGTH_OFFSET, GMLM_ONLY,  # noqa: F401
                      DecodeOptions, int_option, validate_options)


@dataclass
class TranslationResult:
    text: str
    tokens: list[str]
    score: float = 0.0
    iterations: int = 0
    history: list[list[str]] | None = None
    length_candidates: list[int] = field(default_factory=list)


def position(i: int, offset: int = 0, unit: str = "source") -> str:
    """How an error names input i of a batch that starts at `offset` of the caller's input: source[n]
    for lists and iterables, "line n" (from 1) for files."""
    return f"line {offset + i + 1}" if unit == "line" else f"source[{offset + i}]"


def check_sources(source, offset: int = 0, unit: str = "source") -> list[str]:
    if isinstance(source, str):
        raise ValueError("source must be a list of strings, not a single string")
    try:
        source = list(source)
    except TypeError:
        raise ValueError(f"source must be a list of strings, got {type(source).__name__}") from None
    for i, s in enumerate(source):
        if not isinstance(s, str):
            raise ValueError(f"{position(i, offset, unit)} must be a string, got {type(s).__name__}")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: not text, and SentencePiece cannot take it
            raise ValueError(f"{position(i, offset, unit)} is not valid Unicode text ({e.reason} at character "
                             f"{e.start})") from None
    return source


def encode_sources(tokenizer, cfg, texts: list[str]) -> list[list[int]]:
    """Encoder input ids per text: gmlm [<len>] + pieces + [</s>], ar pieces + [</s>]; [] for a text
    with nothing to translate (Tokenizer.translatable: no letter, digit or symbol the vocabulary
    knows): it translates to "" like the empty string, never to an invented sentence. Over-long
    inputs are truncated to max_source_len with a warning."""
    prefix = [cfg.len_id] if cfg.objective == "gmlm" else []
    room = cfg.max_source_len - len(prefix) - 1
    out, truncated = [], 0
    for text, ids in zip(texts, tokenizer.encode(texts)):
        if not tokenizer.translatable(ids):
            out.append([])
            continue
        if len(ids) > room:
            ids = ids[:room]
            truncated += 1
        out.append(prefix + ids + [cfg.eos_id])
    if truncated:
        warnings.warn(f"{truncated} source(s) longer than max_source_len={cfg.max_source_len} tokens "
                      "were truncated", stacklevel=4)
    return out


# --- the counter-based RNG (docs/decoding.md) ------------------------------------------------
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(z):
    z = np.asarray(z, dtype=np.uint64)
    z = z ^ (z >> np.uint64(30))
    z = z * _M1
    z = z ^ (z >> np.uint64(27))
    z = z * _M2
    return z ^ (z >> np.uint64(31))


def source_hash(ids: list[int]) -> int:
    """FNV-1a 64 over the little-endian int32 bytes of the encoder input ids."""
    h = 0xCBF29CE484222325
    for b in np.asarray(ids, dtype="<i4").tobytes():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def hash_bits(seed: int, stream: int, src_hash, k, t: int, i, v) -> np.ndarray:
    """64-bit hash of (seed, stream, source, candidate, iteration, position, vocab id); arguments
    broadcast (numpy arrays of any integer type)."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(np.uint64(seed) + _GOLDEN, dtype=np.uint64))
        for x in (stream, src_hash, k, t, i, v):
            h = _mix(h ^ np.asarray(x).astype(np.uint64))
    return h


def hash_uniform(h: np.ndarray) -> np.ndarray:
    """Top 24 bits -> uniform float in (0, 1), exact in float32 and float64."""
    return ((h >> np.uint64(40)).astype(np.float64) + 0.5) / float(1 << 24)


def gumbel_noise(seed, src_hash, k, t, i, vocab_size) -> np.ndarray:
    """(M, V) float32 Gumbel noise for M selected positions (src_hash, k, i arrays of length M)."""
    v = np.arange(vocab_size, dtype=np.uint64)[None, :]
    col = lambda a: np.asarray(a, dtype=np.uint64)[:, None]  # noqa: E731
    u = hash_uniform(hash_bits(seed, 0, col(src_hash), col(k), t, col(i), v))
    return (-np.log(-np.log(u))).astype(np.float32)


def random_init_tokens(seed, src_hash, k, i, vocab_size, first_id) -> np.ndarray:
    """Random initial tokens in [first_id, vocab_size) (stream 1, t = 0, v = 0)."""
    h = hash_bits(seed, 1, np.asarray(src_hash, np.uint64), np.asarray(k, np.uint64), 0,
                  np.asarray(i, np.uint64), 0)
    return (first_id + (h >> np.uint64(40)) % np.uint64(vocab_size - first_id)).astype(np.int64)


# --- batching -------------------------------------------------------------------------------
def plan_batches(lengths: list[int], max_batch_size: int, batch_type: str, default_size: int) -> list[list[int]]:
    """Indices grouped into batches, sorted by length (longest first); results are put back in
    input order by the caller. max_batch_size counts examples or tokens (batch_type)."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    size = max_batch_size or default_size
    batches, cur, cur_max = [], [], 0
    for i in order:
        m = max(cur_max, lengths[i], 1)
        cost = m * (len(cur) + 1) if batch_type == "tokens" else len(cur) + 1
        if cur and cost > size:
            batches.append(cur)
            cur, m = [], max(lengths[i], 1)
        cur.append(i)
        cur_max = m
    if cur:
        batches.append(cur)
    return batches


def check_finite_scores(results, path, offset: int = 0, unit: str = "source") -> None:
    """A non-finite score means the model's arithmetic overflowed: its output is garbage, so say so."""
    bad = [i for i, r in enumerate(results) if r is not None and not math.isfinite(r.score)]
    if bad:
        from .config import ModelError

        raise ModelError(f"{path}: the model computed non-finite scores for {len(bad)} input(s) "
                         f"(first: {position(bad[0], offset, unit)}); its weights or config.json are broken")


def read_text_lines(f, name: str) -> Iterator[str]:
    """The lines of a binary stream, one rule for files and stdin: lines end at "\n" (a "\r\n" ending
    counts as "\n"); a bare "\r" or any other Unicode line separator inside a line stays part of
    it. Invalid UTF-8 raises ValueError naming the line."""
    for n, raw in enumerate(f, 1):
        if raw.endswith(b"\n"):
            raw = raw[:-1]
            if raw.endswith(b"\r"):
                raw = raw[:-1]
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{name}: line {n} is not valid UTF-8 ({e.reason} at byte {e.start})") from None


class AtomicOutput:
    """Where translations are written, checked before any work is done (in the constructor):

    - a regular file (or a new one) is written as a private temporary file next to it and renamed
      over it only on success: a failure leaves the previous file untouched, and two runs on the same
      path never share a temporary file (the last to finish wins, whole); the file keeps its mode;
    - a symbolic link: the file it points to is replaced, the link stays;
    - a device, FIFO or socket (/dev/null, /dev/stdout, a pipe) is written through, as a shell's
      `>` would, never replaced;
    - a directory, a read-only file, or the input file itself (however the path is spelled; `source`
      is its path or an open file) is refused: IsADirectoryError, PermissionError, ValueError.
    """

    def __init__(self, path: str | os.PathLike, source=None):
        import stat

        self.path = os.fspath(path)
        try:
            st = os.stat(self.path)           # follows links: what a write would reach
        except FileNotFoundError:
            st = None
        if st is not None and stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(f"output {self.path} is a directory; give a file path")
        if st is not None and source is not None:
            try:
                src = os.fstat(source.fileno()) if hasattr(source, "fileno") else os.stat(source)
            except (OSError, ValueError):
                src = None
            if src is not None and (src.st_dev, src.st_ino) == (st.st_dev, st.st_ino):
                raise ValueError(f"output {self.path} is the input file; write the translations to another file")
        self.direct = st is not None and not stat.S_ISREG(st.st_mode)
        if st is not None and not self.direct and (not st.st_mode & 0o222 or not os.access(self.path, os.W_OK)):
            raise PermissionError(f"output {self.path} is read-only")
        self.mode = None if st is None else stat.S_IMODE(st.st_mode)
        self.target = os.path.realpath(self.path)
        if not self.direct and not os.path.isdir(os.path.dirname(self.target) or "."):
            raise FileNotFoundError(f"output {self.path}: the folder {os.path.dirname(self.target)} does not exist")

    def __enter__(self):
        if self.direct:
            self.tmp = None
            self.f = open(self.path, "w", encoding="utf-8")
            return self.f
        import secrets

        folder, name = os.path.split(self.target)
        for _ in range(100):
            self.tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.partial")
            try:   # O_EXCL: this run's own file; 0o666 & ~umask like any new file
                fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
        else:  # pragma: no cover
            raise FileExistsError(f"output {self.path}: cannot create a temporary file next to it")
        self.f = os.fdopen(fd, "w", encoding="utf-8")
        return self.f

    def __exit__(self, exc_type, exc, tb):
        try:
            self.f.close()
        finally:
            if self.tmp is not None:
                if exc_type is None:
                    if self.mode is not None:
                        os.chmod(self.tmp, self.mode)
                    os.replace(self.tmp, self.target)
                else:
                    try:
                        os.remove(self.tmp)
                    except OSError:
                        pass
        return False


class TranslatorFrontEnd:
    """What both decoders share: translate_batch's skeleton (options, sources, tokenization, empty
    inputs, batching, results) around a backend's `_decode(encoder_inputs, opts)`, and
    translate_iterable / translate_file on top of it. A backend sets cfg, tokenizer, files,
    default_batch, and `_lock` where its tokenizer calls must be serialised."""

    default_batch = 32
    _lock = None

    def _decode(self, srcs: list[list[int]], opts: DecodeOptions) -> list[tuple]:
        """One batch of non-empty encoder inputs -> (ids, score, passes, history, length_candidates) each."""
        raise NotImplementedError

    def _score(self, srcs: list[list[int]], tgts: list[list[int]]) -> list[float]:
        """ar backends: teacher-forced mean log-probability of each target (its tokens and eos)."""
        raise NotImplementedError

    def _check_reranker(self, ar):
        """The AR model of rerank_model: an ar model with the same tokenizer as this gmlm model."""
        from .config import ModelError

        if self.cfg.objective != "gmlm" or ar.cfg.objective != "ar":
            raise ValueError("rerank_model: AR reranking needs a gmlm model and an ar rerank_model")
        if ar.tokenizer.sp.serialized_model_proto() != self.tokenizer.sp.serialized_model_proto():
            raise ModelError(f"{ar.files.path}: its spm.model is not the gmlm model's; the reranker must share the "
                             "vocabulary")
        return ar

    def _rerank(self, texts: list[str], outs: list[tuple]) -> list[tuple]:
        """AR reranking (docs/decoding.md): each sentence's scored candidates ranked by the AR model's
        mean log-probability (ties: the lower candidate index); the winner's output, GMLM score and passes."""
        ar = self.reranker
        with ar._tokenizer():
            srcs = encode_sources(ar.tokenizer, ar.cfg, texts)
        pairs = [(b, c) for b, out in enumerate(outs) for c in out[5]]
        scores = ar._score([srcs[b] for b, _ in pairs], [c[0] for _, c in pairs]) if pairs else []
        best: dict[int, tuple] = {}
        for (b, cand), s in zip(pairs, scores):
            if b not in best or s > best[b][0]:
                best[b] = (s, cand)
        return [(best[b][1][0], best[b][1][1], best[b][1][2], out[3], out[4]) for b, out in enumerate(outs)]

    def _tokenizer(self):
        return self._lock if self._lock is not None else contextlib.nullcontext()

    def translate_batch(self, source, *, iterations=DEFAULT_ITERATIONS, length_beam=DEFAULT_LENGTH_BEAM,
                        length_beam_keep=None,
                        length_offset=DEFAULT_LENGTH_OFFSET, remask="linear",
                        threshold=None, stutter_remask=True, early_stop=False, init="mask", sampling=False, seed=None,
                        beam_size=1,
                        length_penalty=1.0, max_batch_size=0, batch_type="examples", return_history=False,
                        rerank=False, repeat_remask=False, repeat_penalty=0.0) -> list[TranslationResult]:
        """Translate a list of strings. The options are options.OPTIONS (this signature is tested against
        that table; docs/decoding.md lists them, README "Python API" explains them)."""
        options = dict(locals())
        del options["self"], options["source"]
        return self._translate(source, 0, "source", options)

    def _translate(self, source, offset: int, unit: str, options: dict) -> list[TranslationResult]:
        """translate_batch on a part of the caller's input that starts at `offset`: errors name the
        input's position in the caller's terms (source[n], or line n of a file)."""
        opts = validate_options(self.cfg.objective, self.cfg.max_target_len, **options)
        if opts.rerank and getattr(self, "reranker", None) is None:
            raise ValueError("rerank needs an AR model: create the translator with rerank_model=DIR")
        source = check_sources(source, offset, unit)
        with self._tokenizer():
            enc_ids = encode_sources(self.tokenizer, self.cfg, source)
        results: list[TranslationResult | None] = [None] * len(source)
        todo = [i for i, ids in enumerate(enc_ids) if ids]
        for i, ids in enumerate(enc_ids):
            if not ids:   # nothing to translate: "" (never an invented sentence)
                results[i] = TranslationResult("", [], 0.0, 0, [] if opts.return_history else None)
        lengths = [len(enc_ids[i]) for i in todo]
        for batch in plan_batches(lengths, opts.max_batch_size, opts.batch_type, self.default_batch):
            idx = [todo[b] for b in batch]
            outs = self._decode([enc_ids[i] for i in idx], opts)
            if opts.rerank:
                outs = self._rerank([source[i] for i in idx], outs)
            with self._tokenizer():
                for i, (ids, score, passes, hist, cands) in zip(idx, outs):
                    results[i] = TranslationResult(
                        self.tokenizer.decode(ids), self.tokenizer.pieces(ids), score, passes,
                        [self.tokenizer.pieces(h) for h in hist] if opts.return_history else None, list(cands))
        check_finite_scores(results, getattr(getattr(self, "files", None), "path", "model"), offset, unit)
        return results  # type: ignore[return-value]

    def translate_iterable(self, source: Iterable[str], batch_size: int = 64, **options) -> Iterator[TranslationResult]:
        """Translate an iterable of strings lazily, batch_size at a time (results in input order).
        Arguments are checked here, before the first result is asked for."""
        if isinstance(source, str):
            raise ValueError("source must be an iterable of strings, not a single string")
        try:
            it = iter(source)
        except TypeError:
            raise ValueError(f"source must be an iterable of strings, got {type(source).__name__}") from None
        batch_size = int_option("batch_size", batch_size, 1)
        self.translate_batch([], **options)  # validates the options now, not at the first batch
        return self._translate_chunks(it, batch_size, options)

    def _translate_chunks(self, it, batch_size, options, unit: str = "source"):
        buf: list[str] = []
        done = 0
        for line in it:
            buf.append(line)
            if len(buf) >= batch_size:
                yield from self._translate(buf, done, unit, options)
                done += len(buf)
                buf = []
        if buf:
            yield from self._translate(buf, done, unit, options)

    def translate_file(self, src_path: str | os.PathLike, out_path: str | os.PathLike, batch_size: int = 64,
                       progress: bool | None = None, **options) -> dict:
        """Translate a UTF-8 text file line by line (lines as read_text_lines splits them); returns
        {'sentences': n, 'seconds': s}. out_path appears only when every line is translated."""
        import time

        batch_size = int_option("batch_size", batch_size, 1)
        self.translate_batch([], **options)
        output = AtomicOutput(out_path, source=src_path)     # checked before any work
        with open(src_path, "rb") as f:
            lines = list(read_text_lines(f, os.fspath(src_path)))
        bar = _progress(len(lines), progress)
        t0 = time.perf_counter()
        try:
            with output as out:
                for start in range(0, len(lines), batch_size):
                    for r in self._translate(lines[start:start + batch_size], start, "line", options):
                        out.write(r.text + "\n")
                    bar.update(min(batch_size, len(lines) - start))
        finally:
            bar.close()
        return {"sentences": len(lines), "seconds": time.perf_counter() - t0}


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total: int, progress: bool | None):
    if progress is False or (progress is None and total < 1000):
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, unit="sent", desc="translate")


def mean_score(conf) -> float:
    conf = np.asarray(conf, dtype=np.float64)
    return float(conf.sum() / len(conf)) if len(conf) else 0.0


def log_threshold(threshold: float) -> float:
    """Positions with conf < log(threshold) (float64) stay masked."""
    return math.log(threshold)
