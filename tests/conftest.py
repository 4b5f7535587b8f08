import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY_GMLM = ROOT / "tests" / "data" / "tiny-gmlm"
TINY_AR = ROOT / "tests" / "data" / "tiny-ar"
TINY_CTC = ROOT / "tests" / "data" / "tiny-ctc"
MODELS = ROOT / "models"    # the shipped models


def copy_without_weights_checksum(src, dst: Path) -> Path:
    """A copy of a model directory whose config.json records no weights_sha256 (as directories written before
    the checksum): tests that damage the weights on purpose then reach the loader's own checks of them."""
    import json
    import shutil

    shutil.copytree(src, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg.pop("weights_sha256", None)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    return dst


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
