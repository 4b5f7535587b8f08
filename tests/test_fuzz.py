"""Generated inputs against every entry that takes options or bytes from outside: translate_batch, the public
resumable batch (`new_batch().add`), the AR call, and the HTTP body check. Each input either works or raises
ValueError (naming the problem); nothing else escapes, nothing crashes or hangs.

CI runs a few hundred examples per test; the full run (10,000 per test):

    GMLM_FUZZ_EXAMPLES=10000 python -m pytest -q tests/test_fuzz.py
"""
import math
import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from gmlm_engine import Translator
from gmlm_engine.options import OPTIONS

from conftest import TINY_AR, TINY_GMLM

EXAMPLES = int(os.environ.get("GMLM_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)

NAMES = [o.name for o in OPTIONS]
ENGINE_NAMES = NAMES + ["return_candidates", "bogus", ""]     # the engine's dicts: unknown keys too
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 12),
                   st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                   st.sampled_from(["linear", "threshold", "mask", "random", "examples", "tokens"]),
                   st.lists(st.integers(0, 5), max_size=3))
OPTION_DICTS = st.dictionaries(st.sampled_from(NAMES), VALUES, max_size=4)
ENGINE_DICTS = st.dictionaries(st.sampled_from(ENGINE_NAMES), VALUES, max_size=4)
# small enough that an accepted request finishes quickly
SMALL = {"iterations": 3, "length_beam": 3, "beam_size": 3}


def bounded(opts: dict) -> dict:
    """The options with work-size values capped (an accepted iterations=1000 would only be slow)."""
    out = dict(opts)
    for k, cap in SMALL.items():
        v = out.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > cap:
            out[k] = cap
    return out


@pytest.fixture(scope="module")
def gmlm():
    return Translator(TINY_GMLM, intra_threads=1, compute_type="float32")


@pytest.fixture(scope="module")
def ar():
    return Translator(TINY_AR, intra_threads=1, compute_type="float32")


@FUZZ
@given(opts=OPTION_DICTS, text=st.text(max_size=30))
def test_translate_batch_works_or_names_the_problem(gmlm, ar, opts, text):
    for tr in (gmlm, ar):
        try:
            res = tr.translate_batch([text], **bounded(opts))
        except ValueError:
            continue
        assert len(res) == 1 and isinstance(res[0].text, str) and math.isfinite(res[0].score)


@FUZZ
@given(opts=ENGINE_DICTS)
def test_the_resumable_batch_works_or_names_the_problem(gmlm, ar, opts):
    for tr in (gmlm, ar):
        batch = tr.new_batch()
        try:
            ids = batch.add([[10, 11, 1]], [bounded(opts)])
        except ValueError:
            assert batch.requests == 0
            continue
        assert len(ids) == 1
        for _ in range(200):                       # an accepted request finishes
            batch.step()
            if batch.requests == 0:
                break
        assert batch.requests == 0


@FUZZ
@given(beam=st.integers(-2**62, 2**62), lp=st.floats(allow_nan=True, allow_infinity=True))
def test_the_ar_call_works_or_names_the_problem(ar, beam, lp):
    try:
        out = ar._engine.translate_ar([[10, 11, 1]], beam_size=min(beam, 3), length_penalty=lp)
    except ValueError as e:
        assert "beam_size" in str(e) or "length_penalty" in str(e)
        return
    assert len(out) == 1


@FUZZ
@given(body=st.one_of(st.binary(max_size=200), st.text(max_size=100).map(lambda t: t.encode("utf-8")),
                      st.text(max_size=50).map(lambda t: ('{"text": [%s]}' % repr(t)).encode("utf-16"))),
       ctype=st.sampled_from(["application/json", "application/json; charset=utf-8", "application/json; charset=latin-1",
                              "text/plain", "application/json; charset", "application/json;charset=\"UTF-8\""]))
def test_the_body_check_never_raises(body, ctype):
    pytest.importorskip("fastapi")
    from gmlm_engine.serving.http import body_problem

    problem = body_problem({b"content-type": ctype.encode()}, body)
    assert problem is None or isinstance(problem, str)
    if problem is None and body:
        body.decode("utf-8")                      # only UTF-8 passes
