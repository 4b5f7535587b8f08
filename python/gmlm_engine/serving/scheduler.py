"""The serving policy: what a request costs, which queued texts join the next pass, what happens to the texts of
a failed pass. Plain code over plain records, no engine and no thread (serving/loop.py drives it under its lock),
so every rule is testable by itself.

- A text's **width** is the room it holds in a pass, in decoder positions: its candidates (AR: hypotheses) x its
  estimated output length. A request's **cost** is its texts' widths x passes (AR: the width, hypotheses x steps).
- **Admission** ("continuous"): jobs (submit calls) take turns one text at a time; a pass holds at most
  `max_positions` and one job at most half of them. A text that needs more room than is free (or more than half)
  reserves it: nobody overtakes it, so every admitted request finishes. "static": a closed batch of up to
  `max_batch` texts; "single": one text at a time.
- **Isolation**: the texts of a pass that failed start again, each job alone, so only a job that fails alone fails.
"""
from __future__ import annotations

import collections
import concurrent.futures
import time
from dataclasses import dataclass, field
from typing import Callable

from ..config import ctc_canvas_length

MODES = ("continuous", "static", "single")

# The most work one submit() may ask for, in decoder positions (cost): what 64 texts of the longest kind
# (96 positions) cost at the defaults (T=8, K=2), with a third to spare.
DEFAULT_MAX_COST = 131072
# Decoder positions in one pass (all jobs together: each text its width); one job holds at most half.
# 64 texts of the longest kind (96) at length_beam 2.
DEFAULT_MAX_POSITIONS = 12288


class QueueFull(RuntimeError):
    """The scheduler's queue holds max_queue requests already (HTTP 503)."""


class SchedulerClosed(RuntimeError):
    """The scheduler is shutting down and takes no new requests, or stopped before finishing one (HTTP 503)."""


class TooLarge(ValueError):
    """A request's work exceeds the scheduler's max_cost (HTTP 413)."""


@dataclass(eq=False)   # compared and hashed by identity
class Job:
    """One submit() call: several texts, one future."""
    results: list
    pending: int
    future: concurrent.futures.Future
    on_pass: Callable | None
    history: bool
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    waiting: collections.deque = field(default_factory=collections.deque)   # its Items still to admit
    live_positions: int = 0        # the widths of its texts in the batch
    alone: bool = False            # restarted after a failed pass: runs with no other job

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


@dataclass(eq=False)
class Item:
    """One text of a job: its index in the job, its encoder input, the engine's options, its width."""
    job: Job
    index: int
    ids: list
    options: dict
    width: int


def width(objective: str, max_target_len: int, source_tokens: int, opts, ctc_upsample: float = 0) -> int:
    """The room one text holds in a pass, in decoder positions: its candidates (AR: hypotheses) x its output
    length. The length is not known before decoding: it is estimated as 1.5 x the source's tokens + 4 (plus
    length_offset for a GMLM), clamped to [1, max_target_len]. A GMLM pass computes that many positions; an AR
    step attends over that many cached ones. A ctc model's canvas is known (config.ctc_canvas_length)."""
    if objective == "ctc":
        return ctc_canvas_length(ctc_upsample, source_tokens, max_target_len)
    est = (3 * source_tokens) // 2 + 4
    if objective == "ar":
        return opts.beam_size * min(max_target_len, est)
    return opts.length_beam * min(max_target_len, max(1, est + opts.length_offset))


def cost(objective: str, max_target_len: int, source_tokens: int, opts, ctc_upsample: float = 0) -> int:
    """The work of one text, in decoder positions: its width x passes for a GMLM, hypotheses x steps (one position
    per hypothesis and step, the same product as its width) for an AR model."""
    return width(objective, max_target_len, source_tokens, opts, ctc_upsample) * (
        1 if objective == "ar" else opts.iterations)


class Admission:
    """The queue and the room of the running batch. Not thread-safe: its owner calls it under one lock."""

    def __init__(self, mode: str, max_positions: int, max_batch: int, max_live: int):
        self.mode, self.max_positions, self.max_batch, self.max_live = mode, max_positions, max_batch, max_live
        self.jobs: collections.deque = collections.deque()     # jobs with texts waiting, in turn order
        self.queued = 0                                        # texts waiting, all jobs
        self.live_positions = 0                                # the widths of the texts in the batch

    def enqueue(self, job: Job, items: list[Item]) -> None:
        job.waiting.extend(items)
        self.jobs.append(job)
        self.queued += len(items)

    def withdraw(self, job: Job) -> None:
        """A job's client left: its waiting texts never join."""
        self.queued -= len(job.waiting)
        job.waiting.clear()

    def admit(self, running: int) -> list[Item]:
        """The queued texts that join before the next pass, `running` texts being in the batch (by mode)."""
        if any(not j.waiting for j in self.jobs):
            self.jobs = collections.deque(j for j in self.jobs if j.waiting)
        if not self.jobs:
            return []
        room = self.max_live - running
        budget = self.max_positions - self.live_positions
        if self.mode == "single":
            room = 1 if not running else 0
        elif self.mode == "static":
            if running:                          # the running batch is closed to newcomers
                return []
            room = min(room, self.max_batch)
        alone = [j for j in self.jobs if j.alone and j.waiting]
        if alone:                                # a restart after a failed pass: one job, by itself
            if running:
                return []
            jobs, share = alone[:1], self.max_positions
        else:
            jobs, share = list(self.jobs), max(1, self.max_positions // 2) if self.mode == "continuous" else budget
        take: list[Item] = []
        progress, reserved = True, False
        while progress and not reserved and len(take) < room:     # jobs take turns, one text each
            progress = False
            for job in jobs:
                if not job.waiting or len(take) >= room:
                    continue
                w = job.waiting[0].width
                if w > budget or w > share:
                    # it needs room others hold (or more than one job's half: an empty batch): it reserves
                    # the room as it frees, nobody overtakes it, so it is admitted and finishes
                    if running or take:
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
            if job.waiting and any(x.job is job for x in take):
                self.jobs.remove(job)
                self.jobs.append(job)
        self.queued -= len(take)
        self.live_positions += sum(x.width for x in take)
        return take

    def release(self, item: Item) -> None:
        """A text left the batch (finished, cancelled, or it failed to join)."""
        item.job.live_positions -= item.width
        self.live_positions -= item.width

    def isolate(self, exc: BaseException, items: list[Item], running: int) -> None:
        """The texts of a failed pass (or join), already released. With one job among them, it fails (alone, or
        with nothing else running); with several, their texts start again, each job alone, so that only the job
        that fails alone fails."""
        jobs = list(dict.fromkeys(x.job for x in items if not x.job.cancelled))
        if len(jobs) == 1 and (jobs[0].alone or not running):
            jobs[0].fail(exc)
            jobs[0].waiting.clear()
            return
        for job in jobs:
            back = [x for x in items if x.job is job]
            job.waiting.extendleft(reversed(back))
            self.queued += len(back)
            job.alone = True
            if job not in self.jobs:
                self.jobs.appendleft(job)

    def fail_waiting(self, exc: BaseException) -> None:
        """Every queued job fails with exc."""
        for job in self.jobs:
            if job.waiting:
                job.fail(exc)
                job.waiting.clear()
        self.jobs.clear()
        self.queued = 0

    def oldest_waiting(self) -> float:
        return min(j.submitted for j in self.jobs if j.waiting)
