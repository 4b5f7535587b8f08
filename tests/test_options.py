"""The option table (gmlm_engine.options) is the one declaration: the checks, the API signature, the CLI
flags, the HTTP schema, the C++ defaults and the documentation follow it."""
import inspect
from pathlib import Path

import pytest

from gmlm_engine.tools.cli import build_parser
from gmlm_engine.common import TranslatorFrontEnd
from gmlm_engine.options import BY_NAME, OPTIONS, DecodeOptions, markdown_table, validate_options
from conftest import TINY_GMLM

ROOT = Path(__file__).resolve().parents[1]


def test_translate_batch_takes_exactly_the_table_options_at_their_defaults():
    sig = inspect.signature(TranslatorFrontEnd.translate_batch).parameters
    got = {n: p.default for n, p in sig.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert got == {o.name: o.default for o in OPTIONS}


def test_defaults_validate_to_the_decode_options_record():
    o = validate_options("gmlm", 96)
    assert o == DecodeOptions(**{**{x.name: x.default_for("gmlm") for x in OPTIONS},
                                 "length_beam_keep": o.length_beam, "seed": 0})
    assert (o.iterations, o.length_beam, o.length_offset, o.stutter_remask) == (8, 2, 1, True)


def test_a_ctc_model_takes_its_own_defaults_and_refuses_length_candidates_and_stutter_rules():
    o = validate_options("ctc", 192)
    assert (o.iterations, o.length_beam, o.length_offset, o.stutter_remask, o.repeat_remask) == (1, 1, 0, False, True)
    assert validate_options("ctc", 192, iterations=3, update="all").iterations == 3
    assert validate_options("ctc", 192, repeat_remask=False).repeat_remask is False
    for name, bad in (("length_beam", 2), ("length_offset", 1), ("stutter_remask", True)):
        with pytest.raises(ValueError, match=f"{name} must be .* for a ctc model"):
            validate_options("ctc", 192, **{name: bad})
    with pytest.raises(ValueError, match="beam_size applies to ar models"):
        validate_options("ctc", 192, beam_size=2)
    assert validate_options("ctc", 192).blank_penalty > 0 and validate_options("ctc", 192, blank_penalty=0).blank_penalty == 0
    for objective in ("gmlm", "ar"):   # no blank: refused, never ignored (0, its off value, is accepted)
        with pytest.raises(ValueError, match="blank_penalty applies to ctc models"):
            validate_options(objective, 96, blank_penalty=1.0)
        assert validate_options(objective, 96, blank_penalty=0.0).blank_penalty == 0.0


@pytest.mark.parametrize("name,bad,message", [
    ("iterations", 0, "iterations must be in [1, 1000], got 0"),
    ("iterations", 2.0, "iterations must be an integer"),
    ("length_beam", 97, "length_beam must be in [1, 96], got 97"),
    ("length_offset", 96, "length_offset must be in [-95, 95], got 96"),
    ("stutter_remask", 1, "stutter_remask must be a bool"),
    ("remask", "cosine", "remask must be one of ('linear', 'threshold')"),
    ("init", None, "init must be one of ('mask', 'random')"),
    ("seed", -1, "seed must be in [0, 9223372036854775807], got -1"),
    ("max_batch_size", -1, "max_batch_size must be >= 0"),
    ("batch_type", "sentences", "batch_type must be one of"),
])
def test_each_type_rule_names_the_option(name, bad, message):
    with pytest.raises(ValueError) as e:
        validate_options("gmlm", 96, **{name: bad})
    assert message in str(e.value)


def test_cross_option_rules():
    assert validate_options("gmlm", 96, length_beam=3).length_beam_keep == 3
    with pytest.raises(ValueError, match=r"length_beam_keep must be in \[1, 3\], got 4"):
        validate_options("gmlm", 96, length_beam=3, length_beam_keep=4)
    with pytest.raises(ValueError, match="threshold must be set"):
        validate_options("gmlm", 96, remask="threshold")
    with pytest.raises(ValueError, match="threshold is only used with remask='threshold'"):
        validate_options("gmlm", 96, threshold=0.5)
    assert validate_options("gmlm", 96, remask="threshold", threshold=0.5).threshold == 0.5
    with pytest.raises(ValueError, match="beam_size applies to ar models"):
        validate_options("gmlm", 96, beam_size=2)
    with pytest.raises(ValueError, match="length_penalty must be a number in"):
        validate_options("ar", 96, length_penalty=11.0)
    with pytest.raises(TypeError, match="unknown decoding option 'iteration'"):
        validate_options("gmlm", 96, iteration=4)
    with pytest.raises(ValueError, match="cache_refresh must be 1 with update='all'"):
        validate_options("gmlm", 96, update="all", cache_refresh=0)


def test_the_engine_enforces_the_cross_option_rules_at_its_own_boundary():
    """The compiled engine, called without the Python layer's checks, refuses what validate_options refuses."""
    core = pytest.importorskip("gmlm_engine._core")
    from gmlm_engine import Translator

    eng = Translator(TINY_GMLM, compute_type="float32")._engine
    with pytest.raises(ValueError, match="cache_refresh must be 1 with update='all'"):
        eng.translate([[5, 6, 1]], update="all", cache_refresh=2)
    with pytest.raises(ValueError, match="update must be 'masked' or 'all'"):
        eng.translate([[5, 6, 1]], update="every")
    assert core.refine_defaults()["update"] == "masked"


@pytest.mark.parametrize("name", [o.name for o in OPTIONS if o.models == "gmlm"])
def test_an_ar_model_refuses_every_refinement_option_set_away_from_its_default(name):
    o = BY_NAME[name]
    other = {bool: not o.default_for("gmlm"), int: 3, str: o.choices[-1] if o.choices else "x"}.get(o.type, 0.5)
    if name == "threshold":
        other = 0.5
    with pytest.raises(ValueError, match=f"{name} applies to gmlm models"):
        validate_options("ar", 96, **{name: other})
    validate_options("ar", 96, **{name: o.default})          # the default itself is accepted
    validate_options("ar", 96, **{name: o.default_for("gmlm")})


def test_cli_flags_follow_the_table_and_absent_flags_keep_the_translators_defaults():
    p = build_parser()
    args = p.parse_args(["translate"])
    from gmlm_engine.tools.cli import _options

    assert _options(args, "gmlm") == {"max_batch_size": 64, "batch_type": "examples"}
    args = p.parse_args(["translate", "--iterations", "4", "--no-stutter-remask", "--repeat-remask", "--remask",
                         "threshold", "--threshold", "0.9", "--length-offset", "-2", "--seed", "7"])
    got = _options(args, "gmlm")
    assert got == {"iterations": 4, "stutter_remask": False, "repeat_remask": True, "remask": "threshold",
                   "threshold": 0.9, "length_offset": -2, "seed": 7, "max_batch_size": 64, "batch_type": "examples"}
    validate_options("gmlm", 96, **got)
    with pytest.raises(SystemExit):
        p.parse_args(["translate", "--init", "zeros"])       # choices come from the table
    # a refinement flag given for an ar model is refused, not ignored
    with pytest.raises(ValueError, match="iterations applies to gmlm models"):
        validate_options("ar", 96, **_options(p.parse_args(["translate", "--iterations", "4"]), "ar"))


def test_http_request_schema_has_the_tables_http_options():
    pytest.importorskip("fastapi")
    from gmlm_engine.options import request_fields

    fields = request_fields()
    assert set(fields) == {o.name for o in OPTIONS if o.http}
    assert {"iterations", "length_beam", "repeat_remask", "beam_size", "length_penalty"} <= set(fields)


def test_the_decoding_document_holds_the_generated_table():
    doc = (ROOT / "docs" / "decoding.md").read_text()
    assert markdown_table() in doc, "docs/decoding.md's option table is stale: print options.markdown_table()"



def test_the_engines_own_defaults_are_the_tables():
    core = pytest.importorskip("gmlm_engine._core")
    d = core.refine_defaults()
    assert d == {name: BY_NAME[name].default_for("gmlm") for name in d} | {"seed": 0}      # seed None means 0
    assert set(d) == {o.name for o in OPTIONS if o.models in ("gmlm", "ctc")} - {"threshold", "rerank"}
    ctc = core.refine_defaults("ctc")
    assert ctc == {name: BY_NAME[name].default_for("ctc") for name in ctc} | {"seed": 0}


@pytest.mark.parametrize("objective", ["gmlm", "ar"])
def test_the_engines_ranges_and_choices_are_the_tables(objective):
    """Each numeric option's range and each choice option's choices, as the table declares them, are what the
    compiled engine's own check (Engine.validate: RefineOptions / ArOptions::validate) accepts: the bounds
    pass, one step beyond each refuses with a ValueError naming the option."""
    pytest.importorskip("gmlm_engine._core")
    from conftest import TINY_AR
    from gmlm_engine import Translator

    tr = Translator(TINY_GMLM if objective == "gmlm" else TINY_AR, compute_type="float32")
    L = tr.cfg.max_target_len
    checked = []
    for o in OPTIONS:
        if o.models not in (objective, "both") or o.name in ("max_batch_size", "batch_type", "rerank", "threshold"):
            continue   # batching and rerank are the Python layer's; threshold: the cross rule below
        base = {"length_beam": 4} if o.name == "length_beam_keep" else {}
        if o.choices:
            for c in o.choices:
                tr._engine.validate(**{o.name: c}, **({"threshold": 0.5} if c == "threshold" else {}))
            with pytest.raises(ValueError, match=o.name):
                tr._engine.validate(**{o.name: "no-such-choice"})
        elif o.type in (int, float):
            lo, hi = (1, 4) if o.name == "length_beam_keep" else o.bounds(L)
            step = 1 if o.type is int else 1e-3
            for v in (lo, hi):
                tr._engine.validate(**base, **{o.name: o.type(v)})
            for v in (lo - step, hi + step if hi is not None and hi < 2**63 - 1 else None):
                if v is not None and not (o.name == "length_beam_keep" and v == 0):   # 0: the engine's "keep all"
                    with pytest.raises(ValueError, match=o.name):
                        tr._engine.validate(**base, **{o.name: o.type(v)})
        else:
            continue
        checked.append(o.name)
    if objective == "gmlm":
        for t in (0.0, 1.0):
            with pytest.raises(ValueError, match="threshold"):
                tr._engine.validate(remask="threshold", threshold=t)
        tr._engine.validate(remask="threshold", threshold=0.5)
    assert checked, "no option checked"
    assert set(checked) >= ({"iterations", "length_beam", "length_offset", "repeat_penalty", "cache_refresh", "remask",
                             "init", "update"} if objective == "gmlm" else {"beam_size", "length_penalty"})
