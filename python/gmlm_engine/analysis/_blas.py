"""Limit numpy's BLAS threads for the duration of a computation.

The matrices here are small (at most a few thousand rows), where one BLAS thread is fastest; on a
machine whose cores are busy (e.g. with a training run) a multi-threaded OpenBLAS spin-waits and a
256 x 256 eigen-decomposition goes from milliseconds to seconds. numpy has no API for this, so we
call OpenBLAS's own ``*_set_num_threads`` on the copy that numpy loaded (found in /proc/self/maps);
anywhere that fails (another BLAS, another OS) this is a no-op.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager

import numpy as np

_PREFIXES = ("scipy_openblas_", "openblas_")
_SUFFIXES = ("64_", "")


def _numpy_openblas():
    """(set, get) ctypes functions of numpy's OpenBLAS, or None."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(np.__file__)))
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return None
    for path in sorted(p for p in paths if p.startswith(root) and "numpy" in p):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for pre in _PREFIXES:
            for suf in _SUFFIXES:
                s, g = f"{pre}set_num_threads{suf}", f"{pre}get_num_threads{suf}"
                if hasattr(lib, s) and hasattr(lib, g):
                    return getattr(lib, s), getattr(lib, g)
    return None


@contextmanager
def blas_threads(n: int = 1):
    """Run the body with numpy's OpenBLAS limited to ``n`` threads (restored afterwards)."""
    fns = _numpy_openblas()
    if fns is None:
        yield
        return
    set_threads, get_threads = fns
    before = int(get_threads())
    set_threads(int(n))
    try:
        yield
    finally:
        set_threads(before)
