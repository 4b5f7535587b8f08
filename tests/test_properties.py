"""Property tests (hypothesis, bounded for CI): for any input, a correct output or a documented
exception (ValueError naming the source or the option), never a crash, and never a different result
for the same input, whatever batch it sits in and however the batch is cut."""
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

from gmlm_engine import Translator  # noqa: E402
from gmlm_engine.options import BY_NAME, OPTIONS, validate_options  # noqa: E402
from conftest import TINY_GMLM  # noqa: E402

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
WORDS = ["A", "man", "rides", "a", "bike", ".", "Two", "dogs", "play", "in", "the", "snow", ","]

# Any Unicode scalar value except surrogates (those are not text: their own property below).
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
sentences = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).map(" ".join)
inputs = st.lists(st.one_of(any_text, sentences), max_size=6)
options = st.fixed_dictionaries({
    "iterations": st.integers(1, 4), "length_beam": st.integers(1, 3), "seed": st.integers(0, 2**63 - 1),
    "sampling": st.booleans(), "init": st.sampled_from(["mask", "random"]), "stutter_remask": st.booleans(),
    "early_stop": st.booleans(), "length_offset": st.integers(-3, 3), "repeat_remask": st.booleans(),
    "repeat_penalty": st.sampled_from([0.0, 0.5]), "cache_refresh": st.sampled_from([1, 0, 2]),
})


@pytest.fixture(scope="module")
def engine():
    return Translator(TINY_GMLM, intra_threads=2)


def _key(r):
    return r.text, r.tokens, r.iterations


@settings(max_examples=1500, **SETTINGS)
@given(texts=inputs, opts=options, max_batch_size=st.integers(0, 4))
def test_every_input_translates_as_it_would_alone(engine, texts, opts, max_batch_size):
    """Batch invariance (tokens, text and iterations; docs/decoding.md) and no invented sentences."""
    res = engine.translate_batch(texts, max_batch_size=max_batch_size, **opts)
    assert len(res) == len(texts)
    for text, r in zip(texts, res):
        alone = engine.translate_batch([text], **opts)[0]
        assert _key(r) == _key(alone)
        assert abs(r.score - alone.score) <= 1e-5
        if not engine.tokenizer.translatable(engine.tokenizer.encode([text])[0]):   # nothing to translate
            assert (r.text, r.tokens, r.iterations) == ("", [], 0)
        else:
            assert 1 <= r.iterations <= opts["iterations"] and r.tokens and r.length_candidates


@settings(max_examples=300, **SETTINGS)
@given(texts=st.lists(st.text(max_size=12), min_size=1, max_size=4))
def test_any_string_including_surrogates_translates_or_names_the_bad_input(engine, texts):
    try:
        res = engine.translate_batch(texts)
    except ValueError as e:
        bad = [i for i, t in enumerate(texts) if any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
        assert bad and f"source[{bad[0]}] is not valid Unicode" in str(e)
    else:
        assert len(res) == len(texts)


bad_values = st.one_of(st.integers(-5, 0), st.floats(allow_nan=True), st.text(max_size=3), st.none(),
                       st.booleans(), st.lists(st.integers(), max_size=2))


@settings(max_examples=400, **SETTINGS)
@given(name=st.sampled_from([o.name for o in OPTIONS]), value=bad_values)
def test_an_invalid_option_is_a_value_error_naming_it(engine, name, value):
    try:
        res = engine.translate_batch(["A man rides a bike."], **{name: value})
    except ValueError as e:
        assert name in str(e)
    else:  # some values are valid (seed=None, sampling=False, iterations=0 is not): taken as given, not coerced
        opts = validate_options("gmlm", engine.cfg.max_target_len, **{name: value})
        assert getattr(opts, name) == value or (value is None and BY_NAME[name].default is None)
        assert not isinstance(value, bool) or BY_NAME[name].type is bool   # a bool is no number here
        if opts == validate_options("gmlm", engine.cfg.max_target_len):     # the default's value: its output
            assert _key(res[0]) == _key(engine.translate_batch(["A man rides a bike."])[0])
