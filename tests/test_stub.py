"""python/gmlm_engine/_core.pyi describes the compiled module as it is: every public name of the module
(and of its `ops` submodule) has a stub, every stub names something that exists, and each stubbed
function or method takes the parameters pybind11 reports, in order. A binding change that forgets the
stub fails here."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

core = pytest.importorskip("gmlm_engine._core")

STUB = Path(core.__file__).with_name("_core.pyi")
if not STUB.exists():     # an installed wheel keeps the stub beside the module; a build tree beside the package
    STUB = Path(__file__).resolve().parents[1] / "python" / "gmlm_engine" / "_core.pyi"


def _stub_names(body) -> dict:
    """name -> ast node of the functions and classes (methods, properties) in a stub body."""
    return {n.name: n for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}


def _params(fn: ast.FunctionDef) -> list[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
    if fn.args.kwarg is not None:
        names.append("**")     # keyword options (pybind11: **kwargs)
    return [n for n in names if n != "self"]


def _bound_params(obj, name: str) -> list[str]:
    """Parameter names from pybind11's signature line "name(self: T, a: X, b: Y = 1) -> R"."""
    line = next(ln for ln in (obj.__doc__ or "").splitlines() if ln.startswith(name + "("))
    inner = line[len(name) + 1:line.rindex(") ->")]
    depth, parts, cur = 0, [], ""
    for ch in inner:                   # split on top-level commas only (types hold brackets and commas)
        depth += ch in "[(" and 1 or ch in "])" and -1 or 0
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    names = ["**" if p.strip().startswith("**") else re.match(r"\s*(\w+)", p).group(1) for p in parts]
    return [n for n in names if n != "self"]


def _public(obj) -> set[str]:
    return {n for n in dir(obj) if not n.startswith("_")}


def _check_class(cls, node: ast.ClassDef, where: str):
    stubbed = _stub_names(node.body)
    assert _public(cls) - {"__init__"} <= set(stubbed), f"{where}: not in the stub: {_public(cls) - set(stubbed)}"
    for name, fn in stubbed.items():
        assert hasattr(cls, name), f"{where}.{name} is stubbed but does not exist"
        member = getattr(cls, name)
        if isinstance(fn, ast.FunctionDef) and not isinstance(member, property):
            assert _params(fn) == _bound_params(member, name), f"{where}.{name}: parameters differ"


def test_the_stub_describes_the_module():
    tree = ast.parse(STUB.read_text())
    top = _stub_names(tree.body)
    cuda = core.build_info()["cuda"]
    expected = _public(core) - {"ops", "cuda_ops"}
    assert expected <= set(top), f"not in the stub: {expected - set(top)}"
    for name, node in top.items():
        if name.startswith("_"):
            continue
        obj = getattr(core, name)
        if isinstance(node, ast.ClassDef):
            _check_class(obj, node, name)
        else:
            assert _params(node) == _bound_params(obj, name), f"{name}: parameters differ"
    # the submodules are stubbed as classes: ops as _Ops (its classes nested), cuda_ops as _CudaOps
    _check_submodule(core.ops, top["_Ops"], "ops")
    if cuda:
        _check_submodule(core.cuda_ops, top["_CudaOps"], "cuda_ops")


def _check_submodule(mod, node: ast.ClassDef, where: str):
    stubbed = _stub_names(node.body)
    assert _public(mod) <= set(stubbed), f"{where}: not in the stub: {_public(mod) - set(stubbed)}"
    for name, n in stubbed.items():
        assert hasattr(mod, name), f"{where}.{name} is stubbed but does not exist"
        if isinstance(n, ast.ClassDef):
            _check_class(getattr(mod, name), n, f"{where}.{name}")
        else:
            assert _params(n) == _bound_params(getattr(mod, name), name), f"{where}.{name}: parameters differ"
