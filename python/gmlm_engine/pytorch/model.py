"""The T5-style encoder-decoder in PyTorch (training and the reference decoder).

Shapes: B batch, S source length, T target length, D d_model, H heads, Dh d_kv, V vocab.
Parameter names follow Hugging Face T5 (see docs/decoding.md), so that state_dict() is the
content of model.safetensors.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import ModelConfig


def relative_position_bucket(rp: torch.Tensor, bidirectional: bool, num_buckets: int, max_distance: int):
    buckets = torch.zeros_like(rp)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (rp > 0).long() * num_buckets
        rp = rp.abs()
    else:
        rp = -torch.clamp(rp, max=0)
    max_exact = num_buckets // 2
    is_small = rp < max_exact
    large = max_exact + (torch.log(rp.clamp(min=1).float() / max_exact)
                         / math.log(max_distance / max_exact) * (num_buckets - max_exact)).long()
    large = torch.clamp(large, max=num_buckets - 1)
    return buckets + torch.where(is_small, rp, large)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        var = x.float().pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, has_bias_table: bool, bidirectional: bool):
        super().__init__()
        inner = cfg.num_heads * cfg.d_kv
        self.h, self.dh = cfg.num_heads, cfg.d_kv
        self.q = nn.Linear(cfg.d_model, inner, bias=False)
        self.k = nn.Linear(cfg.d_model, inner, bias=False)
        self.v = nn.Linear(cfg.d_model, inner, bias=False)
        self.o = nn.Linear(inner, cfg.d_model, bias=False)
        self.bidirectional = bidirectional
        self.nb, self.maxd = cfg.relative_attention_num_buckets, cfg.relative_attention_max_distance
        if has_bias_table:
            self.relative_attention_bias = nn.Embedding(self.nb, self.h)
        self.dropout = cfg.dropout_rate

    def position_bias(self, tq: int, tk: int, device, q_offset: int = 0) -> torch.Tensor:
        """(1, H, Tq, Tk) bias from this layer's table; queries at positions q_offset + 0..Tq-1."""
        ctx = torch.arange(q_offset, q_offset + tq, device=device)[:, None]
        mem = torch.arange(tk, device=device)[None, :]
        b = relative_position_bucket(mem - ctx, self.bidirectional, self.nb, self.maxd)
        return self.relative_attention_bias(b).permute(2, 0, 1).unsqueeze(0)

    def split(self, x):  # (B, T, I) -> (B, H, T, Dh)
        B, T, _ = x.shape
        return x.view(B, T, self.h, self.dh).transpose(1, 2)

    def forward(self, x, kv, bias, kv_cache=None):
        """x: (B, Tq, D); kv: (B, Tk, D) or None when kv_cache=(k, v) is given; bias: additive
        (B or 1, H or 1, Tq, Tk) holding position bias and -inf for masked keys."""
        q = self.split(self.q(x))
        if kv_cache is None:
            k, v = self.split(self.k(kv)), self.split(self.v(kv))
        else:
            k, v = kv_cache
        # T5 attention: no 1/sqrt(Dh) (it is folded into q's initialisation), so scale=1.0. The fused
        # kernel takes the additive position bias + key mask as attn_mask; softmax is fp32 inside.
        o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype),
                                           dropout_p=self.dropout if self.training else 0.0, scale=1.0)
        return self.o(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))


class FeedForward(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gated = cfg.feed_forward_proj == "gated-gelu"
        if self.gated:
            self.wi_0 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
            self.wi_1 = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        else:
            self.wi = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.wo = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)
        self.dropout = cfg.dropout_rate

    def forward(self, x):
        if self.gated:
            h = F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x)
        else:
            h = F.relu(self.wi(x))
        return self.wo(F.dropout(h, self.dropout, self.training))


class _Sub(nn.Module):
    """One HF-T5 'layer.N' entry: a norm and a sub-layer."""

    def __init__(self, cfg, name, module):
        super().__init__()
        setattr(self, name, module)
        self.layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, is_decoder: bool, first: bool, bidirectional: bool):
        super().__init__()
        layers = [_Sub(cfg, "SelfAttention", Attention(cfg, first, bidirectional))]
        if is_decoder:
            layers.append(_Sub(cfg, "EncDecAttention", Attention(cfg, False, True)))
        layers.append(_Sub(cfg, "DenseReluDense", FeedForward(cfg)))
        self.layer = nn.ModuleList(layers)
        self.is_decoder = is_decoder
        self.dropout = cfg.dropout_rate

    def forward(self, x, self_bias, enc=None, cross_bias=None, cross_kv=None):
        drop = lambda t: F.dropout(t, self.dropout, self.training)  # noqa: E731
        s = self.layer[0]
        h = s.layer_norm(x)
        x = x + drop(s.SelfAttention(h, h, self_bias))
        if self.is_decoder:
            c = self.layer[1]
            x = x + drop(c.EncDecAttention(c.layer_norm(x), enc, cross_bias, cross_kv))
        f = self.layer[-1]
        return x + drop(f.DenseReluDense(f.layer_norm(x)))


class Stack(nn.Module):
    def __init__(self, cfg: ModelConfig, is_decoder: bool, n: int, bidirectional: bool):
        super().__init__()
        self.block = nn.ModuleList([Block(cfg, is_decoder, i == 0, bidirectional) for i in range(n)])
        self.final_layer_norm = RMSNorm(cfg.d_model, cfg.layer_norm_epsilon)
        self.dropout = cfg.dropout_rate
        if is_decoder and bidirectional:
            # gmlm and ctc: learned absolute positions. Relative position bias alone cannot tell the
            # positions of an all-<mask> input apart (every row would get the same state).
            self.embed_positions = nn.Embedding(cfg.max_target_len, cfg.d_model)


NEG_INF = float("-inf")


def key_mask_bias(key_mask: torch.Tensor) -> torch.Tensor:
    """key_mask (B, Tk) bool, True = real token -> additive (B, 1, 1, Tk)."""
    return torch.zeros(key_mask.shape, dtype=torch.float32, device=key_mask.device).masked_fill(
        ~key_mask, NEG_INF)[:, None, None, :]


class T5Model(nn.Module):
    """Encoder-decoder for every objective; `cfg.objective` picks the decoder's attention pattern and heads."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.is_gmlm = cfg.objective == "gmlm"    # a length head
        self.parallel = cfg.parallel              # a bidirectional decoder with learned positions (gmlm, ctc)
        self.shared = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.encoder = Stack(cfg, False, cfg.num_encoder_layers, True)
        self.decoder = Stack(cfg, True, cfg.num_decoder_layers, self.parallel)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if self.is_gmlm:
            self.length_head = nn.Linear(cfg.d_model, cfg.max_target_len, bias=False)
        self.reset_parameters()

    def set_dropout(self, attention: float | None = None, activation: float | None = None) -> None:
        """Training only: dropout on the attention probabilities and on the feed-forward hidden units,
        apart from `cfg.dropout_rate` (embeddings, residual branches, final norms; T5 uses that one
        rate everywhere, the default here). None keeps a rate as it is."""
        for m in self.modules():
            if attention is not None and isinstance(m, Attention):
                m.dropout = attention
            if activation is not None and isinstance(m, FeedForward):
                m.dropout = activation

    def reset_parameters(self):
        """T5's initialisation (the attention has no 1/sqrt(d) scaling: it is in q's init)."""
        cfg = self.cfg
        D, Dh, H, Fd = cfg.d_model, cfg.d_kv, cfg.num_heads, cfg.d_ff
        for name, p in self.named_parameters():
            if name.endswith("layer_norm.weight"):
                nn.init.ones_(p)
            elif name in ("shared.weight", "decoder.embed_positions.weight"):
                nn.init.normal_(p, std=1.0)
            elif name in ("lm_head.weight", "length_head.weight"):
                nn.init.normal_(p, std=D ** -0.5)
            elif name.endswith(".q.weight"):
                nn.init.normal_(p, std=(D * Dh) ** -0.5)
            elif name.endswith((".k.weight", ".v.weight")):
                nn.init.normal_(p, std=D ** -0.5)
            elif name.endswith(".o.weight"):
                nn.init.normal_(p, std=(H * Dh) ** -0.5)
            elif "relative_attention_bias" in name:
                nn.init.normal_(p, std=D ** -0.5)
            elif name.endswith(("wi.weight", "wi_0.weight", "wi_1.weight")):
                nn.init.normal_(p, std=D ** -0.5)
            elif name.endswith("wo.weight"):
                nn.init.normal_(p, std=Fd ** -0.5)

    # --- encoder ---------------------------------------------------------------------------
    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        """src: (B, S) ids, src_mask: (B, S) bool -> (B, S, D) after the final norm."""
        x = F.dropout(self.shared(src), self.cfg.dropout_rate, self.training)
        S = src.shape[1]
        bias = self.encoder.block[0].layer[0].SelfAttention.position_bias(S, S, src.device) + key_mask_bias(src_mask)
        for blk in self.encoder.block:
            x = blk(x, bias)
        return F.dropout(self.encoder.final_layer_norm(x), self.cfg.dropout_rate, self.training)

    def length_logits(self, enc: torch.Tensor) -> torch.Tensor:
        """enc: (B, S, D) -> (B, max_target_len); class c means length c + 1."""
        return self.length_head(enc[:, 0])

    def cross_kv(self, enc: torch.Tensor):
        """Per decoder layer (k, v), each (B, H, S, Dh): computed once, reused by every iteration."""
        out = []
        for blk in self.decoder.block:
            a = blk.layer[1].EncDecAttention
            out.append((a.split(a.k(enc)), a.split(a.v(enc))))
        return out

    # --- decoder ---------------------------------------------------------------------------
    def decode(self, tgt_in, tgt_mask, enc, src_mask, cross_kv=None, enc_index=None):
        """tgt_in: (B', T) ids, tgt_mask: (B', T) bool; enc (B, S, D) and src_mask (B, S).
        enc_index (B',) maps each decoder row to its encoder row (length candidates share the
        encoder output). Returns decoder states (B', T, D) after the final norm."""
        T = tgt_in.shape[1]
        x = self.shared(tgt_in)
        if self.parallel:
            x = x + self.decoder.embed_positions.weight[:T]
        x = F.dropout(x, self.cfg.dropout_rate, self.training)
        sa = self.decoder.block[0].layer[0].SelfAttention
        self_bias = sa.position_bias(T, T, tgt_in.device) + key_mask_bias(tgt_mask)
        if not self.parallel:
            causal = torch.full((T, T), NEG_INF, device=tgt_in.device).triu(1)
            self_bias = self_bias + causal
        cross_bias = key_mask_bias(src_mask)
        if enc_index is not None:
            cross_bias = cross_bias[enc_index]
            enc = enc[enc_index] if cross_kv is None else None
        for i, blk in enumerate(self.decoder.block):
            ckv = None
            if cross_kv is not None:
                k, v = cross_kv[i]
                ckv = (k, v) if enc_index is None else (k[enc_index], v[enc_index])
            x = blk(x, self_bias, enc, cross_bias, ckv)
        return F.dropout(self.decoder.final_layer_norm(x), self.cfg.dropout_rate, self.training)

    def decode_reusing(self, tgt_in, tgt_mask, src_mask, cross_kv, enc_index, cache, fresh):
        """One gmlm refinement pass of cached refinement (docs/decoding.md, `cache_refresh`; eval mode):
        like decode(), except that at every layer the self-attention keys and values of the positions where
        `fresh` (B', T) is False are taken from `cache` (per layer [K, V], each (B', H, T, Dh): what the pass
        that last computed them wrote), and the fresh positions' are computed and written into `cache`.
        Only the fresh positions' states are meaningful."""
        T = tgt_in.shape[1]
        x = self.shared(tgt_in) + self.decoder.embed_positions.weight[:T]
        self_bias = self.decoder.block[0].layer[0].SelfAttention.position_bias(T, T, tgt_in.device) \
            + key_mask_bias(tgt_mask)
        cross_bias = key_mask_bias(src_mask)[enc_index]
        f = fresh[:, None, :, None]
        for i, blk in enumerate(self.decoder.block):
            s = blk.layer[0]
            a = s.SelfAttention
            h = s.layer_norm(x)
            cache[i][0] = torch.where(f, a.split(a.k(h)), cache[i][0])
            cache[i][1] = torch.where(f, a.split(a.v(h)), cache[i][1])
            x = x + a(h, None, self_bias, (cache[i][0], cache[i][1]))
            c = blk.layer[1]
            k, v = cross_kv[i]
            x = x + c.EncDecAttention(c.layer_norm(x), None, cross_bias, (k[enc_index], v[enc_index]))
            ff = blk.layer[2]
            x = x + ff.DenseReluDense(ff.layer_norm(x))
        return self.decoder.final_layer_norm(x)

    def vocab_logits(self, h: torch.Tensor) -> torch.Tensor:
        """h: (..., D) decoder states -> (..., V)."""
        if self.cfg.tie_word_embeddings:
            return F.linear(h * self.cfg.d_model ** -0.5, self.shared.weight)
        return self.lm_head(h)

    # --- incremental AR decoding (self-attention KV cache) --------------------------------------
    def new_self_cache(self, rows: int, max_len: int, device):
        shape = (rows, self.cfg.num_heads, max_len, self.cfg.d_kv)
        return [[torch.zeros(shape, device=device), torch.zeros(shape, device=device)]
                for _ in self.decoder.block]

    @staticmethod
    def reorder_self_cache(cache, index: torch.Tensor):
        for kv in cache:
            kv[0], kv[1] = kv[0][index], kv[1][index]

    def decode_step(self, tok, step: int, cache, cross_kv, src_mask):
        """tok: (R,) ids at position `step` -> (R, D) decoder state (eval mode, causal via the cache)."""
        x = self.shared(tok)[:, None]
        sa0 = self.decoder.block[0].layer[0].SelfAttention
        bias = sa0.position_bias(1, step + 1, tok.device, q_offset=step)
        cross_bias = key_mask_bias(src_mask)
        for i, blk in enumerate(self.decoder.block):
            s = blk.layer[0]
            a = s.SelfAttention
            h = s.layer_norm(x)
            cache[i][0][:, :, step] = a.split(a.k(h))[:, :, 0]
            cache[i][1][:, :, step] = a.split(a.v(h))[:, :, 0]
            x = x + a(h, None, bias, (cache[i][0][:, :, :step + 1], cache[i][1][:, :, :step + 1]))
            c = blk.layer[1]
            x = x + c.EncDecAttention(c.layer_norm(x), None, cross_bias, cross_kv[i])
            f = blk.layer[2]
            x = x + f.DenseReluDense(f.layer_norm(x))
        return self.decoder.final_layer_norm(x)[:, 0]

    def forward(self, src, src_mask, tgt_in, tgt_mask):
        enc = self.encode(src, src_mask)
        logits = self.vocab_logits(self.decode(tgt_in, tgt_mask, enc, src_mask))
        return logits, (self.length_logits(enc) if self.is_gmlm else None)


def load_torch_model(model_dir, device="cpu") -> tuple[T5Model, "ModelFiles"]:  # noqa: F821
    """Build a T5Model from a model directory (weights checked by load_weights_numpy)."""
    from ..config import load_weights_numpy, read_model_dir

    files = read_model_dir(model_dir)
    weights = load_weights_numpy(files)
    model = T5Model(files.config)
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), files


def save_model_dir(model: T5Model, out_dir, spm_path, training: dict | None = None, fp16: bool = False) -> None:
    import json
    import shutil
    from pathlib import Path

    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dtype = torch.float16 if fp16 else torch.float32
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    tmp = out / "model.safetensors.tmp"
    save_file(state, str(tmp), metadata={"format": "pt"})
    tmp.replace(out / "model.safetensors")
    if Path(spm_path).resolve() != (out / "spm.model").resolve():
        shutil.copyfile(spm_path, out / "spm.model")
    model.cfg.save(out / "config.json", tokenizer=out / "spm.model", weights=out / "model.safetensors")
    if training is not None:
        (out / "training.json").write_text(json.dumps(training, indent=2) + "\n")
