"""The serving loop: one thread that owns a Translator's resumable batch (`_core.Batch`), admits queued texts
before every pass (serving/scheduler.py decides which), runs the pass, delivers results and drafts, and keeps a
failed pass to the jobs in it. `AsyncTranslator` is its asyncio face."""
from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import math
import threading
import time
from dataclasses import dataclass, field

from ..common import TranslationResult, check_finite_scores, check_sources
from ..engine import Translator, engine_options
from .scheduler import (DEFAULT_MAX_COST, DEFAULT_MAX_POSITIONS, MODES, Admission, Item, Job, QueueFull,
                        SchedulerClosed, TooLarge, cost, width)


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


class Scheduler:
    """One thread that owns a Translator's resumable batch and runs it pass by pass; submit() from any thread
    (serving/__init__.py says what it guarantees; serving/scheduler.py holds the policy it follows)."""

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
        self.policy = Admission(mode, max_positions, max_batch, max_live)   # under _cv
        self._owner: dict[int, Item] = {}                       # batch id -> the text in that row
        self._cv = threading.Condition()
        self._closing = False
        self._abort: BaseException | None = None
        self.stats = {"passes": 0, "requests": 0, "texts": 0, "busy_seconds": 0.0}
        self.latencies: collections.deque = collections.deque(maxlen=100_000)   # seconds per finished job
        self._thread = threading.Thread(target=self._loop, name="gmlm-scheduler", daemon=True)
        self._thread.start()

    # --- the callers' side ------------------------------------------------------------------------
    def width(self, source_tokens: int, opts) -> int:
        """The room one text holds in a pass (scheduler.width, for this model)."""
        return width(self.tr.cfg.objective, self.tr.cfg.max_target_len, source_tokens, opts, self.tr.cfg.ctc_upsample)

    def cost(self, source_tokens: int, opts) -> int:
        """The work of one text (scheduler.cost, for this model)."""
        return cost(self.tr.cfg.objective, self.tr.cfg.max_target_len, source_tokens, opts, self.tr.cfg.ctc_upsample)

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
        enc = self.tr.encode(texts)
        total = sum(self.cost(len(ids), opts) for ids in enc if ids)
        if total > self.max_cost:
            what = f"beam_size {k}" if ar else f"length_beam {k} x iterations {opts.iterations}"
            raise TooLarge(f"the request asks for {len(texts)} texts x {what} = {total} decoder positions (estimated "
                           f"from the texts' lengths); at most {self.max_cost} per request")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        job = Job([None] * len(texts), 0, fut, on_pass, opts.return_history)
        eo = engine_options(opts, self.tr.cfg.objective)
        items = []
        for i, ids in enumerate(enc):
            if ids:
                items.append(Item(job, i, ids, eo, self.width(len(ids), opts)))
            else:                                   # nothing to translate: "" (as translate_batch)
                job.results[i] = TranslationResult("", [], 0.0, 0, [] if opts.return_history else None)
        job.pending = len(items)
        with self._cv:
            if self._closing:
                raise SchedulerClosed("the server is shutting down")
            if items and self.policy.queued + len(items) > self.max_queue:
                raise QueueFull(f"the queue is full ({self.policy.queued} of {self.max_queue} texts waiting)")
            self.stats["requests"] += 1
            self.stats["texts"] += len(texts)
            if not items:
                fut.set_result(job.results)
                self.latencies.append(0.0)
            else:
                self.policy.enqueue(job, items)
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
            self.policy.withdraw(job)
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
        return self.policy.queued

    @property
    def live_requests(self) -> int:
        return len(self._owner)

    @property
    def live_rows(self) -> int:
        return self._batch.live_rows

    # --- the scheduler thread ---------------------------------------------------------------------
    def _drop(self, bid: int) -> Item:
        """Under the lock: forget a batch row's owner (it finished, or it is cancelled)."""
        item = self._owner.pop(bid)
        self.policy.release(item)
        return item

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self.policy.queued and not self._owner and not self._closing:
                    self._cv.wait()
                if self._abort is not None:
                    self._fail_all(self._abort)
                if self._closing and not self.policy.queued and not self._owner:
                    return
                if self.mode == "static" and not self._owner and self.policy.queued:
                    # wait for a full batch or max_wait after the oldest queued request
                    deadline = self.policy.oldest_waiting() + self.max_wait
                    while self.policy.queued < self.max_batch and not self._closing:
                        left = deadline - time.perf_counter()
                        if left <= 0:
                            break
                        self._cv.wait(left)
                for bid, item in list(self._owner.items()):    # clients that left: free their rows
                    if item.job.cancelled:
                        self._batch.cancel(bid)
                        self._drop(bid)
                take = [x for x in self.policy.admit(len(self._owner)) if not x.job.cancelled]
            t0 = time.perf_counter()
            try:
                if take:
                    ids = self._batch.add([x.ids for x in take], [x.options for x in take])
                    self._owner.update(zip(ids, take))
            except Exception as e:  # noqa: BLE001  (the newcomers failed to join; the running batch is intact)
                with self._cv:
                    for x in take:
                        self.policy.release(x)
                    self.policy.isolate(e, take, len(self._owner))
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
                    self.policy.isolate(e, items, len(self._owner))
                continue
            self.stats["passes"] += 1
            self.stats["busy_seconds"] += time.perf_counter() - t0
            self._deliver(done)

    def _fail_all(self, exc: BaseException) -> None:
        """Under the lock: every queued and running job fails with exc; their rows are freed."""
        for bid in list(self._owner):
            self._batch.cancel(bid)
            self._drop(bid).job.fail(exc)
        self.policy.fail_waiting(exc)

    def _notify(self, job: Job, i: int, bid: int, cur) -> None:
        """Streaming: job.on_pass(i, Draft) with the row's state after this pass (cur: its current() or,
        when it finished in this pass, its result tuple)."""
        if job.on_pass is None or job.cancelled:
            return
        try:
            snap = self._batch.snapshot(bid)
            if cur is None or snap is None:
                return
            best, cands = snap
            res = self.tr.make_result(cur, False)
            views = [CandidateView(self.tr.pieces(ids), [round(math.exp(c), 4) for c in conf], masked, score,
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
                self._notify(owner.job, owner.index, bid, tup)
            with self._cv:
                if bid not in self._owner:       # a row nobody owns (cancelled meanwhile)
                    continue
                item = self._drop(bid)
                job, i = item.job, item.index
            if job.cancelled or job.future.done():
                continue
            job.results[i] = self.tr.make_result(tup, job.history)
            job.pending -= 1
            if job.pending == 0 and not job.future.done():
                try:
                    check_finite_scores(job.results, self.tr.model_name)
                except Exception as e:  # noqa: BLE001
                    job.future.set_exception(e)
                else:
                    job.future.set_result(job.results)
                self.latencies.append(time.perf_counter() - job.submitted)
        for bid, item in list(self._owner.items()):
            if item.job.on_pass is not None:
                self._notify(item.job, item.index, bid, self._batch.current(bid))


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
