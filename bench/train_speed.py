"""Training speed and early learning: `gmlm train`'s model and optimiser next to a plain
`torch.nn.Transformer` of the same size, on the same batches, in one process.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/train_speed.py --steps 400 --eval-every 100 \
        [--systems gmlm,gmlm-t5-lr,plain] [--threads 2] [--max-tokens 2048] [--out bench/results/train_speed.json]

Systems (objective ar, d_model 256, d_ff 1024, 4 heads, 3+3 layers, tied 8k vocabulary, dropout 0.1):
  gmlm        the trainer as `gmlm train` runs it (param_groups: std-1 tables at lr x sqrt(d_model),
              fused attention, bf16 autocast only where the CPU has it)
  gmlm-t5-lr  the same model with one learning rate for every parameter (the trainer before the fix)
  gmlm-q-lr   `gmlm` with the attention queries' learning rate x d_kv^-0.5 (--query-lr-scale 0)
  plain       torch.nn.Transformer (pre-norm, learned positions, embedding std d^-0.5 read x sqrt(d),
              tied output layer), the textbook baseline
Every system sees the same batch sequence (Examples / make_batch / token_batches, seed 1), AdamW
betas (0.9, 0.98), inverse-sqrt warm-up, label smoothing 0.1, clip 1.0. Reported: validation loss
(nats per target token, no smoothing, the whole val split) every --eval-every steps, and training
tokens/s (target + source tokens, padding excluded; validation not timed). The systems run one after
another (not interleaved) so each has both threads to itself.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from gmlm_engine.config import ModelConfig
from gmlm_engine.data import load_split, token_batches
from gmlm_engine.pytorch.model import T5Model
from gmlm_engine.tokenizer import Tokenizer
from gmlm_engine.pytorch.train import Examples, autocast_dtype, compute_loss, lr_at, make_batch, param_groups


class PlainTransformer(nn.Module):
    """nn.Transformer with learned positions and a tied, sqrt(d)-scaled embedding."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d = cfg.d_model
        self.d = d
        self.emb = nn.Embedding(cfg.vocab_size, d)
        nn.init.normal_(self.emb.weight, std=d ** -0.5)
        self.pos = nn.Embedding(max(cfg.max_source_len, cfg.max_target_len) + 1, d)
        nn.init.normal_(self.pos.weight, std=d ** -0.5)
        self.tf = nn.Transformer(d, cfg.num_heads, cfg.num_encoder_layers, cfg.num_decoder_layers, cfg.d_ff,
                                 cfg.dropout_rate, batch_first=True, norm_first=True)

    def embed(self, ids):
        return self.emb(ids) * self.d ** 0.5 + self.pos.weight[:ids.shape[1]]

    def loss(self, b: dict, label_smoothing: float):
        T = b["tgt_in"].shape[1]
        causal = nn.Transformer.generate_square_subsequent_mask(T)
        h = self.tf(self.embed(b["src"]), self.embed(b["tgt_in"]), tgt_mask=causal,
                    src_key_padding_mask=~b["src_mask"], tgt_key_padding_mask=~b["tgt_mask"],
                    memory_key_padding_mask=~b["src_mask"], tgt_is_causal=True)
        sel = b["labels"] != -100
        logits = F.linear(h[sel], self.emb.weight).float()
        y = b["labels"][sel]
        loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
        return loss, float(F.cross_entropy(logits.detach(), y, reduction="sum")), int(sel.sum())


def build(system: str, cfg: ModelConfig, lr: float):
    torch.manual_seed(1)
    if system == "plain":
        m = PlainTransformer(cfg)
        groups = [{"params": list(m.parameters()), "lr_scale": 1.0, "weight_decay": 0.01}]
        loss = lambda b, ls: m.loss(b, ls)  # noqa: E731
    else:
        m = T5Model(cfg)
        groups = param_groups(m, 0.01, 1.0 if system == "gmlm-t5-lr" else None,
                              None if system == "gmlm-q-lr" else 1.0)
        loss = lambda b, ls: compute_loss(m, b, ls, 0.0)  # noqa: E731
    return m, torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), eps=1e-8), loss


@torch.no_grad()
def val_loss(m, loss, val_batches):
    m.eval()
    tot = cnt = 0
    for b in val_batches:
        _, nll, n = loss(b, 0.0)
        tot, cnt = tot + nll, cnt + n
    m.train()
    return tot / cnt


def run_system(system, cfg, train_batches, val_batches, args, amp):
    m, opt, loss = build(system, cfg, args.lr)
    m.train()
    curve, secs, toks = [], 0.0, 0
    for step, (b, ntok) in enumerate(train_batches, 1):
        t0 = time.perf_counter()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.lr, args.warmup) * g["lr_scale"]
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None and system != "plain-fp32"):
            l, _, _ = loss(b, 0.1)
        opt.zero_grad(set_to_none=True)
        l.backward()
        torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        secs += time.perf_counter() - t0
        toks += ntok
        if step % args.eval_every == 0:
            v = val_loss(m, loss, val_batches)
            curve.append({"step": step, "val_loss": round(v, 4), "tokens_per_s": round(toks / secs, 1),
                          "s_per_step": round(secs / step, 4)})
            print(system, json.dumps(curve[-1]), file=sys.stderr, flush=True)
    return curve


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--spm", default=str(Path(__file__).resolve().parents[1] / "models" / "ar-en-de" / "spm.model"))
    p.add_argument("--systems", default="gmlm,plain,gmlm-t5-lr")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--max-tokens", type=int, default=2048)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup", type=int, default=300)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--autocast", default="auto", choices=("auto", "bf16", "off"))
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    amp = autocast_dtype(args.autocast, torch.device("cpu"))

    tok = Tokenizer(args.spm)
    cfg = ModelConfig(objective="ar", vocab_size=tok.vocab_size, d_model=256, d_kv=64, d_ff=1024, num_heads=4,
                      num_encoder_layers=3, num_decoder_layers=3, max_source_len=96, max_target_len=96,
                      mask_id=tok.mask_id, len_id=tok.len_id).validate()
    src, tgt = load_split(args.data_dir, "train")
    vsrc, vtgt = load_split(args.data_dir, "val")
    ex, ex_val = Examples(tok, cfg, src, tgt), Examples(tok, cfg, vsrc, vtgt)
    gen = torch.Generator().manual_seed(1)
    train_batches, epoch = [], 0
    while len(train_batches) < args.steps:
        for idx in token_batches(ex.lengths, args.max_tokens, True, 1 + epoch):
            b = make_batch(ex, idx, cfg, gen)
            ntok = int(b["src_mask"].sum() + b["tgt_mask"].sum())
            train_batches.append((b, ntok))
        epoch += 1
    train_batches = train_batches[:args.steps]
    val_batches = [make_batch(ex_val, idx, cfg, gen) for idx in token_batches(ex_val.lengths, 4096, shuffle=False)]

    res = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": args.threads,
                       "torch": torch.__version__, "autocast": str(amp)},
           "settings": {k: v for k, v in vars(args).items() if k != "out"}, "systems": {}}
    for system in args.systems.split(","):
        res["systems"][system] = run_system(system, cfg, train_batches, val_batches, args, amp)
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
