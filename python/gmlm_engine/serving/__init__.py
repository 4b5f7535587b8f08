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

from .loop import AsyncTranslator, CandidateView, Draft, Scheduler
from .scheduler import (DEFAULT_MAX_COST, DEFAULT_MAX_POSITIONS, MODES, QueueFull, SchedulerClosed, TooLarge, cost,
                        width)

__all__ = ["AsyncTranslator", "CandidateView", "DEFAULT_MAX_COST", "DEFAULT_MAX_POSITIONS", "Draft", "MODES",
           "QueueFull", "Scheduler", "SchedulerClosed", "TooLarge", "cost", "width"]
