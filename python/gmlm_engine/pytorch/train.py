"""`gmlm train`: train a gmlm, ar or ctc model on parallel text (Multi30k by default).

AdamW with inverse-sqrt warm-up, label smoothing, dropout, gradient clipping, periodic validation
(loss and BLEU of the reference decoder on a slice of val), best/last checkpoints, averaging of
the last N checkpoints, resume, a progress bar, CPU or CUDA picked automatically, fixed seeds.
"""
from __future__ import annotations

import json
import math
import os
import platform
import random
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import MAX_CTC_UPSAMPLE, ModelConfig
from ..options import CTC_FIXED
from ..data import load_split, read_lines, split_file, token_batches
from .model import T5Model, load_torch_model, save_model_dir
from ..tokenizer import NUM_SPECIAL, Tokenizer, train_spm
from .train_options import add_arguments  # noqa: F401  (gmlm_engine.pytorch.train.add_arguments)


def _check(args) -> None:
    for name in ("lr", "max_tokens", "max_steps", "val_every"):
        if getattr(args, name) <= 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    if not 0 <= args.corrupt_keep + args.corrupt_random <= 1 or min(args.corrupt_keep, args.corrupt_random) < 0:
        raise ValueError("--corrupt-keep and --corrupt-random must be >= 0 and sum to at most 1")
    if getattr(args, "schedule_offset", 0) < 0:
        raise ValueError("--schedule-offset must be >= 0")
    if getattr(args, "restart_warmup", 0) < 0:
        raise ValueError("--restart-warmup must be >= 0")
    if not 0 <= getattr(args, "cooldown_steps", 0) <= args.max_steps:
        raise ValueError("--cooldown-steps must be in [0, --max-steps]")
    if not 0 <= args.label_smoothing < 1:
        raise ValueError("--label-smoothing must be in [0, 1)")
    if not 0 <= args.glancing_ratio <= 1 or not 0 <= args.glancing_share <= 1:
        raise ValueError("--glancing-ratio and --glancing-share must be in [0, 1]")
    if args.glancing_ratio and args.objective == "ar":
        raise ValueError("--glancing-ratio applies to --objective gmlm and ctc only")
    if args.objective == "ctc" and not 1 <= args.ctc_upsample <= MAX_CTC_UPSAMPLE:
        raise ValueError(f"--ctc-upsample must be in [1, {MAX_CTC_UPSAMPLE}]")
    share = getattr(args, "predicted_context", 0.0)
    if not 0 <= share <= 1:
        raise ValueError("--predicted-context must be in [0, 1]")
    if share and (args.objective != "gmlm" or args.glancing_ratio):
        raise ValueError("--predicted-context applies to --objective gmlm only, without --glancing-ratio")
    ms = getattr(args, "multistep", 0.0)
    if ms < 0 or (ms and (args.objective != "gmlm" or not args.init_from or args.glancing_ratio or share)):
        raise ValueError("--multistep is a weight >= 0 and applies to --objective gmlm with --init-from (the teacher), "
                         "without --glancing-ratio or --predicted-context")
    if getattr(args, "repeat_fallback", False) and not args.train_target:
        raise ValueError("--repeat-fallback applies with --train-target only")
    corr = getattr(args, "correction", 0.0)
    if not 0 <= corr <= 1:
        raise ValueError("--correction must be in [0, 1]")
    if corr and (args.objective != "gmlm" or args.glancing_ratio or share):
        raise ValueError("--correction applies to --objective gmlm only, without --glancing-ratio or --predicted-context")
    for name in ("dropout", "attention_dropout", "activation_dropout"):
        v = getattr(args, name, None)
        if v is not None and not 0 <= v < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1)")


def repeat_fallback(targets: list[str], references: list[str]) -> tuple[list[str], int]:
    """The targets, each one that repeats itself (`evaluate.repeats`) replaced by its reference when the reference
    does not; and how many were replaced."""
    from ..tools.evaluate import repeats

    swap = [repeats(t) and not repeats(r) for t, r in zip(targets, references)]
    return [r if s else t for t, r, s in zip(targets, references, swap)], sum(swap)


class Examples:
    """Tokenized pairs as id lists (encoder input and target pieces)."""

    def __init__(self, tok: Tokenizer, cfg: ModelConfig, src: list[str], tgt: list[str]):
        s_ids, t_ids = tok.encode(src), tok.encode(tgt)
        prefix = [cfg.len_id] if cfg.objective == "gmlm" else []
        room_t = cfg.max_target_len - (1 if cfg.objective == "ar" else 0)
        self.src, self.tgt = [], []
        for s, t in zip(s_ids, t_ids):
            if not s or not t:
                continue
            self.src.append(prefix + s[:cfg.max_source_len - len(prefix) - 1] + [cfg.eos_id])
            self.tgt.append(t[:room_t])
        self.lengths = [max(len(s), len(t) + 1) for s, t in zip(self.src, self.tgt)]

    def __len__(self):
        return len(self.src)


def _pad(seqs, pad):
    n = max(len(s) for s in seqs)
    out = torch.full((len(seqs), n), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s)
    return out


def make_batch(ex: Examples, idx: list[int], cfg: ModelConfig, gen: torch.Generator, corrupt=(0.0, 0.0)):
    """Tensors for one step. gmlm: masked target; ar: teacher forcing."""
    src = _pad([ex.src[i] for i in idx], cfg.pad_id)
    tgt_lists = [ex.tgt[i] for i in idx]
    if cfg.objective == "ctc":
        return ctc_batch(src, tgt_lists, cfg)
    if cfg.objective == "ar":
        labels = _pad([t + [cfg.eos_id] for t in tgt_lists], -100)
        tgt_in = _pad([[cfg.decoder_start_token_id] + t for t in tgt_lists], cfg.pad_id)
        return dict(src=src, src_mask=src != cfg.pad_id, tgt_in=tgt_in, tgt_mask=labels != -100, labels=labels)
    tgt = _pad(tgt_lists, -100)
    valid = tgt != -100
    L = valid.sum(1)
    # per-sentence masking ratio uniform in (0, 1], at least one token
    ratio = 1.0 - torch.rand(len(idx), generator=gen)
    n = torch.clamp(torch.ceil(ratio * L).long(), min=1)
    score = torch.rand(tgt.shape, generator=gen).masked_fill(~valid, 2.0)
    rank = score.argsort(1).argsort(1)
    noised = rank < n[:, None]
    tgt_in = tgt.clamp(min=0).masked_fill(~valid, cfg.pad_id)
    r = torch.rand(tgt.shape, generator=gen)
    keep, rand_tok = corrupt
    to_mask = noised & (r >= keep + rand_tok)
    to_rand = noised & (r >= keep) & (r < keep + rand_tok)
    tgt_in = tgt_in.masked_fill(to_mask, cfg.mask_id)
    random_ids = torch.randint(NUM_SPECIAL, cfg.vocab_size, tgt.shape, generator=gen)
    tgt_in = torch.where(to_rand, random_ids, tgt_in)
    labels = tgt.masked_fill(~noised, -100)
    return dict(src=src, src_mask=src != cfg.pad_id, tgt_in=tgt_in, tgt_mask=valid, labels=labels,
                target=tgt, length_labels=torch.clamp(L - 1, max=cfg.max_target_len - 1))


def canvas_lengths(src_mask: torch.Tensor, cfg: ModelConfig) -> torch.Tensor:
    """ctc: each source's canvas length (ModelConfig.ctc_canvas of its encoder tokens)."""
    return torch.tensor([cfg.ctc_canvas(int(n)) for n in src_mask.sum(1)])


def ctc_batch(src: torch.Tensor, tgt_lists: list[list[int]], cfg: ModelConfig) -> dict:
    """ctc: an all-<mask> canvas per source (docs/decoding.md, "CTC models") and the targets as CTC labels."""
    src_mask = src != cfg.pad_id
    U = canvas_lengths(src_mask, cfg)
    valid = torch.arange(int(U.max()))[None, :] < U[:, None]
    tgt_in = torch.full(valid.shape, cfg.pad_id, dtype=torch.long).masked_fill(valid, cfg.mask_id)
    return dict(src=src, src_mask=src_mask, tgt_in=tgt_in, tgt_mask=valid, target=_pad(tgt_lists, cfg.pad_id),
                target_lengths=torch.tensor([len(t) for t in tgt_lists]))


@torch.no_grad()
def ctc_alignment(logp: torch.Tensor, valid: torch.Tensor, target: torch.Tensor, target_lengths: torch.Tensor,
                  blank: int) -> torch.Tensor:
    """The most probable CTC alignment (Viterbi) of each target on its canvas: (B, U) tokens, blank or label, -1
    past the canvas (and for a target the canvas cannot hold). logp: (B, U, V) log-probabilities."""
    B, U, _ = logp.shape
    L = target.shape[1]
    ext = torch.full((B, 2 * L + 1), blank, dtype=torch.long, device=logp.device)
    ext[:, 1::2] = target
    S = 2 * target_lengths + 1
    emit = logp.gather(2, ext[:, None, :].expand(B, U, 2 * L + 1))            # (B, U, 2L+1)
    neg = torch.tensor(float("-inf"), device=logp.device)
    skip = torch.zeros_like(ext, dtype=torch.bool)                             # label s may follow label s - 2
    skip[:, 3::2] = ext[:, 3::2] != ext[:, 1:-2:2]
    score = torch.full((B, 2 * L + 1), float("-inf"), device=logp.device)
    score[:, 0] = emit[:, 0, 0]
    score[:, 1] = torch.where(target_lengths > 0, emit[:, 0, 1], neg)
    back = torch.zeros(B, U, 2 * L + 1, dtype=torch.long, device=logp.device)
    for u in range(1, U):
        stay = score
        one = torch.cat([torch.full((B, 1), float("-inf"), device=logp.device), score[:, :-1]], 1)
        two = torch.cat([torch.full((B, 2), float("-inf"), device=logp.device), score[:, :-2]], 1)
        two = torch.where(skip, two, neg)
        best = torch.stack([stay, one, two], 2).max(2)
        new = best.values + emit[:, u]
        live = valid[:, u][:, None]
        score = torch.where(live, new, score)
        back[:, u] = torch.where(live, best.indices, torch.zeros_like(best.indices))
    Uv = valid.sum(1)
    last = torch.stack([score.gather(1, (S - 1)[:, None]).squeeze(1),
                        score.gather(1, (S - 2).clamp(min=0)[:, None]).squeeze(1)], 1)
    s = torch.where(last[:, 0] >= last[:, 1], S - 1, S - 2)
    ok = last.max(1).values > float("-inf")
    out = torch.full((B, U), -1, dtype=torch.long, device=logp.device)
    for u in range(U - 1, -1, -1):
        here = u < Uv
        out[:, u] = torch.where(here & ok, ext.gather(1, s.clamp(min=0)[:, None]).squeeze(1), out[:, u])
        step = back[:, u].gather(1, s.clamp(min=0)[:, None]).squeeze(1)
        s = torch.where(here, s - step, s)
    return out


@torch.no_grad()
def ctc_glance(model: T5Model, b: dict, cfg: ModelConfig, gen: torch.Generator, ratio: float, share: float) -> dict:
    """Glancing for ctc models (Gu and Kong 2021, after GLAT): the model predicts the all-<mask> canvas; with d
    canvas positions where its argmax differs from the best alignment of the target (ctc_alignment), round(ratio
    * d) of the aligned tokens (blanks included) are revealed at random positions of the input for a share of
    the batch. The loss stays the CTC loss over the whole canvas."""
    valid = b["tgt_mask"]
    enc = model.encode(b["src"], b["src_mask"])
    logp = torch.log_softmax(model.vocab_logits(model.decode(b["tgt_in"], valid, enc, b["src_mask"])).float(), -1)
    align = ctc_alignment(logp, valid, b["target"], b["target_lengths"], cfg.pad_id)
    known = align >= 0
    wrong = ((logp.argmax(-1) != align) & known).sum(1)
    n = torch.round(ratio * wrong.float()).long()
    score = torch.rand(valid.shape, generator=gen).to(valid.device).masked_fill(~known, 2.0)
    reveal = (score.argsort(1).argsort(1) < n[:, None]) & known
    rows = (torch.rand(len(valid), generator=gen) < share).to(valid.device)[:, None]
    out = dict(b)
    out["tgt_in"] = torch.where(reveal & rows, align, b["tgt_in"])
    return out


def ctc_loss(model: T5Model, b: dict):
    """The CTC loss of a batch (mean over sentences of the loss per target token) and its sum."""
    enc = model.encode(b["src"], b["src_mask"])
    h = model.decode(b["tgt_in"], b["tgt_mask"], enc, b["src_mask"])
    logp = torch.log_softmax(model.vocab_logits(h).float(), dim=-1).transpose(0, 1)   # (U, B, V)
    args = (logp, b["target"], b["tgt_mask"].sum(1), b["target_lengths"])
    loss = F.ctc_loss(*args, blank=model.cfg.pad_id, reduction="mean", zero_infinity=True)
    with torch.no_grad():
        total = F.ctc_loss(*args, blank=model.cfg.pad_id, reduction="sum", zero_infinity=True)
    return loss, float(total), int(b["target_lengths"].sum())


@torch.no_grad()
def first_pass(model: T5Model, b: dict, cfg: ModelConfig):
    """The model's prediction and its log-probability at every position from an all-<mask> target of the
    reference length (decoding's pass 0), and that all-<mask> input."""
    tgt, valid = b["target"], b["tgt_mask"]
    all_masked = torch.where(valid, torch.full_like(tgt, cfg.mask_id), torch.full_like(tgt, cfg.pad_id))
    enc = model.encode(b["src"], b["src_mask"])
    h = model.decode(all_masked, valid, enc, b["src_mask"])
    logp = torch.log_softmax(model.vocab_logits(h[valid]).float(), dim=-1)
    pred, conf = torch.full_like(tgt, -1), torch.full(tgt.shape, float("inf"), device=tgt.device)
    top = logp.max(-1)
    pred[valid], conf[valid] = top.indices, top.values
    return pred, conf, all_masked


def least_confident(conf: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The n[r] least confident positions of each row r (ties: the lower index), on conf's device: decoding's linear
    re-masking rule (reference.lowest_confidence) as the training-time constructions use it."""
    return conf.argsort(dim=1, stable=True).argsort(dim=1) < n[:, None]


@torch.no_grad()
def predicted_context(model: T5Model, b: dict, cfg: ModelConfig, gen: torch.Generator, share: float) -> dict:
    """Training on the model's own context (in the spirit of SMART, Ghazvininejad et al. 2020): a share of
    the batch's sentences is trained as decoding's pass 1 sees it. The model predicts every position from
    an all-<mask> input; the n lowest-confidence positions (n from the uniform masking ratio of
    make_batch) are masked and predicted against the reference, and every other position holds the model's
    own prediction, errors included, instead of the reference token."""
    tgt, valid = b["target"], b["tgt_mask"]
    pred, conf, _ = first_pass(model, b, cfg)
    n = (b["labels"] != -100).sum(1)
    masked = least_confident(conf, n)                                     # padding has conf inf: last
    rows = (torch.rand(len(tgt), generator=gen) < share).to(tgt.device)[:, None]
    inp = torch.where(masked, torch.full_like(tgt, cfg.mask_id), pred).masked_fill(~valid, cfg.pad_id)
    out = dict(b)
    out["tgt_in"] = torch.where(rows, inp, b["tgt_in"])
    out["labels"] = torch.where(rows, tgt.masked_fill(~masked, -100), b["labels"])
    return out


@torch.no_grad()
def glance(model: T5Model, b: dict, cfg: ModelConfig, gen: torch.Generator, ratio: float, share: float) -> dict:
    """Glancing masks (GLAT, Qian et al. 2021, adapted to masked refinement): a share of the batch's
    sentences get masks sized by the model's own first-pass errors instead of the uniform ratio.

    For each chosen sentence the model first predicts every position from an all-<mask> target of the
    reference length; with d positions wrong, round(ratio * d) reference tokens are revealed at random
    positions and the other L - round(ratio * d) (at least one) are masked and predicted. A model that
    gets the first pass nearly right is thus trained on nearly all-masked inputs (the single pass that
    T=1 decoding relies on); a model that errs often sees more of the reference.
    """
    tgt, valid = b["target"], b["tgt_mask"]
    pred, _, all_masked = first_pass(model, b, cfg)
    wrong = ((pred != tgt) & valid).sum(1)
    L = valid.sum(1)
    n = torch.clamp(L - torch.round(ratio * wrong.float()).long(), min=1)
    score = torch.rand(tgt.shape, generator=gen).masked_fill(~valid.cpu(), 2.0).to(tgt.device)
    masked = score.argsort(1).argsort(1) < n[:, None]
    rows = (torch.rand(len(tgt), generator=gen) < share).to(tgt.device)[:, None]
    out = dict(b)
    out["tgt_in"] = torch.where(rows, torch.where(masked, all_masked, tgt.clamp(min=0)), b["tgt_in"])
    out["labels"] = torch.where(rows, tgt.masked_fill(~masked, -100), b["labels"])
    return out


@torch.no_grad()
def correction(model: T5Model, b: dict, cfg: ModelConfig, gen: torch.Generator, share: float) -> dict:
    """Correction training for decoding with update='all' (docs/decoding.md), in the spirit of CMLMC (Huang
    et al., ICLR 2022): a pass that predicts every position must learn to keep a right token and replace a
    wrong one, so it is trained on inputs that hold the model's own errors, with a loss at every position.

    For a share of the batch's sentences the model first predicts the positions make_batch masked (the
    uniform ratio, reference context). The input is then rebuilt as a later pass of decoding sees it: the m
    least confident of those positions (m uniform in [0, n)) stay masked, the others hold the model's
    predictions, errors included, and the reference everywhere else; the labels are the reference at every
    position (masked: predict; the model's tokens: correct or keep; the reference's: keep)."""
    tgt, valid, noised = b["target"], b["tgt_mask"], b["labels"] != -100
    enc = model.encode(b["src"], b["src_mask"])
    h = model.decode(b["tgt_in"], valid, enc, b["src_mask"])
    top = torch.log_softmax(model.vocab_logits(h).float(), dim=-1).max(-1)
    pred, conf = top.indices, top.values.masked_fill(~noised, float("inf"))
    n = noised.sum(1)
    m = torch.floor(torch.rand(len(tgt), generator=gen).to(tgt.device) * n).long()
    still = least_confident(conf, m)
    inp = torch.where(noised & ~still, pred, b["tgt_in"])
    rows = (torch.rand(len(tgt), generator=gen) < share).to(tgt.device)[:, None]
    out = dict(b)
    out["tgt_in"] = torch.where(rows, inp, b["tgt_in"])
    out["labels"] = torch.where(rows, tgt.masked_fill(~valid, -100), b["labels"])
    out["plain"] = noised & ~rows          # the positions still masked as make_batch masked them (multistep)
    return out


@torch.no_grad()
def teacher_two_passes(teacher: T5Model, b: dict, cfg: ModelConfig) -> torch.Tensor:
    """Multi-step distillation's target (in the spirit of DiMS, Norouzi et al. 2023): the teacher's log-probs
    (B, L, V) after two passes from make_batch's masked input. Pass 1 predicts the masked positions; the less
    confident half of them (floor(n / 2): the linear schedule at T = 2) is masked again, the others hold its
    predictions; pass 2 predicts every position. A student that matches it at the masked positions learns to
    do in one pass what the teacher does in two."""
    valid, noised = b["tgt_mask"], b["labels"] != -100
    enc = teacher.encode(b["src"], b["src_mask"])
    h = teacher.decode(b["tgt_in"], valid, enc, b["src_mask"])
    top = torch.log_softmax(teacher.vocab_logits(h).float(), dim=-1).max(-1)
    conf = top.values.masked_fill(~noised, float("inf"))
    again = least_confident(conf, noised.sum(1) // 2)
    inp = torch.where(again, torch.full_like(b["tgt_in"], cfg.mask_id), torch.where(noised, top.indices, b["tgt_in"]))
    h = teacher.decode(inp.masked_fill(~valid, cfg.pad_id), valid, enc, b["src_mask"])
    return torch.log_softmax(teacher.vocab_logits(h).float(), dim=-1)


def compute_loss(model: T5Model, b: dict, label_smoothing: float, length_weight: float,
                 teacher_logp: torch.Tensor | None = None, teacher_weight: float = 0.0):
    """Returns (loss, token-loss sum without smoothing, number of predicted tokens). With teacher_logp
    (teacher_two_passes), teacher_weight x KL(teacher || model) at the positions make_batch masked (b["plain"]
    when correction rebuilt some rows) is added. ctc models: the CTC loss (ctc_loss)."""
    if model.cfg.objective == "ctc":
        return ctc_loss(model, b)
    enc = model.encode(b["src"], b["src_mask"])
    h = model.decode(b["tgt_in"], b["tgt_mask"], enc, b["src_mask"])
    sel = b["labels"] != -100
    logits = model.vocab_logits(h[sel]).float()
    y = b["labels"][sel]
    loss = F.cross_entropy(logits, y, label_smoothing=label_smoothing)
    if teacher_logp is not None and teacher_weight > 0:
        soft = b.get("plain", sel)
        if soft.any():
            student = torch.log_softmax(logits[soft[sel]], dim=-1)
            loss = loss + teacher_weight * F.kl_div(student, teacher_logp[soft], log_target=True,
                                                    reduction="batchmean")
    with torch.no_grad():
        nll = F.cross_entropy(logits, y, reduction="sum")
    if model.is_gmlm and length_weight > 0:
        loss = loss + length_weight * F.cross_entropy(model.length_logits(enc).float(), b["length_labels"])
    return loss, float(nll), int(sel.sum())


def _to(b, dev):
    return {k: v.to(dev) for k, v in b.items()}


@torch.no_grad()
def validate(model, ex_val: Examples, cfg, dev, tok, val_src, val_ref, n_bleu: int, update: str = "masked") -> dict:
    import sacrebleu

    from .reference import ReferenceTranslator

    model.eval()
    gen = torch.Generator().manual_seed(12345)  # the same val masks every time
    tot, cnt = 0.0, 0
    for idx in token_batches(ex_val.lengths, 4096, shuffle=False):
        b = _to(make_batch(ex_val, idx, cfg, gen), dev)
        _, nll, n = compute_loss(model, b, 0.0, 0.0)
        tot, cnt = tot + nll, cnt + n
    out = {"val_loss": tot / max(cnt, 1)}
    if n_bleu:
        tr = ReferenceTranslator.from_model(model, tok, dev)
        opts = {"gmlm": dict(iterations=4, length_beam=3, update=update), "ar": dict(beam_size=1), "ctc": dict(iterations=1, **CTC_FIXED)}[cfg.objective]
        hyp = [r.text for r in tr.translate_batch(val_src[:n_bleu], max_batch_size=64, **opts)]
        out["val_bleu"] = sacrebleu.corpus_bleu(hyp, [val_ref[:n_bleu]]).score
    model.train()
    return out


def lr_at(step: int, peak: float, warmup: int, max_steps: int = 0, cooldown: int = 0,
          offset: int = 0, restart_warmup: int = 0) -> float:
    """Linear warm-up, inverse square-root decay; with `cooldown` > 0, the last `cooldown` steps
    before `max_steps` also decay linearly to 0 (a warmup-stable-decay style cool-down). `step` and
    `max_steps` count from the schedule's start; `offset` of them were run before this run (--schedule-offset),
    and with `restart_warmup` > 0 this run's first `restart_warmup` steps ramp linearly up to the schedule."""
    step = max(step, 1)
    lr = peak * min(step / warmup, math.sqrt(warmup / step))
    if cooldown > 0:
        lr *= min(1.0, max(0.0, (max_steps - step + 1) / cooldown))
    if restart_warmup > 0:
        lr *= min(1.0, (step - offset) / restart_warmup)
    return lr


def param_groups(model: T5Model, weight_decay: float, embedding_lr_scale: float | None = None,
                 query_lr_scale: float | None = 1.0) -> list[dict]:
    """AdamW groups that make T5's parametrisation learn at full speed.

    T5 initialises the shared embedding (also the tied output layer, read through a d_model^-0.5
    scale) and the decoder's position table with std 1.0, every matrix with std ~ fan_in^-0.5.
    Adafactor's updates are relative to a parameter's scale; AdamW's are ~lr in absolute terms, so
    under AdamW these std-1 tables would move sqrt(d_model) times slower, relative to their size,
    than the rest. Their group's learning rate is scaled by sqrt(d_model) instead (the same function
    as embedding std d^-0.5 read through a sqrt(d) scale): the weights, their names and the exports
    stay exactly T5's. Embeddings and norm gains get no weight decay. `lr_scale` multiplies the
    schedule's learning rate at every step.

    The same reasoning applies, the other way round, to the attention queries: T5 folds the
    1/sqrt(d_kv) of attention into q's initialisation (std (d_model d_kv)^-0.5), so AdamW moves q
    sqrt(d_kv) times faster, relative to its size, than k and v; `query_lr_scale` (None:
    d_kv^-0.5) scales the queries' group.
    """
    scale = model.cfg.d_model ** 0.5 if embedding_lr_scale is None else embedding_lr_scale
    qscale = model.cfg.d_kv ** -0.5 if query_lr_scale is None else query_lr_scale
    groups = {"embedding": ([], scale, 0.0), "query": ([], qscale, weight_decay), "no_decay": ([], 1.0, 0.0),
              "decay": ([], 1.0, weight_decay)}
    for name, p in model.named_parameters():
        if name in ("shared.weight", "decoder.embed_positions.weight"):
            key = "embedding"
        elif name.endswith(".q.weight") and qscale != 1.0:
            key = "query"
        elif name.endswith("layer_norm.weight") or "relative_attention_bias" in name:
            key = "no_decay"
        else:
            key = "decay"
        groups[key][0].append(p)
    return [{"params": ps, "lr_scale": s, "weight_decay": wd, "name": k} for k, (ps, s, wd) in groups.items() if ps]


def cpu_has_bf16() -> bool:
    """True where the CPU computes bf16 natively (AMX-BF16 or AVX512-BF16): autocast pays there."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags.split() for f in ("amx_bf16", "avx512_bf16"))


def autocast_dtype(mode: str, dev: torch.device):
    """The autocast dtype for --autocast (auto: bf16 on CUDA and on CPUs with native bf16, else off)."""
    if mode not in ("auto", "bf16", "off"):
        raise ValueError(f"--autocast must be auto, bf16 or off, got {mode!r}")
    if mode == "off":
        return None
    if mode == "bf16" or dev.type == "cuda" or cpu_has_bf16():
        return torch.bfloat16
    return None


def average_checkpoints(dirs: list[Path]) -> dict:
    from safetensors.torch import load_file

    avg = None
    for d in dirs:
        sd = load_file(str(d / "model.safetensors"))
        if avg is None:
            avg = {k: v.double() for k, v in sd.items()}
        else:
            for k in avg:
                avg[k] += sd[k].double()
    return {k: (v / len(dirs)).float() for k, v in avg.items()}


_BLOCK = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.(.*)$")


def stretch_layer_names(sd: dict, model: T5Model) -> dict:
    """The checkpoint's tensors renamed for a stack of another depth: block i of the model's encoder (decoder)
    takes block floor(i * n_source / n_model) of the checkpoint's, so 3 encoder blocks become 0,0,1,1,2,2 in a
    6-block encoder and 3 decoder blocks become block 0 in a 1-block decoder. Tensors outside the blocks keep
    their names; a block-0-only tensor (the relative position bias) goes to block 0 only."""
    depth_src = {}
    for k in sd:
        m = _BLOCK.match(k)
        if m:
            depth_src[m[1]] = max(depth_src.get(m[1], 0), int(m[2]) + 1)
    depth_dst = {"encoder": model.cfg.num_encoder_layers, "decoder": model.cfg.num_decoder_layers}
    out = {k: v for k, v in sd.items() if not _BLOCK.match(k)}
    for stack, n_dst in depth_dst.items():
        n_src = depth_src.get(stack, 0)
        for i in range(n_dst if n_src else 0):
            j = i * n_src // n_dst
            prefix = f"{stack}.block.{j}."
            for k, v in sd.items():
                if k.startswith(prefix):
                    out[f"{stack}.block.{i}.{k[len(prefix):]}"] = v
    return out


def init_from_t5(model: T5Model, folder: str, stretch: bool = False) -> list[str]:
    """Copy every tensor of a Hugging Face T5 checkpoint whose name and shape match; returns the names copied.
    stretch: map the checkpoint's blocks onto a stack of another depth first (stretch_layer_names)."""
    from safetensors.torch import load_file

    f = Path(folder)
    if (f / "model.safetensors").is_file():
        sd = load_file(str(f / "model.safetensors"))
    elif (f / "pytorch_model.bin").is_file():
        sd = torch.load(f / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{f}: no model.safetensors or pytorch_model.bin (only local folders are "
                                "supported: nothing is downloaded)")
    if stretch:
        sd = stretch_layer_names(sd, model)
    own = model.state_dict()
    copied = []
    pos = "decoder.embed_positions.weight"
    if pos in sd and pos in own and sd[pos].shape[1:] == own[pos].shape[1:] and sd[pos].shape != own[pos].shape:
        # a position table of another length (a gmlm's target positions into a ctc canvas): row j takes the
        # checkpoint's row floor(j * its rows / these rows)
        n_src, n_dst = sd[pos].shape[0], own[pos].shape[0]
        sd[pos] = sd[pos][torch.arange(n_dst) * n_src // n_dst]
    for k, v in sd.items():
        if k in own and own[k].shape == v.shape:
            own[k] = v.float()
            copied.append(k)
    model.load_state_dict(own)
    return copied


def run(args) -> int:
    _check(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)

    src, tgt = load_split(args.data_dir, "train", args.src_lang, args.tgt_lang)
    if args.train_target:
        tgt = read_lines(args.train_target)
        if len(tgt) != len(src):
            raise ValueError(f"--train-target has {len(tgt)} lines, the training sources {len(src)}")
        if args.repeat_fallback:
            tgt, n = repeat_fallback(tgt, load_split(args.data_dir, "train", args.src_lang, args.tgt_lang)[1])
            print(f"--repeat-fallback: {n} of {len(tgt)} targets replaced by their references", file=sys.stderr)
    if args.train_limit:
        src, tgt = src[:args.train_limit], tgt[:args.train_limit]
    val_src, val_ref = load_split(args.data_dir, "val", args.src_lang, args.tgt_lang)

    spm_path = out / "spm.model"
    if args.spm:
        if Path(args.spm).resolve() != spm_path.resolve():
            shutil.copyfile(args.spm, spm_path)
    elif not spm_path.is_file():
        train_spm([split_file(args.data_dir, "train", args.src_lang), split_file(args.data_dir, "train", args.tgt_lang)],
                  spm_path, args.vocab_size)
    tok = Tokenizer(spm_path)

    state_path = out / "state.pt"
    if args.resume and state_path.is_file():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        cfg = ModelConfig.from_dict(state["config"])
    else:
        state = None
        cfg = ModelConfig(objective=args.objective, vocab_size=tok.vocab_size, d_model=args.d_model, d_kv=args.d_kv,
                          d_ff=args.d_ff, num_heads=args.heads, num_encoder_layers=args.encoder_layers,
                          num_decoder_layers=args.decoder_layers, feed_forward_proj=args.ffn,
                          tie_word_embeddings=not args.untie, dropout_rate=args.dropout,
                          max_source_len=args.max_source_len, max_target_len=args.max_target_len,
                          mask_id=tok.mask_id, len_id=tok.len_id,
                          ctc_upsample=args.ctc_upsample if args.objective == "ctc" else 0).validate()
    model = T5Model(cfg).to(dev)
    model.set_dropout(args.attention_dropout, args.activation_dropout)
    if args.init_from and state is None:
        copied = init_from_t5(model, args.init_from, args.init_stretch_layers)
        print(f"initialised {len(copied)} tensors from {args.init_from}", file=sys.stderr)
    opt = torch.optim.AdamW(param_groups(model, args.weight_decay, args.embedding_lr_scale,
                                         args.query_lr_scale or None), lr=args.lr,
                            betas=(0.9, 0.98), eps=1e-8)
    amp = autocast_dtype(args.autocast, dev)
    teacher = None
    if getattr(args, "multistep", 0.0):   # the --init-from model, frozen (also on --resume): the multi-step teacher
        teacher = T5Model(cfg).to(dev)
        init_from_t5(teacher, args.init_from)
        teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    step, best, elapsed, history = 0, -1.0, 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, best, elapsed, history = state["step"], state["best"], state["elapsed"], state["history"]
        torch.set_rng_state(state["torch_rng"])
        print(f"resumed from step {step}", file=sys.stderr)

    ex = Examples(tok, cfg, src, tgt)
    ex_val = Examples(tok, cfg, val_src, val_ref)
    gen = torch.Generator().manual_seed(args.seed + step)
    # Where in the data order to continue: states written since 2026-12-03 record the epoch, the batches
    # of it already done and the masking generator, so that a resumed run sees the batches and masks an
    # uninterrupted one would. Older states, or a changed --max-tokens (other batches), start the epoch over.
    skip = 0
    if state is not None and state.get("max_tokens") == args.max_tokens and "epoch_batch" in state:
        gen.set_state(state["gen_rng"])
        skip = state["epoch_batch"]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{cfg.objective}: {n_params / 1e6:.2f}M parameters, {len(ex)} training pairs, device {dev}, "
          f"{torch.get_num_threads()} threads, autocast {amp}", file=sys.stderr)
    bar = None
    if not args.no_progress:
        from tqdm import tqdm

        bar = tqdm(total=args.max_steps, initial=step, unit="step", dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter() - elapsed
    epoch = step // max(1, len(token_batches(ex.lengths, args.max_tokens, True, args.seed)))
    if skip:
        epoch = state["epoch"]
    ckpts = sorted(out.glob("ckpt-*"), key=lambda d: int(d.name.split("-")[1]))
    stop = False
    corrupt = (args.corrupt_keep, args.corrupt_random)
    log = open(out / "train.log", "a")
    val_update = "all" if getattr(args, "correction", 0.0) else "masked"   # validate as the model will decode

    def card(extra=None):
        d = {"objective": cfg.objective, "data": f"Multi30k {args.src_lang}->{args.tgt_lang} train"
             + (f" (targets: {args.train_target})" if args.train_target else ""),
             "train_pairs": len(ex), "steps": step, "wall_seconds": round(time.perf_counter() - t0, 1),
             "hardware": f"{platform.processor() or platform.machine()}, {dev}, {torch.get_num_threads()} threads",
             "parameters": n_params, "args": {k: v for k, v in vars(args).items() if k != "func"},
             "history": history[-20:]}
        d.update(extra or {})
        return d

    while not stop:
        batches = token_batches(ex.lengths, args.max_tokens, True, args.seed + epoch)
        for pos, idx in enumerate(batches, start=1):
            if pos <= skip:
                continue
            b = _to(make_batch(ex, idx, cfg, gen, corrupt), dev)
            for g in opt.param_groups:
                g["lr"] = lr_at(args.schedule_offset + step + 1, args.lr, args.warmup,
                                args.schedule_offset + args.max_steps, args.cooldown_steps,
                                args.schedule_offset, getattr(args, "restart_warmup", 0)) * g["lr_scale"]
            with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
                if args.glancing_ratio and cfg.objective == "ctc":
                    b = ctc_glance(model, b, cfg, gen, args.glancing_ratio, args.glancing_share)
                elif args.glancing_ratio:
                    b = glance(model, b, cfg, gen, args.glancing_ratio, args.glancing_share)
                elif getattr(args, "predicted_context", 0.0):
                    b = predicted_context(model, b, cfg, gen, args.predicted_context)
                teacher_logp = teacher_two_passes(teacher, b, cfg) if teacher is not None else None
                if getattr(args, "correction", 0.0):
                    b = correction(model, b, cfg, gen, args.correction)
                loss, _, _ = compute_loss(model, b, args.label_smoothing, args.length_loss_weight, teacher_logp,
                                          getattr(args, "multistep", 0.0))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            opt.step()
            step += 1
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.3f}", ep=epoch)
            timed_out = args.max_minutes and (time.perf_counter() - t0) > args.max_minutes * 60
            if step % args.val_every == 0 or step >= args.max_steps or timed_out:
                v = validate(model, ex_val, cfg, dev, tok, val_src, val_ref, args.val_bleu_sentences, val_update)
                v.update(step=step, epoch=epoch, train_loss=round(loss.item(), 4), grad_norm=round(float(gnorm), 3),
                         minutes=round((time.perf_counter() - t0) / 60, 2))
                history.append(v)
                log.write(json.dumps(v) + "\n")
                log.flush()
                print(json.dumps(v), file=sys.stderr)
                metric = v.get("val_bleu", -v["val_loss"])
                save_model_dir(model, out / "last", spm_path, card())
                ck = out / f"ckpt-{step}"
                save_model_dir(model, ck, spm_path)
                ckpts.append(ck)
                while len(ckpts) > args.keep_last:
                    shutil.rmtree(ckpts.pop(0), ignore_errors=True)
                if metric > best:
                    best = metric
                    save_model_dir(model, out / "best", spm_path, card({"selected_by": "val_bleu", "best": v}))
                torch.save({"config": cfg.to_dict(), "model": model.state_dict(), "optimizer": opt.state_dict(),
                            "step": step, "best": best, "elapsed": time.perf_counter() - t0, "history": history,
                            "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(), "epoch": epoch,
                            "epoch_batch": pos, "max_tokens": args.max_tokens}, state_path.with_suffix(".tmp"))
                # atomic: a run killed while saving (a session's end) keeps the previous state
                os.replace(state_path.with_suffix(".tmp"), state_path)
            if step >= args.max_steps or timed_out:
                stop = True
                break
        epoch += 1
        skip = 0
    if bar:
        bar.close()
    if args.average_last > 1 and len(ckpts) > 1:
        use = ckpts[-args.average_last:]
        model.load_state_dict(average_checkpoints(use))
        v = validate(model, ex_val, cfg, dev, tok, val_src, val_ref, args.val_bleu_sentences, val_update)
        print(json.dumps({"averaged": [d.name for d in use], **v}), file=sys.stderr)
        save_model_dir(model, out / "averaged", spm_path, card({"averaged": [d.name for d in use], "validation": v}))
    log.close()
    return 0
