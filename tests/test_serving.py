"""Continuous batching: the resumable batch (_core.Batch) under random join orders and mixed options,
the Scheduler from many threads, AsyncTranslator, and `gmlm serve` as a real uvicorn server on
loopback (outputs, streaming, bad requests, limits, disconnects, SIGTERM)."""
from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

core = pytest.importorskip("gmlm_engine._core")

from gmlm_engine.common import encode_sources  # noqa: E402
from gmlm_engine.options import validate_options  # noqa: E402
from gmlm_engine.engine import Translator, engine_options  # noqa: E402
from gmlm_engine.serving import AsyncTranslator, QueueFull, Scheduler  # noqa: E402

from conftest import TINY_GMLM  # noqa: E402
from test_engine_common import test_sentences  # noqa: E402

OPTION_SETS = [dict(iterations=4, length_beam=3), dict(iterations=1, length_beam=1),
               dict(iterations=10, length_beam=5, length_beam_keep=2), dict(iterations=3, length_beam=2, sampling=True, seed=4),
               dict(iterations=6, length_beam=3, remask="threshold", threshold=0.6, stutter_remask=False),
               dict(iterations=4, length_beam=4, init="random", seed=9, return_history=True),
               dict(iterations=5, length_beam=3, repeat_remask=True), dict(iterations=6, length_beam=2, cache_refresh=0)]


@pytest.fixture(scope="module")
def tr():
    return Translator(TINY_GMLM, intra_threads=2)


@pytest.fixture(scope="module")
def sentences():
    return test_sentences(48)


def outcome(r):
    return (r.text, tuple(r.tokens), r.iterations, tuple(r.length_candidates), r.history)


def test_a_request_without_options_decodes_at_translate_batchs_defaults(tr, sentences):
    """The engine's own defaults (RefineOptions, for option dicts without a key) are the Python API's."""
    b = core.Batch(tr._engine)
    ids = b.add(encode_sources(tr.tokenizer, tr.cfg, sentences[:6]), [{}] * 6)
    got = {}
    while b.requests:
        got.update(dict(b.step()))
    want = tr.translate_batch(sentences[:6])
    assert [tr.tokenizer.pieces(got[i][0]) for i in ids] == [w.tokens for w in want]
    assert [got[i][4] for i in ids] == [w.length_candidates for w in want]


def check_random_arrivals(tr, jobs, rng, batch=None):
    """Random arrival schedules of (sentence, options) jobs into one resumable batch: every result equals
    translate_batch's for that sentence alone, tokens, passes, length candidates and history; scores to 1e-5."""
    objective = tr.cfg.objective
    expected = [tr.translate_batch([s], **o)[0] for s, o in jobs]
    order = list(range(len(jobs)))
    rng.shuffle(order)
    batch, owner, got = batch or core.Batch(tr._engine), {}, {}
    while order or batch.requests:
        if order and rng.random() < 0.6:                            # some join now, at a pass boundary
            n = rng.randint(1, 6)
            take, order = order[:n], order[n:]
            opts = [validate_options(objective, tr.cfg.max_target_len, **jobs[j][1]) for j in take]
            ids = batch.add(encode_sources(tr.tokenizer, tr.cfg, [jobs[j][0] for j in take]),
                            [engine_options(o, objective) for o in opts])
            owner.update(zip(ids, take))
        for bid, res in batch.step():
            got[owner[bid]] = res
    for j, e in enumerate(expected):
        ids, score, passes, hist, cands = got[j]
        assert tr.tokenizer.decode(ids) == e.text and passes == e.iterations and list(cands) == e.length_candidates
        assert abs(score - e.score) <= 1e-5
        if e.history is not None:
            assert [tr.tokenizer.pieces(h) for h in hist] == e.history


@pytest.mark.parametrize("seed", range(6))
def test_batch_results_do_not_depend_on_who_joined_when(tr, sentences, seed):
    rng = random.Random(seed)
    check_random_arrivals(tr, [(s, OPTION_SETS[rng.randrange(len(OPTION_SETS))]) for s in sentences], rng)


def test_a_ctc_model_joins_and_leaves_the_batch_like_a_gmlm(sentences):
    """ctc models in the resumable batch: an option dict without keys decodes at the ctc defaults (one pass), and
    random arrivals with mixed options give translate_batch's results."""
    from conftest import TINY_CTC
    from option_sets import CTC_OPTION_SETS

    ctc = Translator(TINY_CTC, intra_threads=2)
    batch = core.Batch(ctc._engine)
    ids = batch.add(encode_sources(ctc.tokenizer, ctc.cfg, sentences[:2]), [{}, {}])
    done = {}
    while batch.requests:
        done.update(dict(batch.step()))
    assert [done[i][2] for i in ids] == [1, 1]
    assert [ctc.tokenizer.pieces(done[i][0]) for i in ids] == [r.tokens for r in ctc.translate_batch(sentences[:2])]
    rng = random.Random(0)
    check_random_arrivals(ctc, [(s, CTC_OPTION_SETS[rng.randrange(len(CTC_OPTION_SETS))]) for s in sentences[:24]],
                          rng, batch)


def test_an_empty_batch_gives_its_memory_back(sentences):
    """A server keeps one batch for its lifetime: once its requests are done (or cancelled), the key/value
    caches, encoder rows and activation buffers that a big request needed are released (they used to stay
    at the high-water mark: 600 MB held idle after three large requests)."""
    ar = Translator("models/ar-en-de", intra_threads=1, compute_type="float32")
    for cancel in (False, True):
        batch = ar.new_batch()
        assert batch.memory_bytes < 32 << 20
        ids = batch.add(encode_sources(ar.tokenizer, ar.cfg, sentences[:8]), [dict(beam_size=64)] * 8)
        peak = 0
        for _ in range(3):
            batch.step()
            peak = max(peak, batch.memory_bytes)
        if cancel:
            for i in ids:
                batch.cancel(i)
        while batch.requests:
            batch.step()
            peak = max(peak, batch.memory_bytes)
        assert peak > 200 << 20                       # 8 x 128 hypotheses' caches, logits and activations
        assert batch.memory_bytes < 32 << 20, batch.memory_bytes


def test_batch_cancel_and_current(tr, sentences):
    batch = core.Batch(tr._engine)
    ids = batch.add(encode_sources(tr.tokenizer, tr.cfg, sentences[:3]), [dict(iterations=10, length_beam=3)] * 3)
    assert batch.current(ids[0]) is None                            # no pass yet
    batch.step()
    draft = batch.current(ids[0])
    assert draft is not None and draft[2] == 1 and len(draft[0]) >= 1
    assert batch.cancel(ids[1]) and not batch.cancel(ids[1]) and not batch.cancel(12345)
    done = {}
    while batch.requests:
        done.update(dict(batch.step()))
    assert set(done) == {ids[0], ids[2]}                            # the cancelled one never comes back
    # keys the dict leaves out take the Translator's defaults (length_offset among them)
    exp = tr.translate_batch([sentences[0], sentences[2]], iterations=10, length_beam=3)
    assert [tr.tokenizer.decode(done[i][0]) for i in (ids[0], ids[2])] == [r.text for r in exp]
    with pytest.raises(ValueError, match="unknown option"):
        batch.add(encode_sources(tr.tokenizer, tr.cfg, sentences[:1]), [dict(iteration=3)])
    with pytest.raises(ValueError, match="length_beam_keep"):
        batch.add(encode_sources(tr.tokenizer, tr.cfg, sentences[:1]), [dict(length_beam=2, length_beam_keep=3)])


@pytest.mark.parametrize("mode", ["continuous", "static", "single"])
def test_scheduler_from_many_threads(tr, sentences, mode):
    sched = Scheduler(tr, mode=mode, max_batch=8, max_wait_ms=5)
    expected = {}
    results, errors = {}, []

    def client(c):
        try:
            for j in range(c, len(sentences), 6):
                o = OPTION_SETS[j % len(OPTION_SETS)]
                results[j] = sched.submit([sentences[j], ""], **o).result(timeout=60)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=client, args=(c,)) for c in range(6)]
    for t in threads:
        t.start()
    for j, s in enumerate(sentences):
        expected[j] = tr.translate_batch([s, ""], **OPTION_SETS[j % len(OPTION_SETS)])
    for t in threads:
        t.join()
    sched.close()
    assert not errors
    for j in expected:
        assert [outcome(r) for r in results[j]] == [outcome(r) for r in expected[j]]
    assert sched.stats["passes"] > 0 and sched.queue_depth == 0 and sched.live_requests == 0


def test_scheduler_validation_queue_and_close(tr):
    with pytest.raises(ValueError, match="mode"):
        Scheduler(tr, mode="eager")
    sched = Scheduler(tr, max_queue=2)
    with pytest.raises(ValueError, match="iterations"):
        sched.submit(["A dog."], iterations=0)
    with pytest.raises(ValueError, match="source\\[1\\]"):
        sched.submit(["A dog.", "x \ud800"])
    with pytest.raises(ValueError, match="single string"):
        sched.submit("A dog.")
    with pytest.raises(QueueFull):
        sched.submit(["a", "b", "c"])
    fut = sched.submit(["A man rides a bike."], iterations=10)
    sched.close(drain=True)                                       # in-flight work finishes
    assert fut.result(timeout=1)[0].text
    with pytest.raises(RuntimeError, match="shutting down"):
        sched.submit(["A dog."])


def test_async_translator_from_many_coroutines(sentences):
    atr = AsyncTranslator(TINY_GMLM, intra_threads=2)
    ref = Translator(TINY_GMLM, intra_threads=1)

    async def go():
        one = await atr.translate(sentences[0], iterations=3)
        many = await asyncio.gather(*(atr.translate(s, iterations=3) for s in sentences))
        lists = await atr.translate(sentences[:5], iterations=3)
        drafts = [x async for x in atr.stream(sentences[:2], iterations=4)]
        return one, many, lists, drafts

    one, many, lists, drafts = asyncio.run(go())
    atr.close()
    exp = ref.translate_batch(sentences, iterations=3)
    assert one.text == exp[0].text and [r.text for r in many] == [r.text for r in exp]
    assert [r.text for r in lists] == [r.text for r in exp[:5]]
    kinds = [k for k, _, _ in drafts]
    assert kinds.count("result") == 2 and kinds[-2:] == ["result", "result"] and "draft" in kinds
    assert [r.text for k, _, r in drafts if k == "result"] == [r.text for r in ref.translate_batch(sentences[:2],
                                                                                                     iterations=4)]


# --- gmlm serve: a real server on loopback --------------------------------------------------------
httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(*extra, preexec_fn=None):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gmlm_engine.tools.cli", "serve", "--model", str(TINY_GMLM), "--port",
                             str(port), "--threads", "2", "--log-level", "warning", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
        if proc.poll() is not None:
            raise RuntimeError(proc.stderr.read())
    proc.kill()
    raise RuntimeError("the server did not start")


@pytest.fixture(scope="module")
def server():
    proc, url = _start("--max-texts", "8", "--max-chars", "300", "--header-timeout", "2", "--max-cost", "5000000")
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)


def test_served_outputs_equal_translate_batch(server, tr, sentences):
    exp = tr.translate_batch(sentences[:8], iterations=4, length_beam=3)
    r = httpx.post(server + "/v1/translate", json={"text": sentences[:8], "iterations": 4, "length_beam": 3}, timeout=60)
    assert r.status_code == 200
    got = r.json()["translations"]
    assert [g["text"] for g in got] == [e.text for e in exp] and [g["iterations"] for g in got] == [e.iterations for e in exp]
    assert [g["tokens"] for g in got] == [e.tokens for e in exp]

    def one(j):   # concurrent clients, each its own options
        o = dict(iterations=1 + j % 5, length_beam=1 + j % 3)
        return j, o, httpx.post(server + "/v1/translate", json={"text": [sentences[j]], **o}, timeout=60).json()

    with __import__("concurrent.futures").futures.ThreadPoolExecutor(8) as ex:
        for j, o, body in ex.map(one, range(24)):
            assert body["translations"][0]["text"] == tr.translate_batch([sentences[j]], **o)[0].text


@pytest.mark.parametrize("body,status,match", [
    ({"text": ["A dog."], "iterations": 0}, 422, "iterations"),
    ({"text": ["A dog."], "iteration": 3}, 422, "iteration"),
    ({"text": ["A dog."], "iterations": "4"}, 422, "iterations"),
    ({"text": "A dog."}, 422, "text"),
    ({"text": ["A dog.", 3]}, 422, "text"),
    ({"text": ["A dog."], "remask": "threshold"}, 422, "threshold"),
    ({"text": ["A dog."], "model": "ar"}, 422, "model 'ar' is not served here"),
    ({"text": ["A dog."], "model": "t5"}, 422, "model"),
    ({"text": ["x \ud800"]}, 422, "text\\[0\\]"),
    ({"text": ["a"] * 9}, 413, "at most 8"),
    ({"text": ["a" * 301]}, 413, "text\\[0\\]"),
])
def test_bad_requests_get_their_status_and_the_server_keeps_serving(server, body, status, match):
    r = httpx.post(server + "/v1/translate", content=json.dumps(body), headers={"content-type": "application/json"},
                   timeout=30)
    assert r.status_code == status and __import__("re").search(match, r.json()["error"]), r.text
    assert httpx.post(server + "/v1/translate", json={"text": ["A dog."]}, timeout=30).status_code == 200


def test_malformed_json(server):
    r = httpx.post(server + "/v1/translate", content=b"{bad", headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 422 and "error" in r.json()


def test_stream_health_metrics_openapi(server, tr, sentences):
    events = []
    with httpx.stream("POST", server + "/v1/translate/stream", json={"text": sentences[:2], "iterations": 5},
                      timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "done" and kinds.count("result") == 2 and "draft" in kinds
    drafts0 = [d["iterations"] for k, d in events if k == "draft" and d["index"] == 0]
    assert drafts0 == sorted(drafts0) and drafts0[0] == 1           # a draft after every pass
    exp = tr.translate_batch(sentences[:2], iterations=5)
    assert [d["text"] for k, d in events if k == "result"] == [e.text for e in exp]
    for i in range(2):      # every candidate after every pass: pieces, confidences, masks by the linear schedule
        drafts = [d for k, d in events if k == "draft" and d["index"] == i]
        result = next(d for k, d in events if k == "result" and d["index"] == i)
        assert drafts[-1]["text"] == result["text"] and drafts[-1]["iterations"] == result["iterations"]
        assert len(drafts) == max(c["passes"] for c in drafts[-1]["candidates"])     # the last pass included
        for t, d in enumerate(drafts):
            assert len(d["candidates"]) == 2 and 0 <= d["best"] < 2
            for c in d["candidates"]:
                n = len(c["pieces"])
                assert len(c["confidences"]) == len(c["masked"]) == n and all(0 <= p <= 1 for p in c["confidences"])
                if c["done"]:
                    assert not any(c["masked"])
                else:
                    assert c["passes"] == t + 1 and sum(c["masked"]) >= n * (5 - 1 - t) // 5
    models = httpx.get(server + "/v1/models").json()
    assert models["default"] == "gmlm" and [m["objective"] for m in models["models"]] == ["gmlm"]
    assert models["models"][0]["defaults"]["iterations"] == 8 and models["max_texts"] == 8
    h = httpx.get(server + "/health").json()
    assert h["status"] == "ok" and h["mode"] == "continuous"
    # a model's name, never the server's file system (the install path)
    assert "/" not in h["model"] and all("/" not in json.dumps(m) for m in models["models"]), (h, models)
    m = httpx.get(server + "/metrics").text
    for name in ("gmlm_queue_depth", "gmlm_live_rows", "gmlm_passes_total", "gmlm_request_latency_seconds_bucket"):
        assert name in m
    schema = httpx.get(server + "/openapi.json").json()
    assert "/v1/translate" in schema["paths"] and "/v1/translate/stream" in schema["paths"]


def test_a_client_that_disconnects_frees_its_rows(server, sentences):
    drafts = 0
    with httpx.stream("POST", server + "/v1/translate/stream",
                      json={"text": sentences[:8], "iterations": 1000, "length_beam": 5}, timeout=60) as r:
        assert r.status_code == 200
        for line in r.iter_lines():
            if line.startswith("data: "):
                drafts += 1
                break                                               # leave after the first draft
    assert drafts == 1
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and httpx.get(server + "/health").json()["live_requests"]:
        time.sleep(0.1)
    assert httpx.get(server + "/health").json()["live_requests"] == 0


def test_sigterm_finishes_in_flight_requests_and_exits_0(sentences):
    proc, url = _start("--max-cost", "10000000")
    out = {}

    def slow():
        out["r"] = httpx.post(url + "/v1/translate", json={"text": sentences[:16], "iterations": 300, "length_beam": 5},
                              timeout=60)

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not httpx.get(url + "/health").json()["live_requests"]:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert proc.wait(60) == 0
    assert out["r"].status_code == 200 and len(out["r"].json()["translations"]) == 16
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/health", timeout=2)


def test_schemathesis_against_the_served_schema(server):
    """A bounded property-based run over every operation of /openapi.json: whatever the generated
    request, the server answers (no 5xx), with JSON errors for the rejected ones, every response
    conforms to the schema (status code, content type, body), and it keeps serving. 25 cases per operation;
    GMLM_FUZZ_EXAMPLES=N runs N (the long run: docs/serving.md)."""
    schemathesis = pytest.importorskip("schemathesis")
    from hypothesis import HealthCheck, given, settings

    from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                                   status_code_conformance)

    schema = schemathesis.openapi.from_url(server + "/openapi.json")
    ran = 0
    for result in schema.get_all_operations():
        op = result.ok()

        @settings(max_examples=int(os.environ.get("GMLM_FUZZ_EXAMPLES", "25")), deadline=None, derandomize=True,
                  database=None,
                  suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def check(case):
            r = case.call(base_url=server, timeout=60)
            assert r.status_code < 500, (case.method, case.path, case.body, r.text[:200])
            if r.status_code >= 400:
                assert "error" in r.json()
            # the response is what the schema says: a declared status, its content type, its body
            case.validate_response(r, checks=[status_code_conformance, content_type_conformance,
                                              response_schema_conformance])

        check()
        ran += 1
    assert ran >= 4                                                 # translate, stream, health, metrics
    assert httpx.post(server + "/v1/translate", json={"text": ["A dog."]}, timeout=30).status_code == 200


# --- one request cannot monopolise the server, nor take others down with it -----------------
def test_cost_limit_and_fair_admission(tr, sentences):
    """A request over max_cost is refused (TooLarge, a ValueError); a big one within it holds at most
    half the pass, so a small request submitted after it joins at once and finishes in its own T passes."""
    from gmlm_engine.serving import TooLarge

    sched = Scheduler(tr, max_positions=2000, max_cost=200000)
    try:
        with pytest.raises(TooLarge, match="at most 200000"):
            sched.submit(sentences[:16], length_beam=40, iterations=100)
        big = sched.submit(sentences[:40], length_beam=8, iterations=10)      # 320 candidates, 3200 passes
        peak = []
        while not sched.live_requests:
            time.sleep(0.001)
        with sched._cv:            # no admission between reading the count and queueing (a pass may be running)
            before = sched.stats["passes"]
            small = sched.submit(["A dog runs."], length_beam=2, iterations=4)
        at_end = []
        small.add_done_callback(lambda f: at_end.append(sched.stats["passes"]))   # on the scheduler thread
        while not small.done():
            peak.append(sched.policy.live_positions)
            time.sleep(0.0005)
        passes = at_end[0] - before
        assert small.result()[0].text == tr.translate_batch(["A dog runs."], length_beam=2, iterations=4)[0].text
        assert passes <= 4 + 1, passes                     # joined at the next pass boundary
        assert max(peak) <= 2000
        assert [r.text for r in big.result(120)] == [r.text for r in tr.translate_batch(sentences[:40], length_beam=8,
                                                                                       iterations=10)]
    finally:
        sched.close()


def test_cost_counts_positions_not_candidates(tr):
    """The cost is in decoder positions: the same texts and passes cost more with a large length_offset or
    longer texts (they compute more positions), and an AR request's cost grows with its output length."""
    from gmlm_engine.serving import TooLarge

    sched = Scheduler(tr, max_cost=60000)
    try:
        o = lambda **k: validate_options("gmlm", tr.cfg.max_target_len, **k)  # noqa: E731
        assert sched.cost(10, o(length_offset=40)) > 2 * sched.cost(10, o())
        assert sched.cost(40, o()) > 2 * sched.cost(10, o())
        assert sched.cost(10, o(iterations=4, length_beam=3)) == 3 * 4 * sched.cost(10, o(iterations=1, length_beam=1))
        # a pass's room (admission) is counted the same way: candidates x positions, not candidates
        assert sched.width(10, o(length_offset=40)) > 2 * sched.width(10, o())
        assert sched.width(10, o(iterations=4, length_beam=3)) == 3 * sched.width(10, o(iterations=9, length_beam=1))
        short = ["A dog."] * 64
        sched.submit(short, iterations=8, length_beam=2).result(120)          # 64 short texts at the defaults
        with pytest.raises(TooLarge, match="decoder positions"):             # the same, each candidate 96 long
            sched.submit(short, iterations=32, length_beam=2, length_offset=tr.cfg.max_target_len - 1)
    finally:
        sched.close()


def test_a_large_request_is_not_starved_by_small_ones():
    """A request whose hypotheses need more than half of max_positions (or more than is free) reserves
    the room: with two threads keeping small requests in flight, it still finishes (it used to wait
    forever, admitted only into an empty batch that never came)."""
    from conftest import TINY_AR

    ar = Translator(TINY_AR, intra_threads=1, compute_type="float32")
    probe = Scheduler(ar)
    one = probe.width(len(ar.tokenizer.encode(["A man rides a bike."])[0]), ar.validate_options())
    probe.close()
    sched = Scheduler(ar, max_positions=8 * one)    # beam 6: 6 x one, more than half
    stop = threading.Event()
    served = []

    def traffic():
        while not stop.is_set():
            futs = [sched.submit(["A man rides a bike."]) for _ in range(4)]
            served.extend(f.result(60) for f in futs)

    threads = [threading.Thread(target=traffic) for _ in range(2)]
    try:
        for t in threads:
            t.start()
        while len(served) < 20:
            time.sleep(0.01)
        big = sched.submit(["A man rides a bike."], beam_size=6)
        assert big.result(timeout=30)[0].text == ar.translate_batch(["A man rides a bike."], beam_size=6)[0].text
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        sched.close()


class _PoisonBatch:
    """A _core.Batch whose passes fail (as out of memory would) while a request with length_beam 7 is live."""

    def __init__(self, batch):
        self.batch, self.poison = batch, set()

    def add(self, sources, options):
        ids = self.batch.add(sources, options)
        self.poison.update(i for i, o in zip(ids, options) if o["length_beam"] == 7)
        return ids

    def step(self):
        if self.poison:
            raise MemoryError("std::bad_alloc")
        return self.batch.step()

    def cancel(self, bid):
        self.poison.discard(bid)
        return self.batch.cancel(bid)

    def __getattr__(self, name):
        return getattr(self.batch, name)


def test_one_request_failure_does_not_spread(tr, sentences):
    sched = Scheduler(tr)
    sched._batch = _PoisonBatch(sched._batch)
    try:
        with sched._cv:                  # all join the same pass
            good = [sched.submit([s], iterations=3) for s in sentences[:4]]
            bad = sched.submit(sentences[4:6], iterations=3, length_beam=7)
        for f, s in zip(good, sentences[:4]):
            assert f.result(60)[0].text == tr.translate_batch([s], iterations=3)[0].text
        with pytest.raises(MemoryError):
            bad.result(60)
        assert sched.submit(["A dog."], iterations=2).result(60)[0].text     # and it keeps serving
    finally:
        sched.close()


def test_body_limits_and_error_format(server):
    big = b'{"text": ["' + b"a" * 3_000_000 + b'"]}'
    r = httpx.post(server + "/v1/translate", content=big, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "exceeds" in r.json()["error"]

    def chunks():                                         # no Content-Length: counted as it streams in
        for _ in range(100):
            yield b"a" * 100_000
    r = httpx.post(server + "/v1/translate", content=chunks(), headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 413 and "exceeds" in r.json()["error"]
    r = httpx.post(server + "/v1/translate", json={"text": ["A dog."] * 8, "length_beam": 40, "iterations": 1000,
                                                   "length_offset": 40}, timeout=30)
    assert r.status_code == 413 and "decoder positions" in r.json()["error"]
    for body, ctype in ((b'{"text": ["\xff\xfe"]}', "application/json"),
                        ('{"text": ["Caf\u00e9"]}'.encode("latin-1"), "application/json; charset=latin-1"),
                        (b'{"text": ["A"], "seed": ' + b"9" * 4301 + b"}", "application/json"),
                        (b"[" * 5000 + b"]" * 5000, "application/json"), (b"", "application/json"),
                        # UTF-16 / UTF-32 (json.loads would guess them), a charset other than UTF-8 even for
                        # ASCII bytes, and a key given twice (the last one used to win silently)
                        ('{"text": ["A dog."]}'.encode("utf-16"), "application/json"),
                        ('{"text": ["A dog."]}'.encode("utf-16-le"), "application/json"),
                        ('{"text": ["A dog."]}'.encode("utf-32"), "application/json"),
                        (b'{"text": ["A dog."]}', "application/json; charset=latin-1"),
                        (b'{"text": ["A dog."], "iterations": 2, "iterations": 3}', "application/json"),
                        (b'{"text": ["A dog."], "x": {"a": 1, "a": 2}}', "application/json")):
        r = httpx.post(server + "/v1/translate", content=body, headers={"content-type": ctype}, timeout=30)
        assert r.status_code == 422 and r.headers["content-type"] == "application/json", (body[:30], r.text[:200])
        assert set(r.json()) == {"error"}
    assert "body" in httpx.post(server + "/v1/translate", content=b"", timeout=30).json()["error"]
    ok = httpx.post(server + "/v1/translate", content=b'{"text": ["A dog."]}',
                    headers={"content-type": "application/json; charset=UTF-8"}, timeout=30)
    assert ok.status_code == 200 and ok.json()["translations"][0]["text"]
    assert httpx.post(server + "/v1/translate", json={}, timeout=30).json()["error"].startswith("text:")
    api = httpx.get(server + "/openapi.json").json()
    t = api["paths"]["/v1/translate"]["post"]["responses"]
    assert {"200", "413", "422", "499", "500", "503"} <= set(t)
    assert t["422"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorResponse")
    s = api["paths"]["/v1/translate/stream"]["post"]["responses"]
    assert list(s["200"]["content"]) == ["text/event-stream"]


def test_stalled_bodies_time_out_and_cannot_exhaust_the_descriptors():
    """Sockets that send a complete request head and the first byte of a 4000-byte body, then nothing: each
    gets a JSON 408 after --body-timeout and is closed. 300 of them at once against a server allowed 256
    open files: it keeps answering (503 beyond its connection cap, never 'Too many open files')."""
    import resource

    def few_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    proc, url = _start("--body-timeout", "1", "--header-timeout", "2", preexec_fn=few_files)
    host, port = url.removeprefix("http://").split(":")
    head = (b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 4000\r\n\r\n{")
    socks = []
    try:
        t0 = time.monotonic()
        with socket.create_connection((host, int(port)), timeout=15) as c:
            c.sendall(head)
            reply = b""
            while True:                                  # the server closes the connection after its 408
                chunk = c.recv(4000)
                if not chunk:
                    break
                reply += chunk
            assert reply.startswith(b"HTTP/1.1 408") and b"stalled" in reply and time.monotonic() - t0 < 6, reply
        for _ in range(300):
            s = socket.create_connection((host, int(port)), timeout=15)
            s.sendall(head)
            socks.append(s)
        time.sleep(0.5)
        assert httpx.get(url + "/health", timeout=10).status_code in (200, 503)   # answered, not hung
        time.sleep(3)                                                             # past --body-timeout
        assert httpx.get(url + "/health", timeout=10).status_code == 200
        r = httpx.post(url + "/v1/translate", json={"text": ["A dog."], "iterations": 2}, timeout=30)
        assert r.status_code == 200
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    err = proc.stderr.read()
    assert "Too many open files" not in err, err[-2000:]


def test_sigterm_past_the_grace_period_answers_503(sentences):
    proc, url = _start("--max-cost", "1000000000", "--shutdown-grace", "1")
    out = {}

    def slow():
        out["r"] = httpx.post(url + "/v1/translate", json={"text": sentences[:16], "iterations": 1000,
                                                           "length_beam": 20}, timeout=120)

    t = threading.Thread(target=slow)
    t.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not httpx.get(url + "/health").json()["live_requests"]:
        time.sleep(0.02)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert proc.wait(60) == 0
    assert out["r"].status_code == 503 and "grace period" in out["r"].json()["error"]
    assert time.monotonic() - t0 < 20
    err = proc.stderr.read()
    assert "Traceback" not in err and "CancelledError" not in err


def test_half_open_connections_are_closed(server):
    """A connection that never completes its request head (nothing sent, or a header a byte at a
    time) is closed after --header-timeout (2 s here), not held forever."""
    host, port = server.removeprefix("http://").split(":")
    for first in (b"", b"POST /v1/translate HTTP/1.1\r\nHost: x\r\n"):
        with socket.create_connection((host, int(port)), timeout=15) as c:
            t0 = time.monotonic()
            c.sendall(first)
            for _ in range(3):                   # a trickle of header bytes does not keep it open
                time.sleep(0.5)
                try:
                    c.sendall(b"X")
                except OSError:
                    break
            try:
                rest = c.recv(1000)
            except ConnectionResetError:
                rest = b""
            assert rest == b"" and time.monotonic() - t0 < 8
    assert httpx.get(server + "/health", timeout=5).status_code == 200


def test_ar_model_served():
    """gmlm serve --model AR: the engine's beam search behind the same HTTP API, streaming included."""
    from conftest import TINY_AR

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "gmlm_engine.tools.cli", "serve", "--model", str(TINY_AR), "--port",
                             str(port), "--threads", "2", "--log-level", "warning", "--compute-type", "float32"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        texts = ["A man rides a bike.", "Two dogs play in the snow."]
        want = [r.text for r in Translator(TINY_AR, compute_type="float32").translate_batch(texts, beam_size=2)]
        r = httpx.post(url + "/v1/translate", json={"text": texts, "beam_size": 2}, timeout=60)
        assert r.status_code == 200 and [t["text"] for t in r.json()["translations"]] == want
        r = httpx.post(url + "/v1/translate", json={"text": texts, "iterations": 4}, timeout=60)
        assert r.status_code == 422 and "iterations applies to gmlm models" in r.json()["error"]
        with httpx.stream("POST", url + "/v1/translate/stream", json={"text": texts[:1]}, timeout=60) as s:
            body = "".join(s.iter_text())
        assert "event: draft" in body and "event: done" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def test_stream_disconnects_leave_no_pending_tasks(sentences):
    """Clients that leave a stream mid-way: no "Task was destroyed but it is pending!" in the server's log."""
    proc, url = _start("--log-level", "info")
    try:
        for _ in range(5):
            with httpx.stream("POST", url + "/v1/translate/stream",
                              json={"text": sentences[:4], "iterations": 200}, timeout=60) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        break
        time.sleep(1.0)
        assert httpx.get(url + "/health").json()["live_requests"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    err = proc.stderr.read()
    assert "was destroyed but it is pending" not in err and "Traceback" not in err, err[-2000:]
