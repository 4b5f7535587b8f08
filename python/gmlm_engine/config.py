"""The model directory format: config.json, model.safetensors, spm.model, training.json.

Everything here is plain Python + numpy + safetensors: loading a model for the engine needs no
PyTorch.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

FORMAT_VERSION = 1
OBJECTIVES = ("gmlm", "ar", "ctc")
FEED_FORWARD = ("relu", "gated-gelu")


# Bounds on config.json's sizes, checked before anything is allocated (a model of this format is small;
# a corrupted or hostile file must not make the loader build 10**9 tensor names).
SIZE_LIMITS = {"vocab_size": 1 << 20, "d_model": 16384, "d_kv": 4096, "d_ff": 65536, "num_heads": 256,
               "num_encoder_layers": 256, "num_decoder_layers": 256, "relative_attention_num_buckets": 1024,
               "relative_attention_max_distance": 1 << 16, "max_source_len": 1 << 16, "max_target_len": 1 << 16}
SPECIAL_ID_FIELDS = ("pad_id", "eos_id", "unk_id", "mask_id", "len_id")
MAX_LAYER_NORM_EPSILON = 0.01
# |weight| above this is corruption, not training (the shipped models stay below 10): fp16's largest
# values overflow fp32 activations to Inf/NaN and every output turns into "".
MAX_ABS_WEIGHT = 1e4


# config.json keys that older directories may lack (their dataclass default applies).
OPTIONAL_KEYS = ("tokenizer_sha256", "weights_sha256", "ctc_upsample")
MAX_CTC_UPSAMPLE = 8


def ctc_canvas_length(upsample: float, source_tokens: int, max_target_len: int) -> int:
    """The canvas of a ctc model (docs/decoding.md, "CTC models"): min(max_target_len, ceil(upsample x S)), the
    product in float64 (exact for ratios such as 1.5 or 1.25). The engine's twin: T5Config::ctc_canvas."""
    return min(max_target_len, math.ceil(float(upsample) * source_tokens))


class ModelError(Exception):
    """A model directory is missing, incomplete or inconsistent."""


def file_sha256(path: str | os.PathLike) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _no_duplicate_keys(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError(f"duplicate key {k!r}")
        d[k] = v
    return d


def _read_json(path: Path):
    """A JSON file of a model directory; ModelError naming the file for anything unreadable, invalid,
    or with a key given twice (JSON parsers silently keep the last one)."""
    data = _read_file(path)
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except (ValueError, UnicodeDecodeError) as e:   # JSONDecodeError, duplicates, over-long integers
        raise ModelError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise ModelError(f"{path}: not valid JSON (nested too deeply)") from None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise ModelError(f"{path}: permission denied (the file cannot be read)") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot be read ({e.strerror or e})") from None


def _check_file(path: Path, required: bool = True) -> bool:
    """True if path is a regular file; ModelError if it is required and missing, if it cannot be
    looked at (permissions), or if it is something else (a folder, a device)."""
    import stat

    try:
        st = path.stat()
    except FileNotFoundError:
        if required:
            raise ModelError(f"{path.parent}: missing {path.name}") from None
        return False
    except PermissionError:
        raise ModelError(f"{path}: permission denied (cannot look at the file)") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot be looked at ({e.strerror or e})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ModelError(f"{path}: not a regular file")
    return True


@dataclass
class ModelConfig:
    objective: str = "gmlm"
    vocab_size: int = 8000
    d_model: int = 256
    d_kv: int = 64
    d_ff: int = 1024
    num_heads: int = 4
    num_encoder_layers: int = 4
    num_decoder_layers: int = 3
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    feed_forward_proj: str = "relu"
    layer_norm_epsilon: float = 1e-6
    tie_word_embeddings: bool = True
    dropout_rate: float = 0.1
    max_source_len: int = 128
    max_target_len: int = 128
    pad_id: int = 0
    eos_id: int = 1
    unk_id: int = 2
    mask_id: int = 3
    len_id: int = 4
    decoder_start_token_id: int = 0
    format_version: int = FORMAT_VERSION
    # sha256 of the spm.model written with these weights ("" in directories written before 2026-12-06:
    # loadable, with a warning). A SentencePiece model trained on other text can have the same size and
    # special ids and still decode these weights into nonsense; only its bytes tell.
    tokenizer_sha256: str = ""
    weights_sha256: str = ""    # model.safetensors' checksum: any change to the file after it was written is found
    # ctc models only: the canvas of a source of S encoder tokens has ctc_canvas_length(ctc_upsample, S,
    # max_target_len) positions (docs/decoding.md, "CTC models"); a number in [1, 8] (2, 1.5, ...); 0 for the other
    # objectives (and absent from their config.json).
    ctc_upsample: float = 0

    def ctc_canvas(self, source_tokens: int) -> int:
        """A ctc model's canvas length for a source of that many encoder tokens."""
        return ctc_canvas_length(self.ctc_upsample, source_tokens, self.max_target_len)

    def validate(self) -> "ModelConfig":
        """Check every field; raise ModelError naming config.json, the field and the problem."""
        if self.objective not in OBJECTIVES:
            raise ModelError(f"config.json: objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.feed_forward_proj not in FEED_FORWARD:
            raise ModelError(f"config.json: feed_forward_proj must be one of {FEED_FORWARD}, "
                             f"got {self.feed_forward_proj!r}")
        for name, hi in SIZE_LIMITS.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= hi:
                raise ModelError(f"config.json: {name} must be an integer in [1, {hi}], got {v!r}")
        nb, md = self.relative_attention_num_buckets, self.relative_attention_max_distance
        if nb < 4:
            raise ModelError(f"config.json: relative_attention_num_buckets must be >= 4, got {nb}")
        if md <= nb // 2:
            raise ModelError(f"config.json: relative_attention_max_distance ({md}) must exceed half of "
                             f"relative_attention_num_buckets ({nb // 2}): T5's log-spaced buckets start there")
        for name in SPECIAL_ID_FIELDS + ("decoder_start_token_id",):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < self.vocab_size:
                raise ModelError(f"config.json: {name} must be a token id in [0, {self.vocab_size}), got {v!r}")
        if self.objective == "ar" and self.decoder_start_token_id != self.pad_id:
            raise ModelError(f"config.json: decoder_start_token_id must be pad_id ({self.pad_id}) for an ar model, "
                             f"as T5 starts decoding; got {self.decoder_start_token_id}")
        ids = [getattr(self, n) for n in SPECIAL_ID_FIELDS]
        if len(set(ids)) != len(ids):
            raise ModelError("config.json: the special ids must be distinct, got "
                             + ", ".join(f"{n}={getattr(self, n)}" for n in SPECIAL_ID_FIELDS))
        eps = self.layer_norm_epsilon
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps <= MAX_LAYER_NORM_EPSILON:
            raise ModelError(f"config.json: layer_norm_epsilon must be in (0, {MAX_LAYER_NORM_EPSILON}], got {eps!r}")
        r = self.dropout_rate
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not 0 <= r < 1:
            raise ModelError(f"config.json: dropout_rate must be in [0, 1), got {r!r}")
        if not isinstance(self.tie_word_embeddings, bool):
            raise ModelError(f"config.json: tie_word_embeddings must be true or false, got {self.tie_word_embeddings!r}")
        if self.format_version != FORMAT_VERSION:
            raise ModelError(f"config.json: format_version {self.format_version} is not supported "
                             f"(this version reads {FORMAT_VERSION})")
        up = self.ctc_upsample
        if self.objective == "ctc":
            if not isinstance(up, (int, float)) or isinstance(up, bool) or not 1 <= up <= MAX_CTC_UPSAMPLE:
                raise ModelError(f"config.json: ctc_upsample must be a number in [1, {MAX_CTC_UPSAMPLE}] for a ctc "
                                 f"model, got {up!r}")
        elif up != 0:
            raise ModelError(f"config.json: ctc_upsample applies to ctc models only, got {up!r} for a "
                             f"{self.objective} model")
        if self.max_source_len < 3:
            raise ModelError("config.json: max_source_len must be at least 3")
        for key in ("tokenizer_sha256", "weights_sha256"):
            t = getattr(self, key)
            if not isinstance(t, str) or (t and (len(t) != 64 or any(c not in "0123456789abcdef" for c in t))):
                raise ModelError(f"config.json: {key} must be 64 lowercase hex digits, got {t!r}")
        return self

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.objective != "ctc":
            del d["ctc_upsample"]
        return d

    @property
    def parallel(self) -> bool:
        """The decoder attends both ways and reads learned absolute positions (gmlm and ctc; not ar)."""
        return self.objective != "ar"

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        if not isinstance(d, dict):
            raise ModelError("config.json must hold a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ModelError(f"config.json: unknown keys {unknown}")
        missing = sorted(known - set(d) - set(OPTIONAL_KEYS))
        if missing:  # no silent defaults: a model trained with max_source_len 96 must not become 128
            raise ModelError(f"config.json: missing keys {missing}")
        return cls(**d).validate()

    def save(self, path: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
             weights: str | os.PathLike | None = None) -> None:
        """Write config.json; with `tokenizer` / `weights` (the spm.model / model.safetensors written beside it)
        record its checksum."""
        d = self.to_dict()
        if tokenizer is not None:
            d["tokenizer_sha256"] = file_sha256(tokenizer)
        if weights is not None:
            d["weights_sha256"] = file_sha256(weights)
        Path(path).write_text(json.dumps(d, indent=2) + "\n")

    # --- weight layout ----------------------------------------------------------------------
    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor name of model.safetensors and its shape (the contract every loader checks)."""
        D, I, F, V = self.d_model, self.num_heads * self.d_kv, self.d_ff, self.vocab_size
        shapes: dict[str, tuple[int, ...]] = {"shared.weight": (V, D)}

        def ffn(prefix):
            if self.feed_forward_proj == "relu":
                shapes[f"{prefix}.DenseReluDense.wi.weight"] = (F, D)
            else:
                shapes[f"{prefix}.DenseReluDense.wi_0.weight"] = (F, D)
                shapes[f"{prefix}.DenseReluDense.wi_1.weight"] = (F, D)
            shapes[f"{prefix}.DenseReluDense.wo.weight"] = (D, F)
            shapes[f"{prefix}.layer_norm.weight"] = (D,)

        def attn(prefix, kind):
            for p in "qkv":
                shapes[f"{prefix}.{kind}.{p}.weight"] = (I, D)
            shapes[f"{prefix}.{kind}.o.weight"] = (D, I)
            shapes[f"{prefix}.layer_norm.weight"] = (D,)

        for stack, n in (("encoder", self.num_encoder_layers), ("decoder", self.num_decoder_layers)):
            for i in range(n):
                b = f"{stack}.block.{i}"
                attn(f"{b}.layer.0", "SelfAttention")
                if stack == "decoder":
                    attn(f"{b}.layer.1", "EncDecAttention")
                    ffn(f"{b}.layer.2")
                else:
                    ffn(f"{b}.layer.1")
            shapes[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = (
                self.relative_attention_num_buckets, self.num_heads)
            shapes[f"{stack}.final_layer_norm.weight"] = (D,)
        if not self.tie_word_embeddings:
            shapes["lm_head.weight"] = (V, D)
        if self.objective == "gmlm":
            shapes["length_head.weight"] = (self.max_target_len, D)
        if self.parallel:
            shapes["decoder.embed_positions.weight"] = (self.max_target_len, D)
        return shapes


@dataclass
class ModelFiles:
    path: Path
    config: ModelConfig
    weights_path: Path
    spm_path: Path
    training: dict = field(default_factory=dict)


def resolve_model_dir(model: str | os.PathLike) -> Path:
    """'default' -> the shipped model; otherwise a directory path."""
    if isinstance(model, bytes) or not isinstance(model, (str, os.PathLike)):
        raise ValueError(f"model must be a model directory (a path) or 'default', got {model!r}")
    if str(model) == "default":
        from . import default_model_dir

        return default_model_dir()
    p = Path(model)
    try:
        if not p.exists():
            try:
                os.stat(p)
            except OSError as e:
                if e.errno == errno.ELOOP:   # exists() says False for a loop: it is there, and broken
                    raise ModelError(f"{p}: a loop of symbolic links, not a model directory") from None
            raise FileNotFoundError(f"model directory not found: {p}")
    except PermissionError:
        raise ModelError(f"{p}: permission denied (cannot look at the model directory)") from None
    if not p.is_dir():
        raise ModelError(f"model path is not a directory: {p}")
    return p


def read_model_dir(model: str | os.PathLike) -> ModelFiles:
    p = resolve_model_dir(model)
    cfg_path = p / "config.json"
    _check_file(cfg_path)
    d = _read_json(cfg_path)
    try:
        cfg = ModelConfig.from_dict(d)
    except TypeError as e:
        raise ModelError(f"{cfg_path}: {e}") from None
    except ModelError as e:  # name the file, not just config.json
        raise ModelError(f"{p}/{e}") from None
    w = p / "model.safetensors"
    _check_file(w)
    spm = p / "spm.model"
    _check_file(spm)
    if cfg.tokenizer_sha256:
        import hashlib

        if hashlib.sha256(_read_file(spm)).hexdigest() != cfg.tokenizer_sha256:
            raise ModelError(f"{spm}: not the tokenizer these weights were written with (its sha256 differs from "
                             "config.json's tokenizer_sha256)")
    else:
        import warnings

        warnings.warn(f"{cfg_path} records no tokenizer_sha256 (written before 2026-12-06): spm.model cannot be "
                      "checked against the weights; `gmlm export --pack` writes a directory that has it",
                      stacklevel=3)
    training = {}
    tj = p / "training.json"
    if _check_file(tj, required=False):
        training = _read_json(tj)
        if not isinstance(training, dict):
            raise ModelError(f"{tj}: must hold a JSON object")
    return ModelFiles(p, cfg, w, spm, training)


def load_weights_numpy(files: ModelFiles, dtype="float32") -> dict:
    """Read model.safetensors into float32 numpy arrays, checking every name, shape and value."""
    import numpy as np

    raw = _read_safetensors(files.weights_path, files.config.weights_sha256)
    expected = files.config.weight_shapes()
    missing = sorted(set(expected) - set(raw))
    if missing:
        raise ModelError(f"{files.weights_path}: missing tensors {missing[:5]}"
                         + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    unexpected = sorted(set(raw) - set(expected))
    if unexpected:
        raise ModelError(f"{files.weights_path}: unexpected tensors {unexpected[:5]}")
    out = {}
    for name, shape in expected.items():
        a = raw[name]
        if tuple(a.shape) != shape:
            raise ModelError(f"{files.weights_path}: tensor {name} has shape {tuple(a.shape)}, "
                             f"expected {shape} from config.json")
        a = np.ascontiguousarray(a.astype(dtype))
        if not np.isfinite(a).all():
            raise ModelError(f"{files.weights_path}: tensor {name} contains NaN or Inf values")
        if a.size and not a.any():
            # a trained model never has an all-zero weight matrix, norm or embedding: a download cut short
            # into a pre-allocated file, or weights never written (the model would translate everything to "")
            raise ModelError(f"{files.weights_path}: tensor {name} is all zeros: the file is damaged or incomplete")
        if a.size and float(np.abs(a).max()) > MAX_ABS_WEIGHT:
            raise ModelError(f"{files.weights_path}: tensor {name} has values up to {float(np.abs(a).max()):.3g}; "
                             f"weights above {MAX_ABS_WEIGHT:g} in magnitude are corruption (they overflow)")
        out[name] = a
    return out


# safetensors dtype -> how to read it (bfloat16 has no numpy type: its 16 bits are float32's upper half)
_SAFETENSORS_DTYPES = {"F32": "<f4", "F16": "<f2", "BF16": "<u2"}
_SAFETENSORS_NAMES = {"F64": "float64", "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                      "BOOL": "bool"}


def _read_safetensors(path: Path, sha256: str = "") -> dict:
    """name -> numpy array (float32 / float16; bfloat16 widened to float32) of a safetensors file; with `sha256`
    (config.json's weights_sha256) the file must have that checksum."""
    import hashlib

    import numpy as np
    from safetensors import deserialize

    data = _read_file(path)
    if sha256 and hashlib.sha256(data).hexdigest() != sha256:
        # a file damaged (a download cut short, bits flipped) or changed after it was written: weights scaled
        # by 100 still load and translate, into nonsense; only the checksum tells
        raise ModelError(f"{path}: its sha256 differs from config.json's weights_sha256: the file is damaged or "
                         "was changed after the model was written (gmlm export --pack writes a new checksum)")
    try:
        tensors = deserialize(data)
    except Exception as e:  # noqa: BLE001  (safetensors raises several kinds)
        raise ModelError(f"{path}: cannot read safetensors file ({e})") from None
    out = {}
    for name, t in tensors:
        code = _SAFETENSORS_DTYPES.get(t["dtype"])
        if code is None:
            kind = _SAFETENSORS_NAMES.get(t["dtype"], t["dtype"])
            raise ModelError(f"{path}: tensor {name} has dtype {kind}, expected float32, float16 or bfloat16")
        a = np.frombuffer(t["data"], dtype=code)
        if t["dtype"] == "BF16":
            a = (a.astype(np.uint32) << np.uint32(16)).view(np.float32)
        n = int(np.prod(t["shape"], dtype=np.int64)) if t["shape"] else 1
        if a.size != n:
            raise ModelError(f"{path}: tensor {name} holds {a.size} values for shape {tuple(t['shape'])}")
        out[name] = a.reshape(t["shape"])
    return out
