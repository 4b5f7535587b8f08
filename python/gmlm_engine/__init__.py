"""gmlm-engine: fast inference for Generative Masked Language Models.

    import gmlm_engine
    tr = gmlm_engine.Translator("default")          # the shipped ctc model: one pass
    tr.translate_batch(["A man rides a bike."])
    gmlm = gmlm_engine.Translator(gmlm_engine.default_model_dir("gmlm"))
    gmlm.translate_batch(["A man rides a bike."], iterations=4, length_beam=3)

The runtime (Translator) needs numpy, safetensors and sentencepiece only; the PyTorch side
(gmlm_engine.pytorch.reference, .model, .train) needs the [train] extra.
"""
from __future__ import annotations

from pathlib import Path

from .common import TranslationResult
from .config import ModelConfig, ModelError

__version__ = "0.1.0"
__all__ = ["ModelConfig", "ModelError", "TranslationResult", "Translator", "default_model_dir", "__version__"]


# The model "default" names: the best measured speed-quality point (docs/results.md): the ctc model, one pass.
DEFAULT_OBJECTIVE = "ctc"


def default_model_dir(objective: str | None = None) -> Path:
    """A model shipped with the package (models/ in the source tree, gmlm_engine/models when installed): the
    default model (the ctc model, docs/decoding.md "CTC models"), or with objective="gmlm" the GMLM, "ar" the AR
    model of the same size (the baseline and teacher), "ctc" the ctc model."""
    models = {"gmlm": "gmlm-en-de", "ar": "ar-en-de", "ctc": "ctc-en-de"}
    objective = DEFAULT_OBJECTIVE if objective is None else objective
    if objective not in models:
        raise ValueError(f"objective must be one of {sorted(models)}, got {objective!r}")
    here = Path(__file__).resolve().parent
    for cand in (here / "models" / models[objective], here.parent.parent / "models" / models[objective]):
        if (cand / "config.json").is_file():
            return cand
    raise ModelError(f"no shipped {objective} model in this installation; pass a model directory")


def __getattr__(name: str):
    # Translator lives in the compiled engine; imported on first use so that the PyTorch-only parts
    # (training, the reference decoder) work even where the extension is being rebuilt.
    if name == "Translator":
        from .engine import Translator

        return Translator
    raise AttributeError(f"module 'gmlm_engine' has no attribute {name!r}")
