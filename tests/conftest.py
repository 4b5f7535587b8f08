import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY_GMLM = ROOT / "tests" / "data" / "tiny-gmlm"
TINY_AR = ROOT / "tests" / "data" / "tiny-ar"
MODELS = ROOT / "models"    # the shipped models


def data_dir():
    d = os.environ.get("GMLM_DATA_DIR")
    if not d:
        cand = ROOT.parent / "shared" / "data" / "multi30k"
        d = str(cand) if cand.is_dir() else None
    return d


@pytest.fixture
def multi30k():
    d = data_dir()
    if not d or not Path(d).is_dir():
        pytest.skip("Multi30k not available (set GMLM_DATA_DIR)")
    return d
