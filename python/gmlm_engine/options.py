"""The decoding options, declared once.

Each option is one `Option` row: name, type, default, range or choices, which models take it, and its
doc line. From this table come: the checks of `validate_options` (one rule per type, the cross-option
rules below it), the `DecodeOptions` record, the options an ar model refuses, the `gmlm translate`/`eval`
flags, the HTTP request schema of `gmlm serve`, and the table in docs/decoding.md (tests/test_options.py
checks that the document, `translate_batch`'s signature and the C++ `RefineOptions` defaults agree with it).

Adding an option: one row here, its rule in docs/decoding.md, reference.py and the engine
(cpp/decoding/options.h and where the rule acts).

No PyTorch here: the engine runtime imports this module.
"""
from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

# The recommended refinement options, chosen on val for the shipped GMLM (docs/results.md, "The defaults on this model"):
# T=8 passes over K=2 length candidates (16 decoder passes per sentence) score 32.43 BLEU on val (engine
# float32) against 31.75 for T=5 K=2 (10 passes) and 31.79 / 31.90 for T=4 K=3 / T=6 K=2 (12): the knee of
# the val front, where more passes stop paying (T=8 K=3: 32.69 at 24 passes, T=10 K=3: 32.89 at 30).
DEFAULT_ITERATIONS = 8
DEFAULT_LENGTH_BEAM = 2
# The recommended length_offset (docs/decoding.md, step 1), chosen on val for the shipped GMLM.
DEFAULT_LENGTH_OFFSET = 1
# The recommended repeat_penalty (docs/decoding.md, step 4), chosen on val for the shipped GMLM: at the
# defaults it cuts the outputs that repeat themselves from 37.2 to 32.1 % at the same BLEU (33.54, engine float32;
# int8 33.35 -> 33.33); 0.2 / 0.3 cut to 30.3 / 29.4 % at 33.53 / 33.51 (docs/results.md, "Repeated phrases").
DEFAULT_REPEAT_PENALTY = 0.1
# The recommended passes over a ctc model's canvas (docs/decoding.md, "CTC models"): one.
CTC_DEFAULT_ITERATIONS = 1
# A ctc model's recommended blank_penalty (the C++ twin: kCtcBlankPenalty in cpp/decoding/options.h), chosen on val.
CTC_DEFAULT_BLANK_PENALTY = 1.25

Bound = Union[int, float, Callable[[int], int], None]   # a callable gets the model's max_target_len


@dataclass(frozen=True)
class Option:
    name: str
    type: type                       # int, float, bool or str
    default: object
    doc: str
    models: str = "gmlm"             # "gmlm" (refinement: gmlm and ctc models), "ctc", "ar" or "both"
    lo: Bound = None
    hi: Bound = None
    choices: tuple = ()
    range_doc: str = ""              # the range as the docs say it, where lo/hi depend on the model
    by_model: tuple = ()             # ((objective, default), ...): default None means the model's own
    http: bool = True                # a field of gmlm serve's request
    cli: bool = True                 # a flag of gmlm translate / eval

    def default_for(self, objective: str):
        """The value None stands for on a model of this objective (ar: the gmlm value, which it accepts)."""
        d = dict(self.by_model)
        return d.get(objective, d.get("gmlm")) if d else self.default

    def describe_default(self) -> str:
        return ", ".join(f"{m}: {v!r}" for m, v in self.by_model) if self.by_model else repr(self.default)

    def bounds(self, max_target_len: int) -> tuple:
        at = lambda b: b(max_target_len) if callable(b) else b  # noqa: E731
        return at(self.lo), at(self.hi)

    def describe_range(self) -> str:
        if self.choices:
            return " \\| ".join(self.choices)
        if self.type is bool:
            return "bool"
        if self.range_doc:
            return self.range_doc
        if self.hi is None:
            return f">= {self.lo}"
        return f"[{self.lo}, {self.hi}]"


OPTIONS: tuple[Option, ...] = (
    Option("iterations", int, None, "refinement passes T (linear schedule)", lo=1, hi=1000,
           by_model=(("gmlm", DEFAULT_ITERATIONS), ("ctc", CTC_DEFAULT_ITERATIONS))),
    Option("length_beam", int, None, "length candidates K decoded side by side (ctc: 1, its one canvas)", lo=1,
           hi=lambda L: L, range_doc="[1, max_target_len]", by_model=(("gmlm", DEFAULT_LENGTH_BEAM), ("ctc", 1))),
    Option("length_beam_keep", int, None, "candidates kept after the first pass (None: all, no pruning)",
           lo=1, hi=None, range_doc="[1, length_beam]"),
    Option("length_offset", int, None, "added to every length candidate (step 1; ctc: 0)",
           lo=lambda L: 1 - L, hi=lambda L: L - 1, range_doc="[1 - max_target_len, max_target_len - 1]",
           by_model=(("gmlm", DEFAULT_LENGTH_OFFSET), ("ctc", 0))),
    Option("update", str, "masked", "which positions a pass writes: the masked ones, or every position (a pass "
           "can then replace any token)", choices=("masked", "all")),
    Option("remask", str, "linear", "which positions the next pass predicts again", choices=("linear", "threshold")),
    Option("threshold", float, None, "remask='threshold': re-mask positions whose probability is below it",
           range_doc="(0, 1), with remask='threshold' only"),
    Option("stutter_remask", bool, None, "re-mask a token equal to its left neighbour; collapse repeats at the end "
           "(ctc: off, its collapse merges repeats)", by_model=(("gmlm", True), ("ctc", False))),
    Option("repeat_remask", bool, None, "also re-mask repeated word pieces and bigrams between passes (ctc: a "
           "repeated token's positions lose the blank penalty)", by_model=(("gmlm", False), ("ctc", True))),
    Option("repeat_penalty", float, DEFAULT_REPEAT_PENALTY, "rank a candidate whose output repeats a word piece or bigram this much "
           "lower (step 4)", lo=0.0, hi=100.0),
    Option("blank_penalty", float, None, "ctc models: the blank's logit is lowered by this before the log-softmax "
           "(longer outputs; 0: off)", models="ctc", lo=0.0, hi=100.0,
           by_model=(("gmlm", 0.0), ("ctc", CTC_DEFAULT_BLANK_PENALTY))),
    Option("cache_refresh", int, 1, "cached refinement: a pass t with t % cache_refresh == 0 recomputes every "
           "position, the others reuse the keys/values of positions whose input did not change (1: every pass, "
           "exact; 0: only the first)", lo=0, hi=1000),
    Option("early_stop", bool, False, "end a candidate when a pass changes none of its tokens"),
    Option("init", str, "mask", "the first pass's input: every position <mask>, or random tokens",
           choices=("mask", "random")),
    Option("sampling", bool, False, "Gumbel-max sampling from the hash RNG instead of argmax"),
    Option("seed", int, None, "the hash RNG's seed for sampling and random init (None: 0)", lo=0, hi=2**63 - 1,
           range_doc="[0, 2^63 - 1]"),
    Option("return_history", bool, False, "the tokens after every pass in each result"),
    Option("rerank", bool, False, "rank the length candidates by an AR model (rerank_model=)", http=False,
           cli=False),
    Option("beam_size", int, 1, "ar models: 1 = greedy, more = beam search", models="ar", lo=1, hi=256),
    Option("length_penalty", float, 1.0, "ar beam search: a finished hypothesis scores sum / (length + 1)**P "
           "(greedy decoding, beam_size 1, has no use for it)",
           models="ar", lo=0.0, hi=10.0),
    Option("max_batch_size", int, 0, "sources per engine call (0: the translator's default)", models="both",
           lo=0, http=False, cli=False),
    Option("batch_type", str, "examples", "max_batch_size counts examples or tokens", models="both",
           choices=("examples", "tokens"), http=False, cli=False),
)
BY_NAME = {o.name: o for o in OPTIONS}

# What a ctc model's decoding fixes (docs/decoding.md, "CTC models").
CTC_FIXED = {"length_beam": 1, "length_offset": 0, "stutter_remask": False}

# Refinement options and their defaults: an ar model accepts them only at these values (or None).
GMLM_ONLY = {o.name: o.default_for("gmlm") for o in OPTIONS if o.models == "gmlm"}
# Options of ctc models only: the others accept them at their off value (or None).
CTC_ONLY = {o.name: o.default_for("gmlm") for o in OPTIONS if o.models == "ctc"}
DEFAULTS = {o.name: o.default for o in OPTIONS}

# The validated options of one call: every option, None resolved (length_beam_keep = length_beam, seed = 0).
DecodeOptions = dataclasses.make_dataclass(
    "DecodeOptions", [(o.name, object, dataclasses.field(default=o.default)) for o in OPTIONS], frozen=True)
DecodeOptions.__module__ = __name__
DecodeOptions.__doc__ = "Validated decoding options (options.OPTIONS; build them with validate_options)."


def strategy(objective: str) -> str:
    """The decoding an objective's models take: "ar" search, or "gmlm" refinement (gmlm and ctc models)."""
    return "ar" if objective == "ar" else "gmlm"


def int_option(name: str, v, lo: int, hi: int | None = None) -> int:
    """An integer argument in [lo, hi] (hi None: no upper bound); ValueError naming it otherwise."""
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {v!r}")
    v = int(v)
    if v < lo or (hi is not None and v > hi):
        raise ValueError(f"{name} must be {f'>= {lo}' if hi is None else f'in [{lo}, {hi}]'}, got {v}")
    return v


def _check(o: Option, v, max_target_len: int):
    """One option's type and range rule; returns the value in its plain Python type."""
    if o.type is bool:
        if not isinstance(v, (bool, np.bool_)):
            raise ValueError(f"{o.name} must be a bool, got {v!r}")
        return bool(v)
    if o.choices:
        if v not in o.choices:
            raise ValueError(f"{o.name} must be one of {o.choices}, got {v!r}")
        return v
    lo, hi = o.bounds(max_target_len)
    if o.type is int:
        return int_option(o.name, v, lo, hi)
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (lo is None or lo <= float(v)) \
            or not (hi is None or float(v) <= hi):
        raise ValueError(f"{o.name} must be a number in {o.describe_range()}, got {v!r}")
    return float(v)


def validate_options(objective: str, max_target_len: int, **given) -> DecodeOptions:
    """Check every decoding option (absent ones take the table's defaults); raise ValueError naming the
    bad one, TypeError for a name that is not an option."""
    unknown = sorted(set(given) - set(BY_NAME))
    if unknown:
        raise TypeError(f"unknown decoding option {unknown[0]!r}; the options are {', '.join(BY_NAME)}")
    v = {**DEFAULTS, **given}
    for o in OPTIONS:
        if o.by_model and v[o.name] is None:
            v[o.name] = o.default_for(objective)
    for o in OPTIONS:
        if o.name in ("threshold", "length_beam_keep") or (v[o.name] is None and o.default is None):
            continue   # (threshold and length_beam_keep depend on other options: checked below)
        v[o.name] = _check(o, v[o.name], max_target_len)
    if v["seed"] is None:
        v["seed"] = 0
    if objective != "ctc":
        for name, off in CTC_ONLY.items():
            if name in given and given[name] not in (None, off):
                raise ValueError(f"{name} applies to ctc models (a {objective} model has no blank)")
    if objective == "ar":   # refinement options have no meaning for an ar model: say so, never ignore them
        for name, default in GMLM_ONLY.items():
            if name in given and given[name] not in (None, default) and not (
                    name == "length_beam_keep" and given[name] == v["length_beam"]):
                raise ValueError(f"{name} applies to gmlm models; an ar model takes beam_size and length_penalty")
    if objective == "ctc":   # one canvas per source, collapsed by CTC's rule: no length candidates, no stutter rules
        for name, want in CTC_FIXED.items():
            if v[name] != want:
                raise ValueError(f"{name} must be {want!r} for a ctc model (one canvas per source, its length set "
                                 f"by the source; repeats merged by the collapse), got {v[name]!r}")
    # cross-option rules
    if v["length_beam_keep"] is None:
        v["length_beam_keep"] = v["length_beam"]
    else:
        keep = BY_NAME["length_beam_keep"]
        v["length_beam_keep"] = _check(dataclasses.replace(keep, hi=v["length_beam"]), v["length_beam_keep"],
                                       max_target_len)
    if v["remask"] == "threshold":
        t = v["threshold"]
        if t is None:
            raise ValueError("threshold must be set (a probability in (0, 1)) when remask='threshold'")
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0.0 < float(t) < 1.0:
            raise ValueError(f"threshold must be a probability in (0, 1), got {t!r}")
        v["threshold"] = float(t)
    elif v["threshold"] is not None:
        raise ValueError("threshold is only used with remask='threshold'")
    if v["update"] == "all" and v["cache_refresh"] != 1:
        raise ValueError("cache_refresh must be 1 with update='all' (every position's input changes each pass)")
    if objective != "ar":   # (and the ar options on a gmlm or ctc model)
        if v["beam_size"] != 1:
            raise ValueError("beam_size applies to ar models; a gmlm model uses iterations and length_beam")
        if v["length_penalty"] != 1.0:
            raise ValueError("length_penalty applies to ar beam search; a gmlm model has a length head")
    return DecodeOptions(**v)


def add_cli_flags(group) -> None:
    """The decoding flags of `gmlm translate` / `eval`: --name VALUE for numbers and choices, --name /
    --no-name for a bool that is off / on by default. Every default is None: absent flags leave the
    Translator's default (cli_options picks the given ones)."""
    for o in OPTIONS:
        if not o.cli:
            continue
        flag = "--" + o.name.replace("_", "-")
        default = "" if o.default is None and not o.by_model else f" (default: {o.describe_default()})"
        doc = o.doc.replace("%", "%%")   # argparse formats help with %: a bare % in a doc broke --help
        if o.type is bool:
            if o.default_for("gmlm"):
                group.add_argument("--no-" + o.name.replace("_", "-"), dest=o.name, action="store_const",
                                   const=False, default=None, help=f"turn off: {doc}")
            else:
                group.add_argument(flag, dest=o.name, action="store_const", const=True, default=None, help=doc)
        else:
            group.add_argument(flag, dest=o.name, type=o.type, default=None, choices=o.choices or None,
                               help=doc + default)


def cli_options(args) -> dict:
    """The options given on the command line (flags of add_cli_flags); validate_options refuses those the
    model does not take (never ignored)."""
    return {o.name: getattr(args, o.name) for o in OPTIONS if o.cli and getattr(args, o.name, None) is not None}


def request_fields() -> dict:
    """pydantic field declarations of the HTTP request's options: strict types, choices as Literal,
    every field optional (absent: the Translator's default)."""
    from typing import Literal, Optional

    from pydantic import StrictBool, StrictFloat, StrictInt, StrictStr

    strict = {bool: StrictBool, int: StrictInt, float: StrictFloat, str: StrictStr}
    fields = {}
    for o in OPTIONS:
        if o.http:
            t = Literal[o.choices] if o.choices else strict[o.type]
            fields[o.name] = (Optional[t], None)
    return fields


def markdown_table() -> str:
    """The options table of docs/decoding.md (tests/test_options.py checks the document holds it)."""
    rows = ["| option | models | type | default | range | meaning |", "| --- | --- | --- | --- | --- | --- |"]
    for o in OPTIONS:
        rows.append(f"| `{o.name}` | {o.models} | {o.type.__name__} | {o.describe_default()} | {o.describe_range()} | "
                    f"{o.doc} |")
    return "\n".join(rows)
