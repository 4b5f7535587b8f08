"""Serving: one scheduler thread owns the engine and batches requests at refinement-pass boundaries.

A GMLM request needs a small, known number of decoder passes, and a pass is where requests can
join and leave the running batch (`_core.Batch`, decoding/refine.h). `Scheduler` runs that loop:

- "continuous" (the default): before every pass, the queued requests join the batch; finished ones
  leave after every pass;
- "static": collect up to `max_batch` requests or wait `max_wait_ms` after the first, then run
  that batch to completion with nobody joining (how servers batch AR engines; for comparison);
- "single": one request at a time (for comparison).

`submit()` is thread-safe and returns a concurrent.futures.Future; `AsyncTranslator` is the asyncio
face of the same scheduler (`await tr.translate(text, **options)`), and `gmlm serve` (serve.py) its
HTTP face. Results equal `Translator.translate_batch`'s, token for token, whatever else was in the
batch (the engine is batch-invariant; tests check random join orders).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .common import TranslationResult, check_finite_scores, check_sources, encode_sources, validate_options
from .engine import Translator, engine_options

MODES = ("continuous", "static", "single")


class QueueFull(RuntimeError):
    """The scheduler's queue holds max_queue requests already (HTTP 503)."""


class SchedulerClosed(RuntimeError):
    """The scheduler is shutting down and takes no new requests (HTTP 503)."""


@dataclass
class _Job:
    """One submit() call: several texts, one future."""
    results: list
    pending: int
    future: concurrent.futures.Future
    on_pass: Callable[[int, TranslationResult], None] | None
    history: bool
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


class Scheduler:
    def __init__(self, translator: Translator, mode: str = "continuous", max_queue: int = 1024,
                 max_batch: int = 64, max_wait_ms: float = 20.0, max_live: int = 256):
        from . import _core

        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for name, v in (("max_queue", max_queue), ("max_batch", max_batch), ("max_live", max_live)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.tr, self.mode = translator, mode
        self.max_queue, self.max_batch, self.max_wait, self.max_live = max_queue, max_batch, max_wait_ms / 1e3, max_live
        self._batch = _core.Batch(translator._engine)
        self._queue: collections.deque = collections.deque()    # (job, index, enc_ids, options)
        self._owner: dict[int, tuple[_Job, int]] = {}
        self._cv = threading.Condition()
        self._closing = False
        self._static_open = True     # static mode: the current batch still takes requests
        self.stats = {"passes": 0, "requests": 0, "texts": 0, "busy_seconds": 0.0}
        self.latencies: collections.deque = collections.deque(maxlen=100_000)   # seconds per finished job
        self._thread = threading.Thread(target=self._loop, name="gmlm-scheduler", daemon=True)
        self._thread.start()

    # --- the callers' side ------------------------------------------------------------------------
    def submit(self, texts, on_pass=None, **options) -> concurrent.futures.Future:
        """Queue the texts (a list of str) with translate_batch's options; the future's result is the
        list of TranslationResult in input order. on_pass(index, draft) is called from the scheduler
        thread after every pass with the current best hypothesis of each live text (streaming).
        Raises ValueError (bad option or text), QueueFull, SchedulerClosed."""
        opts = validate_options(self.tr.cfg.objective, self.tr.cfg.max_target_len, **options)
        if opts.max_batch_size or opts.batch_type != "examples":
            raise ValueError("max_batch_size and batch_type do not apply to a scheduler (it batches by itself)")
        texts = check_sources(texts)
        with self.tr._lock:
            enc = encode_sources(self.tr.tokenizer, self.tr.cfg, texts)
        fut: concurrent.futures.Future = concurrent.futures.Future()
        job = _Job([None] * len(texts), 0, fut, on_pass, opts.return_history)
        eo = engine_options(opts)
        items = []
        for i, ids in enumerate(enc):
            if ids:
                items.append((job, i, ids, eo))
            else:                                   # nothing to translate: "" (as translate_batch)
                job.results[i] = TranslationResult("", [], 0.0, 0, [] if opts.return_history else None)
        job.pending = len(items)
        with self._cv:
            if self._closing:
                raise SchedulerClosed("the server is shutting down")
            if items and len(self._queue) + len(items) > self.max_queue:
                raise QueueFull(f"the queue is full ({len(self._queue)} of {self.max_queue} texts waiting)")
            self.stats["requests"] += 1
            self.stats["texts"] += len(texts)
            if not items:
                fut.set_result(job.results)
                self.latencies.append(0.0)
            self._queue.extend(items)
            self._cv.notify()
        fut.job = job                                          # for cancel()
        return fut

    def cancel(self, fut: concurrent.futures.Future) -> None:
        """Free the rows of a submitted job (its client left); its future is cancelled."""
        job = getattr(fut, "job", None)
        if job is None:
            return
        with self._cv:
            job.cancelled = True
            self._queue = collections.deque(x for x in self._queue if x[0] is not job)
            self._cv.notify()
        fut.cancel()

    def stream(self, texts, **options):
        """Submit now (ValueError, QueueFull, SchedulerClosed are raised here, in the caller) and return
        an async iterator, for the running event loop, of ("draft", index, TranslationResult) after
        every pass, then ("result", index, TranslationResult) for every text; an engine error is
        raised from it. Leaving it early cancels the job (its rows are freed)."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue = asyncio.Queue()
        fut = self.submit(texts, on_pass=lambda i, r: loop.call_soon_threadsafe(q.put_nowait, (i, r)), **options)
        return self._events(fut, q)

    async def _events(self, fut: concurrent.futures.Future, q: asyncio.Queue):
        done = asyncio.wrap_future(fut)
        try:
            while True:
                getter = asyncio.ensure_future(q.get())
                finished, _ = await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in finished:
                    getter.cancel()
                    break
                i, r = getter.result()
                yield "draft", i, r
            while not q.empty():                      # drafts of the last passes, queued meanwhile
                i, r = q.get_nowait()
                yield "draft", i, r
            for i, r in enumerate(done.result()):
                yield "result", i, r
        finally:
            if not fut.done():
                self.cancel(fut)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Take no new requests; with drain, finish the queued and running ones first."""
        with self._cv:
            self._closing = True
            if not drain:
                for job, *_ in self._queue:
                    job.future.cancel()
                self._queue.clear()
            self._cv.notify()
        self._thread.join(timeout)

    @property
    def queue_depth(self) -> int:
        return len(self._queue)

    @property
    def live_requests(self) -> int:
        return len(self._owner)

    @property
    def live_rows(self) -> int:
        return self._batch.live_rows

    # --- the scheduler thread ---------------------------------------------------------------------
    def _admit(self) -> list:
        """Under the lock: the queued items that join before the next pass (by mode)."""
        room = self.max_live - len(self._owner)
        if self.mode == "single":
            room = 1 if not self._owner else 0
        elif self.mode == "static":
            if self._owner:                      # the running batch is closed to newcomers
                return []
            room = min(room, self.max_batch)
        take = []
        while self._queue and len(take) < room:
            take.append(self._queue.popleft())
        return take

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._owner and not self._closing:
                    self._cv.wait()
                if self._closing and not self._queue and not self._owner:
                    return
                if self.mode == "static" and not self._owner and self._queue:
                    # wait for a full batch or max_wait after the oldest queued request
                    deadline = self._queue[0][0].submitted + self.max_wait
                    while len(self._queue) < self.max_batch and not self._closing:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                for bid, (job, _) in list(self._owner.items()):    # clients that left: free their rows
                    if job.cancelled:
                        self._batch.cancel(bid)
                        del self._owner[bid]
                take = [x for x in self._admit() if not x[0].cancelled]
            t0 = time.perf_counter()
            try:
                if take:
                    ids = self._batch.add([x[2] for x in take], [x[3] for x in take])
                    for bid, (job, i, _, _) in zip(ids, take):
                        self._owner[bid] = (job, i)
                if not self._owner:
                    continue
                done = self._batch.step()
            except Exception as e:  # noqa: BLE001  (an engine error fails the jobs in the batch, not the server)
                with self._cv:
                    for job, _ in list(self._owner.values()):
                        if not job.future.done():
                            job.future.set_exception(e)
                    for bid in list(self._owner):
                        self._batch.cancel(bid)
                    self._owner.clear()
                continue
            self.stats["passes"] += 1
            self.stats["busy_seconds"] += time.perf_counter() - t0
            self._deliver(done)

    def _result(self, tup, history: bool) -> TranslationResult:
        ids, score, passes, hist, cands = tup
        tok = self.tr.tokenizer
        with self.tr._lock:
            return TranslationResult(tok.decode(ids), tok.pieces(ids), score, passes,
                                     [tok.pieces(h) for h in hist] if history else None, cands)

    def _deliver(self, done) -> None:
        for bid, tup in done:
            job, i = self._owner.pop(bid)
            if job.cancelled:
                continue
            job.results[i] = self._result(tup, job.history)
            job.pending -= 1
            if job.pending == 0 and not job.future.done():
                try:
                    check_finite_scores(job.results, self.tr.files.path)
                except Exception as e:  # noqa: BLE001
                    job.future.set_exception(e)
                else:
                    job.future.set_result(job.results)
                self.latencies.append(time.perf_counter() - job.submitted)
        for bid, (job, i) in list(self._owner.items()):
            if job.on_pass is not None and not job.cancelled:
                cur = self._batch.current(bid)
                if cur is not None:
                    try:
                        job.on_pass(i, self._result(cur, False))
                    except Exception:  # noqa: BLE001  (a broken listener must not stop the scheduler)
                        job.on_pass = None


class AsyncTranslator:
    """asyncio API on a Scheduler: `await AsyncTranslator().translate("A dog.", iterations=4)`.
    Safe to call from many coroutines (and, through `scheduler.submit`, from threads)."""

    def __init__(self, model="default", intra_threads: int = 0, **scheduler_options):
        self.scheduler = Scheduler(Translator(model, intra_threads=intra_threads), **scheduler_options)

    async def translate(self, text, **options):
        """A str gives one TranslationResult, a list of str a list of them."""
        single = isinstance(text, str)
        fut = self.scheduler.submit([text] if single else text, **options)
        try:
            res = await asyncio.wrap_future(fut)
        except asyncio.CancelledError:
            self.scheduler.cancel(fut)
            raise
        return res[0] if single else res

    async def stream(self, texts: list[str], **options):
        """Async iterator of ("draft", index, TranslationResult) after every pass, then ("result",
        index, TranslationResult) for every text once all are done."""
        async for item in self.scheduler.stream(texts, **options):
            yield item

    def close(self, drain: bool = True) -> None:
        self.scheduler.close(drain)
