"""What the reference decoder and the compiled engine share: results, source checks and encoding,
batching of inputs, and the translate_batch / iterable / file front-ends (options: options.py; the
RNG and score rules: rules.py; text I/O: textio.py).

No PyTorch here: the engine runtime imports this module.
"""
from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Iterator, NamedTuple

from .options import DEFAULT_REPEAT_PENALTY, DecodeOptions, int_option, validate_options
from .rules import repeats
from .textio import AtomicOutput, read_text_lines


@dataclass
class TranslationResult:
    text: str
    tokens: list[str]
    score: float = 0.0
    iterations: int = 0
    history: list[list[str]] | None = None
    length_candidates: list[int] = field(default_factory=list)


class DecodeResult(NamedTuple):
    """What a decoder returns for one source (the compiled engines' tuples and the reference's, named): output
    ids, score, decoder passes, the tokens after each pass (return_history), the length candidates, and with
    rerank every scored candidate as (ids, score, passes)."""
    ids: list
    score: float
    passes: int
    history: list
    length_candidates: list
    candidates: list | None = None


def position(i: int, offset: int = 0, unit: str = "source") -> str:
    """How an error names input i of a batch that starts at `offset` of the caller's input: source[n]
    for lists and iterables, "line n" (from 1) for files."""
    return f"line {offset + i + 1}" if unit == "line" else f"source[{offset + i}]"


def iterate_sources(source, kind: str = "list"):
    """An iterator over the caller's texts; ValueError for a single string or for something that is not iterable
    (`kind`: what the call takes, a list or an iterable of strings)."""
    if isinstance(source, str):
        raise ValueError(f"source must be {'a' if kind == 'list' else 'an'} {kind} of strings, not a single string")
    try:
        return iter(source)
    except TypeError:
        raise ValueError(f"source must be {'a' if kind == 'list' else 'an'} {kind} of strings, got "
                         f"{type(source).__name__}") from None


def check_sources(source, offset: int = 0, unit: str = "source") -> list[str]:
    source = list(iterate_sources(source))
    for i, s in enumerate(source):
        if not isinstance(s, str):
            raise ValueError(f"{position(i, offset, unit)} must be a string, got {type(s).__name__}")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: not text, and SentencePiece cannot take it
            raise ValueError(f"{position(i, offset, unit)} is not valid Unicode text ({e.reason} at character "
                             f"{e.start})") from None
    return source


# Characters of a text that are tokenized at most, per token the model can read: far more than pieces
# ever cover (the longest piece of the shipped vocabulary has 16 characters).
CHARS_PER_TOKEN_BOUND = 64


def _encode_bounded(tokenizer, texts: list[str], room: int) -> list[list[int]]:
    """tokenizer.encode(texts), without tokenizing all of a text that is far longer than the model reads
    (a 50 MB line used to cost 1.4 GB): its first room x CHARS_PER_TOKEN_BOUND characters are tokenized
    and, when they give well over room pieces, stand for it. SentencePiece segments each
    whitespace-separated word on its own, so the first room pieces are those of the whole text; a prefix
    that gives few pieces (whitespace, say) falls back to the whole text."""
    limit = room * CHARS_PER_TOKEN_BOUND
    out = tokenizer.encode([t if len(t) <= limit else t[:limit] for t in texts])
    for i, t in enumerate(texts):
        if len(t) > limit and len(out[i]) <= room + 16:
            out[i] = tokenizer.encode([t])[0]
    return out


def encode_sources(tokenizer, cfg, texts: list[str]) -> list[list[int]]:
    """Encoder input ids per text: gmlm [<len>] + pieces + [</s>], ar pieces + [</s>]; [] for a text
    with nothing to translate (Tokenizer.translatable: no letter, digit or symbol the vocabulary
    knows): it translates to "" like the empty string, never to an invented sentence. Over-long
    inputs are truncated to max_source_len with a warning."""
    prefix = [cfg.len_id] if cfg.objective == "gmlm" else []     # (a ctc model has no length head: no <len>)
    room = cfg.max_source_len - len(prefix) - 1
    out, truncated = [], 0
    for text, ids in zip(texts, _encode_bounded(tokenizer, texts, room)):
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


class TranslatorFrontEnd:
    """What both decoders share: translate_batch's skeleton (options, sources, tokenization, empty
    inputs, batching, results) around a backend's `_decode(encoder_inputs, opts)`, and
    translate_iterable / translate_file on top of it. A backend sets cfg, tokenizer, files,
    default_batch, and `_lock` where its tokenizer calls must be serialised."""

    default_batch = 32
    _lock = None

    @property
    def model_name(self) -> str:
        """The model's name for users and services: its directory's name, never the path (which says
        where the software is installed)."""
        return self.files.path.name if getattr(self, "files", None) is not None else "model"

    def encode(self, texts: list[str]) -> list[list[int]]:
        """The encoder input ids of each text ([] for a text with nothing to translate); thread-safe."""
        with self._tokenizer():
            return encode_sources(self.tokenizer, self.cfg, texts)

    def pieces(self, ids: list[int]) -> list[str]:
        """The pieces of output ids; thread-safe."""
        with self._tokenizer():
            return self.tokenizer.pieces(ids)

    def make_result(self, out: tuple, history: bool) -> TranslationResult:
        """A TranslationResult from a decoder's DecodeResult (or the same fields as a plain tuple); thread-safe."""
        r = DecodeResult(*out)
        with self._tokenizer():
            tok = self.tokenizer
            return TranslationResult(tok.decode(r.ids), tok.pieces(r.ids), r.score, r.passes,
                                     [tok.pieces(h) for h in r.history] if history else None,
                                     list(r.length_candidates))

    def _decode(self, srcs: list[list[int]], opts: DecodeOptions) -> list[DecodeResult]:
        """One batch of non-empty encoder inputs -> a DecodeResult each."""
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

    def _rerank(self, texts: list[str], outs: list[DecodeResult], repeat_penalty: float) -> list[DecodeResult]:
        """AR reranking (docs/decoding.md): each sentence's scored candidates ranked by the AR model's
        mean log-probability, less repeat_penalty for an output that repeats itself (ties: the lower
        candidate index); the winner's output, GMLM score and passes."""
        ar = self.reranker
        word = self.tokenizer.word_pieces()
        with ar._tokenizer():
            srcs = encode_sources(ar.tokenizer, ar.cfg, texts)
        pairs = [(b, c) for b, out in enumerate(outs) for c in out.candidates]
        # each distinct output of a sentence is scored once: candidates that converged to the same tokens
        # get the same score, so the tie rule (lower candidate index) decides between them, not the ~1e-7
        # by which a row's score varies with its place in the scoring batch
        distinct = list(dict.fromkeys((b, tuple(c[0])) for b, c in pairs))
        got = ar._score([srcs[b] for b, _ in distinct], [list(t) for _, t in distinct]) if distinct else []
        by_output = dict(zip(distinct, got))
        scores = [by_output[(b, tuple(c[0]))] for b, c in pairs]
        best: dict[int, tuple] = {}
        for (b, cand), s in zip(pairs, scores):
            if repeat_penalty and repeats(cand[0], word):
                s -= repeat_penalty
            if b not in best or s > best[b][0]:
                best[b] = (s, cand)
        return [DecodeResult(*best[b][1][:3], out.history, out.length_candidates) for b, out in enumerate(outs)]

    def _tokenizer(self):
        return self._lock if self._lock is not None else contextlib.nullcontext()

    def translate_batch(self, source, *, iterations=None, length_beam=None,
                        length_beam_keep=None,
                        length_offset=None, update="masked", remask="linear",
                        threshold=None, stutter_remask=None, early_stop=False, init="mask", sampling=False, seed=None,
                        beam_size=1,
                        length_penalty=1.0, max_batch_size=0, batch_type="examples", return_history=False,
                        rerank=False, repeat_remask=None, repeat_penalty=DEFAULT_REPEAT_PENALTY,
                        blank_penalty=None, cache_refresh=1) -> list[TranslationResult]:
        """Translate a list of strings. The options are options.OPTIONS (this signature is tested against
        that table; docs/decoding.md lists them, docs/api.md explains them)."""
        options = dict(locals())
        del options["self"], options["source"]
        return self._translate(source, 0, "source", options)

    def validate_options(self, **options) -> DecodeOptions:
        """Check decoding options (translate_batch's keywords) for this model and device without translating
        anything: the validated options, every one filled in, or ValueError naming the first bad one (TypeError
        for a name that is not an option)."""
        opts = validate_options(self.cfg.objective, self.cfg.max_target_len, **options)
        if opts.rerank and getattr(self, "reranker", None) is None:
            raise ValueError("rerank needs an AR model: create the translator with rerank_model=DIR")
        self._check_engine_options(opts)
        return opts

    def _check_engine_options(self, opts: DecodeOptions) -> None:
        """A compiled engine's own check of the options (nothing to add for the reference decoder)."""

    def _translate(self, source, offset: int, unit: str, options: dict) -> list[TranslationResult]:
        """translate_batch on a part of the caller's input that starts at `offset`: errors name the
        input's position in the caller's terms (source[n], or line n of a file)."""
        opts = self.validate_options(**options)
        source = check_sources(source, offset, unit)
        enc_ids = self.encode(source)
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
                outs = self._rerank([source[i] for i in idx], outs, opts.repeat_penalty)
            for i, out in zip(idx, outs):
                results[i] = self.make_result(out, opts.return_history)
        check_finite_scores(results, getattr(getattr(self, "files", None), "path", "model"), offset, unit)
        return results  # type: ignore[return-value]

    def translate_iterable(self, source: Iterable[str], batch_size: int = 64, **options) -> Iterator[TranslationResult]:
        """Translate an iterable of strings lazily, batch_size at a time (results in input order).
        Arguments are checked here, before the first result is asked for."""
        it = iterate_sources(source, "iterable")
        batch_size = int_option("batch_size", batch_size, 1)
        self.validate_options(**options)  # now, not at the first batch
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
        self.validate_options(**options)
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
