"""gmlm-engine: fast inference for Generative Masked Language Models.

    import gmlm_engine
    tr = gmlm_engine.Translator("default")
    tr.translate_batch(["A man rides a bike."], iterations=4, length_beam=3)

The runtime (Translator) needs numpy, safetensors and sentencepiece only; the PyTorch side
(gmlm_engine.pytorch.reference, .model, .train) needs the [train] extra.
"""
from __future__ import annotations

from pathlib import Path

from .common import TranslationResult
from .config import ModelConfig, ModelError

__version__ = "0.1.0"
__all__ = ["ModelConfig", "ModelError", "TranslationResult", "Translator", "default_model_dir", "__version__"]


def default_model_dir(objective: str = "gmlm") -> Path:
    """A model shipped with the package (models/ in the source tree, gmlm_engine/models when installed):
    the default GMLM, or with objective="ar" the AR model of the same size (the baseline and teacher), or with
    objective="ctc" the ctc model (docs/decoding.md, "CTC models")."""
    models = {"gmlm": ("default", "gmlm-en-de"), "ar": ("ar-en-de", "ar-en-de"), "ctc": ("ctc-en-de", "ctc-en-de")}
    if objective not in models:
        raise ValueError(f"objective must be one of {sorted(models)}, got {objective!r}")
    installed, source = models[objective]
    here = Path(__file__).resolve().parent
    for cand in (here / "models" / installed, here.parent.parent / "models" / source):
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
