"""The compiled engine behind gmlm_engine.Translator (CPU, and CUDA in a GMLM_WITH_CUDA build).

    from gmlm_engine.engine import Translator
    tr = Translator("default", device="cpu", compute_type="auto", intra_threads=0)
    tr.translate_batch(["A man rides a bike."], iterations=4, length_beam=3)
    Translator("default", device="cuda", compute_type="float16")   # CUDA build + GPU (docs/cuda.md)

Python does the text side (SentencePiece, options, sorting inputs into batches, results in input
order); each batch is decoded by one call into gmlm_engine._core, which runs the whole refinement
loop in C++ (or on the GPU) with the GIL released. No PyTorch is imported here.
"""
from __future__ import annotations

import os
import threading

from .common import DecodeResult, TranslatorFrontEnd
from .options import OPTIONS, DecodeOptions, strategy
from .config import ModelError, load_weights_numpy, read_model_dir
from .tokenizer import load_model_tokenizer

# Sentences per batch when max_batch_size is 0. Results do not depend on it (batch invariance);
# 64 sentences (about 3000 decoder rows) keep the GEMMs near the BLAS's peak.
DEFAULT_BATCH = 64
COMPUTE_TYPES = ("float32", "bfloat16", "int8", "default", "auto")
CUDA_COMPUTE_TYPES = ("float32", "float16", "bfloat16", "default", "auto")


class DeviceUnavailableError(ValueError, RuntimeError):
    """device="cuda" cannot be used: this build has no CUDA engine, or CUDA finds no usable GPU.
    (Both a ValueError, like other bad options, and a RuntimeError, like other CUDA failures.)"""


def _parse_device(device) -> tuple[str, int]:
    if device == "cpu":
        return "cpu", 0
    if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
        if device == "cuda":
            return "cuda", 0
        index = device[5:]
        if not index.isdigit():
            raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
        return "cuda", int(index)
    raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")


def cuda_status() -> dict:
    """Whether this installation has the CUDA engine and the GPUs it sees (never raises)."""
    try:
        core = _core()
    except ImportError as e:
        return {"built": False, "device_count": 0, "reason": str(e), "devices": []}
    if not hasattr(core, "cuda_status"):
        return {"built": False, "device_count": 0, "reason": "gmlm_engine._core predates the CUDA engine",
                "devices": []}
    return dict(core.cuda_status())


def _core():
    try:
        from . import _core as core
    except ImportError as e:  # pragma: no cover - depends on the installation
        raise ImportError("gmlm_engine._core (the compiled engine) is not built in this installation; "
                          "reinstall with `pip install .` or use gmlm_engine.pytorch.reference.ReferenceTranslator") from e
    return core


# "auto" on the CPU: the first of these that the CPU runs natively. Measured on an AMX Xeon (2 threads,
# batch 64, the shipped GMLM): bfloat16 2.0x float32's sentences/s at equal BLEU, int8 1.45x at -0.3 BLEU
# (its per-row activation quantisation costs more than AMX-BF16's conversion).
AUTO_ORDER = ("int8", "bfloat16", "float32")  # the fastest first (gmlm bench, 2026-12-03: same BLEU)


def resolve_cpu_compute_type(compute_type: str, core) -> str:
    """float32 / bfloat16 / int8 for the CPU engine. bfloat16 and int8 need a build with oneDNN
    (ValueError otherwise); on a CPU without native support for the type (as oneDNN sees it, which
    ONEDNN_MAX_CPU_ISA can limit) the engine falls back to float32 with a warning."""
    info = core.build_info()
    native = info.get("native_compute_types", ["float32"])
    if compute_type == "default":
        return "float32"
    if compute_type == "auto":
        return next(t for t in AUTO_ORDER if t in native)
    if compute_type != "float32":
        if info.get("onednn", "not built") == "not built":
            raise ValueError(f"compute_type {compute_type!r} needs an engine built with oneDNN (this build has "
                             "float32 only)")
        if compute_type not in native:
            import warnings

            warnings.warn(f"compute_type {compute_type!r}: this CPU has no native support ({info.get('onednn')}); "
                          "using float32", stacklevel=3)
            return "float32"
    return compute_type


def engine_options(opts: DecodeOptions, objective: str = "gmlm") -> dict:
    """The compiled engine's options (by keyword, the table's names) from validated decoding options: the
    options.OPTIONS of the model's kind, less those the Python layer handles (rerank: the engine returns
    every candidate instead)."""
    eo = {o.name: getattr(opts, o.name) for o in OPTIONS
          if o.models in (strategy(objective), objective) and o.name != "rerank"}
    if objective == "gmlm" and opts.rerank:
        eo["return_candidates"] = True
    return eo


class Translator(TranslatorFrontEnd):
    """A translation model loaded into the compiled engine: a gmlm model decodes by refinement, an ar
    model by greedy or beam search (beam_size, length_penalty), both on the same kernels.

    model: a model directory or "default"; device: "cpu", or "cuda" / "cuda:N" in a build with the
    CUDA engine (DeviceUnavailableError otherwise, or without a usable GPU); compute_type on cpu:
    "auto" (the default: what this CPU runs natively, int8, else bfloat16, else float32; results
    are batch invariant in every type), "float32" (= "default"; token parity with the PyTorch
    reference), "bfloat16" or "int8" (oneDNN GEMMs, cpu/lowp.h; everything but the GEMMs stays float32);
    on cuda "float32", "float16" or "bfloat16" ("auto" = float32); fp16 weights load into every type; intra_threads: threads for the BLAS
    and the engine's kernels (0: the cores available; unused on cuda).
    One Translator may be called from several threads; the calls then run one after the other.
    """

    def __init__(self, model: str | os.PathLike = "default", device: str = "cpu", compute_type: str = "auto",
                 intra_threads: int = 0, rerank_model: str | os.PathLike | None = None):
        kind, index = _parse_device(device)
        if kind == "cuda":
            status = cuda_status()
            if not status["built"]:
                raise DeviceUnavailableError(
                    "device 'cuda' is not available in this build of gmlm_engine (CPU engine only; rebuild with "
                    "GMLM_WITH_CUDA=ON, see docs/cuda.md)")
            if status["device_count"] <= index:
                reason = status["reason"] or f"{status['device_count']} CUDA device(s)"
                raise DeviceUnavailableError(f"device {device!r} is not available: {reason}")
        allowed = CUDA_COMPUTE_TYPES if kind == "cuda" else COMPUTE_TYPES
        if compute_type not in allowed:
            raise ValueError(f"compute_type must be one of {allowed} on {kind}, got {compute_type!r}")
        core = _core()
        hi = core.build_info().get("max_intra_threads", 1 << 10)
        if isinstance(intra_threads, bool) or not isinstance(intra_threads, int) or not 0 <= intra_threads <= hi:
            raise ValueError(f"intra_threads must be an integer in [0, {hi}] (at most 4 x the cores available; "
                             f"0: one per core), got {intra_threads!r}")
        self.device = device
        self.compute_type = (resolve_cpu_compute_type(compute_type, core) if kind == "cpu" else
                             "float32" if compute_type in ("default", "auto") else compute_type)
        self.files = read_model_dir(model)
        self.cfg = self.files.config
        self.tokenizer = load_model_tokenizer(self.files)
        weights = load_weights_numpy(self.files)
        try:
            # one engine on every device: the model and loop over the device's ops (docs/cuda.md)
            self._engine = core.Engine(self.cfg.to_dict(), weights, intra_threads, self.compute_type,
                                       self.tokenizer.word_pieces(), device=kind, device_index=index)
        except ValueError as e:
            raise ModelError(f"{self.files.path}: {e}") from None
        self._lock = threading.Lock()  # the tokenizer is not documented as thread-safe
        self.default_batch = DEFAULT_BATCH
        self.reranker = None
        if rerank_model is not None:   # the AR model for rerank=True, on the same device and threads
            self.reranker = self._check_reranker(Translator(rerank_model, device=device, compute_type=compute_type,
                                                            intra_threads=intra_threads))

    def new_batch(self):
        """A resumable batch on this model's engine (`_core.Batch`, continuous batching; serving.Scheduler)."""
        from . import _core

        return _core.Batch(self._engine)

    @property
    def intra_threads(self) -> int:
        """Threads the engine uses (1 on cuda: one host thread drives the GPU)."""
        return getattr(self._engine, "num_threads", 1)

    def _check_engine_options(self, opts) -> None:
        """The engine's own check of the options for this model and device (RefineOptions::validate /
        ArOptions::validate: the ranges again, and what the device implements)."""
        self._engine.validate(**engine_options(opts, self.cfg.objective))

    def _decode(self, srcs, opts):
        if self.cfg.objective == "ar":
            outs = self._engine.translate_ar(srcs, **engine_options(opts, "ar"))
        else:
            outs = self._engine.translate(srcs, **engine_options(opts, self.cfg.objective))
        return [DecodeResult(*o) for o in outs]

    def _score(self, srcs, tgts):
        return self._engine.score_ar(srcs, tgts)

    # --- introspection (tests and benchmarks) -------------------------------------------------
    def set_profiling(self, enabled: bool = True) -> None:
        """Collect a time breakdown of the engine (see profile())."""
        self._engine.set_profiling(enabled)

    def profile(self) -> dict:
        """Seconds per phase (gemm, attention, vocab, remask, layers_other, total), GEMM flops and the
        GEMM shapes (M, N, K, calls, seconds) since set_profiling(True). On cuda every op synchronises, so the
        phases are the device's times."""
        return self._engine.profile()
