"""Export an `ar` model to Hugging Face T5 and to CTranslate2 (through its Transformers converter)."""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from ..config import ModelError, load_weights_numpy, read_model_dir


def hf_t5_config(cfg) -> dict:
    return {
        "architectures": ["T5ForConditionalGeneration"], "model_type": "t5", "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model, "d_kv": cfg.d_kv, "d_ff": cfg.d_ff, "num_layers": cfg.num_encoder_layers,
        "num_decoder_layers": cfg.num_decoder_layers, "num_heads": cfg.num_heads,
        "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
        "relative_attention_max_distance": cfg.relative_attention_max_distance,
        "dropout_rate": cfg.dropout_rate, "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "feed_forward_proj": cfg.feed_forward_proj, "tie_word_embeddings": cfg.tie_word_embeddings,
        "is_encoder_decoder": True, "pad_token_id": cfg.pad_id, "eos_token_id": cfg.eos_id,
        "decoder_start_token_id": cfg.decoder_start_token_id, "initializer_factor": 1.0,
        "n_positions": max(cfg.max_source_len, cfg.max_target_len),
    }


def export_hf(model_dir, out_dir) -> Path:
    """Write a folder that transformers.T5ForConditionalGeneration / T5Tokenizer load."""
    from safetensors.numpy import save_file

    files = read_model_dir(model_dir)
    cfg = files.config
    if cfg.objective != "ar":
        raise ModelError(f"{files.path}: only ar models export to Hugging Face T5 / CTranslate2 "
                         f"(objective is {cfg.objective!r})")
    w = load_weights_numpy(files)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    w["encoder.embed_tokens.weight"] = w["shared.weight"]
    w["decoder.embed_tokens.weight"] = w["shared.weight"]
    if cfg.tie_word_embeddings:
        w["lm_head.weight"] = w["shared.weight"]
    save_file({k: v.copy() for k, v in w.items()}, str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "config.json").write_text(json.dumps(hf_t5_config(cfg), indent=2))
    shutil.copyfile(files.spm_path, out / "spiece.model")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "T5Tokenizer", "extra_ids": 0, "eos_token": "</s>", "unk_token": "<unk>",
        "pad_token": "<pad>", "model_max_length": cfg.max_source_len, "additional_special_tokens": []}))
    return out


def pack_model(model_dir, out_dir, dtype: str = "float16", force: bool = False) -> Path:
    """Copy a model directory with its weights stored as float16 (half the size) or float32.

    The engines and the reference decoder read either and compute in float32, so a packed model
    decodes exactly like the float32 model with its weights rounded to float16 once.
    """
    import numpy as np
    from safetensors.numpy import save_file

    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be 'float16' or 'float32', got {dtype!r}")
    files = read_model_dir(model_dir)
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (use force=True / --force)")
    w = load_weights_numpy(files)
    packed = {k: v.astype(np.float16 if dtype == "float16" else np.float32) for k, v in w.items()}
    for k, v in packed.items():
        if not np.isfinite(v).all():
            raise ModelError(f"{files.path}: tensor {k} overflows {dtype}")
    out.mkdir(parents=True, exist_ok=True)
    save_file(packed, str(out / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(files.spm_path, out / "spm.model")
    files.config.save(out / "config.json", tokenizer=out / "spm.model", weights=out / "model.safetensors")
    card = dict(files.training)
    card["storage_dtype"] = dtype
    card["packed_from"] = str(files.path)
    (out / "training.json").write_text(json.dumps(card, indent=2) + "\n")
    return out


def export_ctranslate2(model_dir, out_dir, quantization: str | None = None, force: bool = False) -> Path:
    try:
        import ctranslate2.converters
    except ImportError:
        raise ImportError("exporting to CTranslate2 needs the [bench] extra: pip install 'gmlm-engine[bench]'") from None
    with tempfile.TemporaryDirectory() as tmp:
        hf = export_hf(model_dir, Path(tmp) / "hf")
        conv = ctranslate2.converters.TransformersConverter(str(hf))
        conv.convert(str(out_dir), quantization=quantization, force=force)
    shutil.copyfile(Path(model_dir) / "spm.model", Path(out_dir) / "spm.model")
    return Path(out_dir)


class CT2Translator:
    """CTranslate2 running an exported ar model, with our tokenizer (the AR baseline and teacher)."""

    def __init__(self, ct2_dir, threads: int = 0, device: str = "cpu", compute_type: str = "default",
                 inter_threads: int = 1):
        """compute_type as CTranslate2 takes it: "default" (the exported float32), "int8", "auto" ...;
        threads: intra_threads of each of inter_threads workers (batches run in parallel across workers)."""
        import ctranslate2

        from ..tokenizer import Tokenizer

        self.tok = Tokenizer(Path(ct2_dir) / "spm.model")
        self.tr = ctranslate2.Translator(str(ct2_dir), device=device, intra_threads=threads,
                                         inter_threads=inter_threads, compute_type=compute_type)
        self.compute_type = self.tr.compute_type

    def translate_batch(self, source: list[str], beam_size: int = 1, max_batch_size: int = 0,
                        max_decoding_length: int = 96, length_penalty: float = 1.0) -> list[str]:
        """length_penalty: CTranslate2's beam score is log-prob sum / length**length_penalty."""
        toks = [self.tok.pieces(ids) + ["</s>"] if self.tok.translatable(ids) else [] for ids in self.tok.encode(source)]
        todo = [i for i, t in enumerate(toks) if t]
        res = self.tr.translate_batch([toks[i] for i in todo], beam_size=beam_size, max_batch_size=max_batch_size,
                                      max_decoding_length=max_decoding_length, length_penalty=length_penalty)
        out = [""] * len(source)
        for i, r in zip(todo, res):
            out[i] = self.tok.sp.DecodePieces(r.hypotheses[0])
        return out
