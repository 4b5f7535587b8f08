"""Serving: one scheduler thread owns the engine and batches requests at refinement-pass boundaries.

A GMLM request needs a small, known number of decoder passes, and a pass is where requests can
join and leave the running batch (`_core.Batch`, decoding/refine.h). `Scheduler` runs that loop:

- "continuous" (the default): before every pass, queued texts join the batch, fairly: jobs (submit
  calls) take turns one text at a time, a pass holds at most `max_positions` decoder positions (each
  text: its candidates x its estimated length), and one job at most half of them, so a small request beside a big one joins at the next pass boundary
  and its passes stay short; finished texts leave after every pass;
- "static": collect up to `max_batch` requests or wait `max_wait_ms` after the first, then run
  that batch to completion with nobody joining (how servers batch AR engines; for comparison);
- "single": one request at a time (for comparison).

One job's work is bounded (`max_cost`, in decoder positions: for each text, its candidates x passes
(or AR steps) x the positions each computes, estimated from the source's length, the length offset
and the model's maximum; TooLarge above). A text whose candidates need more room than is free
reserves it: nobody overtakes it until it is admitted, so every admitted request finishes. One
job's failure stays its own: when a pass fails (out of memory, say) with several jobs in it, their
texts start again, each job alone, so only the job that fails alone fails (results do not depend
on the batch, so a restart changes nothing else).

`submit()` is thread-safe and returns a concurrent.futures.Future; `AsyncTranslator` is the asyncio
face of the same scheduler (`await tr.translate(text, **options)`), and `gmlm serve` (serving/http.py) its
HTTP face. Results equal `Translator.translate_batch`'s, token for token, whatever else was in the
batch (the engine is batch-invariant; tests check random join orders).
"""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from ..common import TranslationResult, check_finite_scores, check_sources, encode_sources
from ..engine import Translator, engine_options

MODES = ("continuous", "static", "single")


class QueueFull(RuntimeError):
    """The scheduler's queue holds max_queue requests already (HTTP 503)."""


class SchedulerClosed(RuntimeError):
    """The scheduler is shutting down and takes no new requests, or stopped before finishing one (HTTP 503)."""


class TooLarge(ValueError):
    """A request's work exceeds the scheduler's max_cost (HTTP 413)."""


# The most work one submit() may ask for, in decoder positions (Scheduler.cost): what 64 texts of the
# longest kind (96 positions) cost at the defaults (T=8, K=2), with a third to spare.
DEFAULT_MAX_COST = 131072
# Decoder positions in one pass (all jobs together: each text its candidates or hypotheses x its estimated
# length, Scheduler.width); one job holds at most half. 64 texts of the longest kind (96) at length_beam 2.
DEFAULT_MAX_POSITIONS = 12288


@dataclass(frozen=True)
class CandidateView:
    """One candidate after a pass (a length candidate; for an ar model a beam hypothesis): its pieces,
    the probability of each (gmlm; empty for ar), which positions the next pass predicts again (gmlm),
    its score (mean log-probability), passes run, whether it runs no further and whether pruning dropped it."""
    pieces: list[str]
    confidences: list[float]
    masked: list[bool]
    score: float
    passes: int
    done: bool
    pruned: bool


@dataclass
class Draft(TranslationResult):
    """A text's state after a pass (streaming): the current best output, as TranslationResult, and every
    candidate; `best` indexes the candidate the output comes from."""
    candidates: list[CandidateView] = field(default_factory=list)
    best: int = 0


@dataclass(eq=False)   # compared and hashed by identity
class _Job:
    """One submit() call: several texts, one future."""
    results: list
    pending: int
    future: concurrent.futures.Future
    on_pass: Callable[[int, TranslationResult], None] | None
    history: bool
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    waiting: collections.deque = field(default_factory=collections.deque)   # (job, i, ids, options, width) to admit
    live_positions: int = 0        # decoder positions of its texts in the batch (Scheduler.width)
    alone: bool = False            # restarted after a failed pass: runs with no other job


def _fail(job: _Job, exc: BaseException) -> None:
    if not job.future.done():
        job.future.set_exception(exc)


class Scheduler:
    def __init__(self, translator: Translator, mode: str = "continuous", max_queue: int = 1024,
                 max_batch: int = 64, max_wait_ms: float = 20.0, max_live: int = 256,
                 max_positions: int = DEFAULT_MAX_POSITIONS, max_cost: int = DEFAULT_MAX_COST):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        for name, v in (("max_queue", max_queue), ("max_batch", max_batch), ("max_live", max_live),
                        ("max_positions", max_positions), ("max_cost", max_cost)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if not max_wait_ms >= 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {max_wait_ms!r}")
        self.tr, self.mode = translator, mode
        self.max_queue, self.max_batch, self.max_wait, self.max_live = max_queue, max_batch, max_wait_ms / 1e3, max_live
        self.max_positions, self.max_cost = max_positions, max_cost
        self._batch = translator.new_batch()
        self._jobs: collections.deque = collections.deque()     # jobs with texts waiting, in turn order
        self._queued = 0                                        # texts waiting, all jobs
        self._owner: dict[int, tuple] = {}                      # batch id -> (job, i, ids, options, width)
        self._live_positions = 0
        self._cv = threading.Condition()
        self._closing = False
        self._abort: BaseException | None = None
        self._static_open = True     # static mode: the current batch still takes requests
        self.stats = {"passes": 0, "requests": 0, "texts": 0, "busy_seconds": 0.0}
        self.latencies: collections.deque = collections.deque(maxlen=100_000)   # seconds per finished job
        self._thread = threading.Thread(target=self._loop, name="gmlm-scheduler", daemon=True)
        self._thread.start()

    # --- the callers' side ------------------------------------------------------------------------
    def width(self, source_tokens: int, opts) -> int:
        """The room one text holds in a pass, in decoder positions: its candidates (AR: hypotheses) x its output
        length. The length is not known before decoding: it is estimated as 1.5 x the source's tokens + 4 (plus
        length_offset for a GMLM), clamped to [1, max_target_len]. A GMLM pass computes that many positions; an
        AR step attends over that many cached ones."""
        L = self.tr.cfg.max_target_len
        est = (3 * source_tokens) // 2 + 4
        if self.tr.cfg.objective == "ar":
            return opts.beam_size * min(L, est)
        return opts.length_beam * min(L, max(1, est + opts.length_offset))

    def cost(self, source_tokens: int, opts) -> int:
        """The work of one text, in decoder positions: its width x passes for a GMLM, hypotheses x steps (one
        position per hypothesis and step, the same product as its width) for an AR model."""
        return self.width(source_tokens, opts) * (1 if self.tr.cfg.objective == "ar" else opts.iterations)

    def submit(self, texts, on_pass=None, **options) -> concurrent.futures.Future:
        """Queue the texts (a list of str) with translate_batch's options; the future's result is the
        list of TranslationResult in input order. on_pass(index, draft) is called from the scheduler
        thread after every pass with the current best hypothesis of each live text (streaming).
        Raises ValueError (bad option or text), QueueFull, SchedulerClosed."""
        if options.get("rerank") is True:
            raise ValueError("rerank is not available in the scheduler (use translate_batch)")
        opts = self.tr.validate_options(**options)
        if opts.max_batch_size or opts.batch_type != "examples":
            raise ValueError("max_batch_size and batch_type do not apply to a scheduler (it batches by itself)")
        texts = check_sources(texts)
        ar = self.tr.cfg.objective == "ar"
        k = opts.beam_size if ar else opts.length_beam    # candidates (hypotheses) per text
        with self.tr._lock:
            enc = encode_sources(self.tr.tokenizer, self.tr.cfg, texts)
        cost = sum(self.cost(len(ids), opts) for ids in enc if ids)
        if cost > self.max_cost:
            what = f"beam_size {k}" if ar else f"length_beam {k} x iterations {opts.iterations}"
            raise TooLarge(f"the request asks for {len(texts)} texts x {what} = {cost} decoder positions (estimated "
                           f"from the texts' lengths); at most {self.max_cost} per request")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        job = _Job([None] * len(texts), 0, fut, on_pass, opts.return_history)
        eo = engine_options(opts, self.tr.cfg.objective)
        items = []
        for i, ids in enumerate(enc):
            if ids:
                items.append((job, i, ids, eo, self.width(len(ids), opts)))
            else:                                   # nothing to translate: "" (as translate_batch)
                job.results[i] = TranslationResult("", [], 0.0, 0, [] if opts.return_history else None)
        job.pending = len(items)
        with self._cv:
            if self._closing:
                raise SchedulerClosed("the server is shutting down")
            if items and self._queued + len(items) > self.max_queue:
                raise QueueFull(f"the queue is full ({self._queued} of {self.max_queue} texts waiting)")
            self.stats["requests"] += 1
            self.stats["texts"] += len(texts)
            if not items:
                fut.set_result(job.results)
                self.latencies.append(0.0)
            else:
                job.waiting.extend(items)
                self._jobs.append(job)
                self._queued += len(items)
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
            self._queued -= len(job.waiting)
            job.waiting.clear()
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
        getter = None
        try:
            while True:
                getter = asyncio.ensure_future(q.get())
                finished, _ = await asyncio.wait({getter, done}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in finished:
                    break
                i, r = getter.result()
                getter = None
                yield "draft", i, r
            while not q.empty():                      # drafts of the last passes, queued meanwhile
                i, r = q.get_nowait()
                yield "draft", i, r
            for i, r in enumerate(done.result()):
                yield "result", i, r
        finally:
            if getter is not None:       # a client that left mid-wait: no task left pending
                getter.cancel()
            if not done.done():
                done.cancel()            # also cancels fut
            if not fut.done():
                self.cancel(fut)

    def close(self, drain: bool = True, timeout: float | None = None) -> None:
        """Take no new requests; with drain, finish the queued and running ones first. With a timeout,
        whatever is not finished by then fails with SchedulerClosed (its rows are freed)."""
        with self._cv:
            self._closing = True
            if not drain:
                self._abort = SchedulerClosed("the server shut down before this request started")
            self._cv.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.abort(SchedulerClosed("the server shut down before this request finished"))
            self._thread.join()

    def abort(self, exc: BaseException) -> None:
        """Fail every queued and running job with exc at the next pass boundary, and take no new ones."""
        with self._cv:
            self._closing = True
            self._abort = exc
            self._cv.notify()

    @property
    def queue_depth(self) -> int:
        return self._queued

    @property
    def live_requests(self) -> int:
        return len(self._owner)

    @property
    def live_rows(self) -> int:
        return self._batch.live_rows

    # --- the scheduler thread ---------------------------------------------------------------------
    def _admit(self) -> list:
        """Under the lock: the queued texts that join before the next pass (the policy; by mode)."""
        if any(not j.waiting for j in self._jobs):
            self._jobs = collections.deque(j for j in self._jobs if j.waiting)
        if not self._jobs:
            return []
        room = self.max_live - len(self._owner)
        budget = self.max_positions - self._live_positions
        if self.mode == "single":
            room = 1 if not self._owner else 0
        elif self.mode == "static":
            if self._owner:                      # the running batch is closed to newcomers
                return []
            room = min(room, self.max_batch)
        alone = [j for j in self._jobs if j.alone and j.waiting]
        if alone:                                # a restart after a failed pass: one job, by itself
            if self._owner:
                return []
            jobs, share = alone[:1], self.max_positions
        else:
            jobs, share = list(self._jobs), max(1, self.max_positions // 2) if self.mode == "continuous" else budget
        take = []
        progress, reserved = True, False
        while progress and not reserved and len(take) < room:     # jobs take turns, one text each
            progress = False
            for job in jobs:
                if not job.waiting or len(take) >= room:
                    continue
                w = job.waiting[0][4]
                if w > budget or w > share:
                    # it needs room others hold (or more than one job's half: an empty batch): it reserves
                    # the room as it frees, nobody overtakes it, so it is admitted and finishes
                    if self._owner or take:
                        reserved = True
                        break
                elif job.live_positions + w > share:   # this job holds its half already: the others' turn
                    continue
                take.append(job.waiting.popleft())
                budget -= w
                job.live_positions += w
                progress = True
                if self.mode == "single":
                    break
        for job in jobs:                         # served jobs go to the back of the turn order
            if job.waiting and any(x[0] is job for x in take):
                self._jobs.remove(job)
                self._jobs.append(job)
        self._queued -= len(take)
        self._live_positions += sum(x[4] for x in take)
        return take

    def _drop(self, bid: int) -> tuple:
        """Under the lock: forget a batch row's owner (it finished, or it is cancelled)."""
        item = self._owner.pop(bid)
        item[0].live_positions -= item[4]
        self._live_positions -= item[4]
        return item

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._queued and not self._owner and not self._closing:
                    self._cv.wait()
                if self._abort is not None:
                    self._fail_all(self._abort)
                if self._closing and not self._queued and not self._owner:
                    return
                if self.mode == "static" and not self._owner and self._queued:
                    # wait for a full batch or max_wait after the oldest queued request
                    deadline = min(j.submitted for j in self._jobs if j.waiting) + self.max_wait
                    while self._queued < self.max_batch and not self._closing:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                for bid, item in list(self._owner.items()):    # clients that left: free their rows
                    if item[0].cancelled:
                        self._batch.cancel(bid)
                        self._drop(bid)
                take = [x for x in self._admit() if not x[0].cancelled]
            t0 = time.perf_counter()
            try:
                if take:
                    ids = self._batch.add([x[2] for x in take], [x[3] for x in take])
                    self._owner.update(zip(ids, take))
            except Exception as e:  # noqa: BLE001  (the newcomers failed to join; the running batch is intact)
                with self._cv:
                    self._live_positions -= sum(x[4] for x in take)
                    for x in take:
                        x[0].live_positions -= x[4]
                    self._isolate(e, take)
                continue
            if not self._owner:
                continue
            try:
                done = self._batch.step()
            except Exception as e:  # noqa: BLE001  (a failed pass: isolate it, the server stays up)
                with self._cv:
                    bids = list(self._owner)
                    items = [self._drop(bid) for bid in bids]
                    for bid in bids:
                        self._batch.cancel(bid)
                    self._isolate(e, items)
                continue
            self.stats["passes"] += 1
            self.stats["busy_seconds"] += time.perf_counter() - t0
            self._deliver(done)

    def _isolate(self, exc: BaseException, items: list) -> None:
        """Under the lock: texts whose pass (or joining) failed. With one job among them, it fails; with
        several, their texts start again, each job alone, so that only the job that fails alone fails."""
        jobs = list(dict.fromkeys(x[0] for x in items if not x[0].cancelled))
        if len(jobs) == 1 and (jobs[0].alone or not self._owner):
            _fail(jobs[0], exc)
            jobs[0].waiting.clear()
            return
        for job in jobs:
            back = [x for x in items if x[0] is job]
            job.waiting.extendleft(reversed(back))
            self._queued += len(back)
            job.alone = True
            if job not in self._jobs:
                self._jobs.appendleft(job)

    def _fail_all(self, exc: BaseException) -> None:
        """Under the lock: every queued and running job fails with exc; their rows are freed."""
        for bid in list(self._owner):
            self._batch.cancel(bid)
            _fail(self._drop(bid)[0], exc)
        for job in self._jobs:
            if job.waiting:
                _fail(job, exc)
                job.waiting.clear()
        self._jobs.clear()
        self._queued = 0

    def _result(self, tup, history: bool) -> TranslationResult:
        ids, score, passes, hist, cands = tup
        tok = self.tr.tokenizer
        with self.tr._lock:
            return TranslationResult(tok.decode(ids), tok.pieces(ids), score, passes,
                                     [tok.pieces(h) for h in hist] if history else None, cands)

    def _notify(self, job: _Job, i: int, bid: int, cur) -> None:
        """Streaming: job.on_pass(i, Draft) with the row's state after this pass (cur: its current() or,
        when it finished in this pass, its result tuple)."""
        if job.on_pass is None or job.cancelled:
            return
        try:
            snap = self._batch.snapshot(bid)
            if cur is None or snap is None:
                return
            best, cands = snap
            res, tok = self._result(cur, False), self.tr.tokenizer
            with self.tr._lock:
                views = [CandidateView(tok.pieces(ids), [round(math.exp(c), 4) for c in conf], masked, score,
                                       passes, done, pruned)
                         for ids, conf, masked, score, passes, done, pruned in cands]
            job.on_pass(i, Draft(res.text, res.tokens, res.score, res.iterations, None, res.length_candidates,
                                 views, best))
        except Exception:  # noqa: BLE001  (a broken listener must not stop the scheduler)
            job.on_pass = None

    def _deliver(self, done) -> None:
        for bid, tup in done:
            owner = self._owner.get(bid)
            if owner is not None:                # its last pass, before its result
                self._notify(owner[0], owner[1], bid, tup)
            with self._cv:
                if bid not in self._owner:       # a row nobody owns (cancelled meanwhile)
                    continue
                job, i = self._drop(bid)[:2]
            if job.cancelled or job.future.done():
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
        for bid, (job, i, *_) in list(self._owner.items()):
            if job.on_pass is not None:
                self._notify(job, i, bid, self._batch.current(bid))


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
