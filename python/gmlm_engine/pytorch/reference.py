"""The PyTorch reference decoder: the executable spec of docs/decoding.md.

GMLM models decode by iterative parallel refinement over length candidates; AR models by greedy or
beam search. Batched: one decoder call per iteration for all live candidates of a batch.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..common import DecodeResult, TranslatorFrontEnd
from ..rules import ctc_collapse, ctc_repeat_blanks, gumbel_noise, log_threshold, mean_score, random_init_tokens, repeat_mask, repeats, source_hash
from ..tokenizer import NUM_SPECIAL, load_model_tokenizer
from .model import load_torch_model

DEFAULT_BATCH = 32


def _pad(seqs: list[list[int]], pad: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    n = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), n), pad, dtype=torch.long)
    for r, s in enumerate(seqs):
        ids[r, :len(s)] = torch.tensor(s, dtype=torch.long)
    return ids.to(device), (ids != pad).to(device) if pad >= 0 else None


def below_threshold(conf: torch.Tensor, log_thr: float) -> torch.Tensor:
    """The threshold re-masking test (docs/decoding.md): conf < log(threshold), in float64; NaN marks
    the positions not tested (False)."""
    return conf.double() < log_thr


def lowest_confidence(c: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """The linear re-masking rule: the n[r] lowest of row r of `c` (ties: lower index first)."""
    rank = torch.empty_like(c, dtype=torch.long)
    srt = torch.sort(c, dim=1, stable=True).indices
    rank.scatter_(1, srt, torch.arange(c.shape[1]).expand_as(srt).contiguous())
    return rank < n[:, None]


def most_confident(c: torch.Tensor) -> torch.Tensor:
    """Each row's position of highest confidence (ties: the highest index): threshold re-masking keeps
    it when every prediction of a pass fell below the threshold."""
    return torch.sort(c, dim=1, stable=True).indices[:, -1]


class ReferenceTranslator(TranslatorFrontEnd):
    """Same translate_batch signature as gmlm_engine.Translator."""

    def __init__(self, model="default", device: str = "cpu", threads: int = 0, rerank_model=None):
        if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
        if threads:
            torch.set_num_threads(threads)
        self.device = torch.device(device)
        self.model, self.files = load_torch_model(model, self.device)
        self.cfg = self.model.cfg
        self.tokenizer = load_model_tokenizer(self.files)
        self.reranker = None
        if rerank_model is not None:
            self.reranker = self._check_reranker(ReferenceTranslator(rerank_model, device=device))

    @classmethod
    def from_model(cls, model, tokenizer, device="cpu") -> "ReferenceTranslator":
        """Wrap an in-memory T5Model (used by training for validation BLEU)."""
        self = cls.__new__(cls)
        self.device, self.model, self.cfg, self.tokenizer, self.files = torch.device(device), model, model.cfg, tokenizer, None
        return self

    default_batch = DEFAULT_BATCH

    @torch.inference_mode()
    def _decode(self, srcs, opts):
        was_training = self.model.training
        self.model.eval()
        try:
            return self._ar(srcs, opts) if self.cfg.objective == "ar" else self._refine(srcs, opts)
        finally:
            self.model.train(was_training)

    # --- GMLM: iterative parallel refinement ---------------------------------------------------
    def _refine(self, srcs: list[list[int]], o):
        cfg, m, dev = self.cfg, self.model, self.device
        B, K, T = len(srcs), o.length_beam, o.iterations
        src, src_mask = _pad(srcs, cfg.pad_id, dev)
        enc = m.encode(src, src_mask)
        ckv = m.cross_kv(enc)
        if cfg.objective == "ctc":   # one canvas per source, its length fixed by the source's (K = 1)
            lengths = torch.tensor([cfg.ctc_canvas(len(s)) for s in srcs])
        else:
            len_lp = F.log_softmax(m.length_logits(enc).float(), dim=-1)          # (B, maxT)
            order = torch.sort(-len_lp, dim=-1, stable=True).indices[:, :K]       # ties: shorter first
            lengths = (order + 1 + o.length_offset).clamp(1, cfg.max_target_len).reshape(-1).cpu()  # (N,) N = B*K
        N, Lmax = B * K, int(lengths.max())
        enc_index = torch.arange(B, device=dev).repeat_interleave(K)
        pos = torch.arange(Lmax)
        valid = pos[None, :] < lengths[:, None]                                   # (N, Lmax)
        shash = np.array([source_hash(s) for s in srcs], dtype=np.uint64).repeat(K)
        cand_k = np.tile(np.arange(K, dtype=np.uint64), B)

        tokens = torch.full((N, Lmax), cfg.pad_id, dtype=torch.long)
        tokens[valid] = cfg.mask_id
        conf = torch.zeros(N, Lmax, dtype=torch.float32)
        masked = valid.clone()
        done = torch.zeros(N, dtype=torch.bool)
        pruned = torch.zeros(N, dtype=torch.bool)
        passes = torch.zeros(N, dtype=torch.long)
        prev = tokens.clone()
        history = [] if o.return_history else None
        log_thr = log_threshold(o.threshold) if o.remask == "threshold" else None
        R = o.cache_refresh
        if R != 1:   # cached refinement: per layer the keys/values of every position, and the inputs they saw
            H, Dh = cfg.num_heads, cfg.d_kv
            kv_cache = [[torch.zeros(N, H, Lmax, Dh, device=dev) for _ in range(2)] for _ in m.decoder.block]
            cached_in = torch.full((N, Lmax), -1, dtype=torch.long)

        for t in range(T):
            live = (~done).nonzero().squeeze(1)
            if len(live) == 0:
                break
            Lm = int(lengths[live].max())
            inp = torch.where(masked, torch.full_like(tokens, cfg.mask_id), tokens)[live, :Lm]
            if t == 0 and o.init == "random":
                rows, cols = valid[live, :Lm].nonzero(as_tuple=True)
                r = live[rows].numpy()
                inp[rows, cols] = torch.from_numpy(random_init_tokens(
                    o.seed, shash[r], cand_k[r], cols.numpy(), cfg.vocab_size, NUM_SPECIAL))
            vl = valid[live, :Lm]
            if R == 1:
                h = m.decode(inp.to(dev), vl.to(dev), None, src_mask, ckv, enc_index[live.to(dev)])
            else:
                full = t == 0 or (R >= 1 and t % R == 0)
                fresh = vl & (torch.ones_like(vl) if full else masked[live, :Lm] | (inp != cached_in[live, :Lm]))
                cached_in[live, :Lm] = torch.where(fresh, inp, cached_in[live, :Lm])
                cache = [[kv[live, :, :Lm] for kv in layer] for layer in kv_cache]
                h = m.decode_reusing(inp.to(dev), vl.to(dev), src_mask, ckv, enc_index[live.to(dev)], cache,
                                     fresh.to(dev))
                for layer, new in zip(kv_cache, cache):
                    for kv, x in zip(layer, new):
                        kv[live, :, :Lm] = x
            sel = masked[live, :Lm] if o.update == "masked" else valid[live, :Lm]  # (n, Lm)
            rows, cols = sel.nonzero(as_tuple=True)
            logits = m.vocab_logits(h[sel.to(dev)]).float()
            if o.blank_penalty:                                                   # ctc: a lower blank logit
                logits[:, cfg.pad_id] -= o.blank_penalty
            logp = F.log_softmax(logits, dim=-1).cpu()                            # (M, V)
            if o.sampling:
                r = live[rows].numpy()
                g = gumbel_noise(o.seed, shash[r], cand_k[r], t, cols.numpy(), logp.shape[1])
                pred = torch.argmax(logp + torch.from_numpy(g), dim=-1)
            else:
                pred = torch.argmax(logp, dim=-1)                                 # first max: lowest id
            grow = live[rows]
            tokens[grow, cols] = pred
            conf[grow, cols] = logp.gather(1, pred[:, None]).squeeze(1)
            if cfg.objective == "ctc" and o.repeat_remask and o.blank_penalty:   # repeats lose the blank penalty
                blank_lp = torch.full((N, Lmax), float("nan"))
                blank_lp[grow, cols] = logp[:, cfg.pad_id]
                for row in live.tolist():
                    L = int(lengths[row])
                    flip = ctc_repeat_blanks(tokens[row, :L].tolist(), conf[row, :L].numpy(), blank_lp[row, :L].numpy(),
                                             cfg.pad_id, o.blank_penalty, self.tokenizer.word_pieces())
                    if flip:
                        tokens[row, flip] = cfg.pad_id
                        conf[row, flip] = blank_lp[row, flip]
            passes[live] += 1
            if history is not None:
                history.append(tokens.clone())
            if t == 0 and o.length_beam_keep < K:                                 # length-candidate pruning
                for b in range(B):
                    scores = [self._rank(*self._output(cfg, tokens, conf, lengths, b * K + k, o), o) for k in range(K)]
                    ranked = sorted(range(K), key=lambda k: (-scores[k], k))
                    for k in ranked[o.length_beam_keep:]:
                        pruned[b * K + k] = done[b * K + k] = True

            # stop: unchanged since the previous pass, or the last iteration
            if o.early_stop and t >= 1:
                same = (tokens[live] == prev[live]).all(dim=1)
                done[live[same]] = True
            prev[live] = tokens[live]
            if t == T - 1:
                done[live] = True
            go = live[~done[live]]
            if len(go) == 0:
                continue

            # re-mask: order positions by (conf asc, index asc); padding last
            c = torch.where(valid[go], conf[go], torch.tensor(float("inf")))
            if o.remask == "linear":
                n = torch.div(lengths[go] * (T - 1 - t), T, rounding_mode="floor")
                new_mask = lowest_confidence(c, n)
            else:
                just = masked[go] & valid[go]
                new_mask = below_threshold(torch.where(just, c, torch.tensor(float("nan"))), log_thr)
                all_kept = new_mask.sum(1) == just.sum(1)
                if all_kept.any():
                    rr = all_kept.nonzero().squeeze(1)
                    cj = torch.where(just, c, torch.tensor(float("-inf")))[rr]
                    new_mask[rr, most_confident(cj)] = False
            if o.stutter_remask:
                tg = tokens[go]
                rep = torch.zeros_like(new_mask)
                rep[:, 1:] = (tg[:, 1:] == tg[:, :-1]) & valid[go][:, 1:]
                new_mask |= rep
            if o.repeat_remask and cfg.objective != "ctc":
                word = self.tokenizer.word_pieces()
                for r, row in enumerate(go.tolist()):
                    L = int(lengths[row])
                    new_mask[r, repeat_mask(tokens[row, :L].tolist(), conf[row, :L].tolist(), word)] = True
            new_mask &= valid[go]
            masked[go] = new_mask
            done[go[new_mask.sum(1) == 0]] = True

        # score candidates, pick the best per sentence (ties: lower candidate index)
        outs = []
        for b in range(B):
            best, best_key, best_s, best_ids, cands = 0, None, None, None, []
            for k in range(K):
                if pruned[b * K + k]:
                    continue
                ids, s = self._output(cfg, tokens, conf, lengths, b * K + k, o)
                cands.append((ids, s, int(passes[b * K + k])))
                key = self._rank(ids, s, o)
                if best_key is None or key > best_key:
                    best, best_key, best_s, best_ids = k, key, s, ids
            r = b * K + best
            hist = [hh[r, :int(lengths[r])].tolist() for hh in history[:int(passes[r])]] if history else []
            outs.append(DecodeResult(best_ids, best_s, int(passes[r]), hist, lengths[b * K:(b + 1) * K].tolist(),
                                     cands if o.rerank else None))
        return outs

    @torch.inference_mode()
    def _score(self, srcs: list[list[int]], tgts: list[list[int]]) -> list[float]:
        """ar models, teacher forced: the mean of the log-probabilities of each target's tokens and of
        eos given its source (docs/decoding.md, "AR reranking")."""
        cfg, m, dev = self.cfg, self.model, self.device
        out = []
        for s, y in zip(srcs, tgts):
            src = torch.tensor([s], device=dev)
            src_mask = torch.ones_like(src, dtype=torch.bool)
            enc = m.encode(src, src_mask)
            ckv = m.cross_kv(enc)
            want = (list(y) + [cfg.eos_id])[:cfg.max_target_len]
            inp = [cfg.decoder_start_token_id] + want[:-1]
            cache = m.new_self_cache(1, cfg.max_target_len + 1, dev)
            total = 0.0
            for t, tok in enumerate(inp):
                h = m.decode_step(torch.tensor([tok], device=dev), t, cache, ckv, src_mask)
                logp = F.log_softmax(m.vocab_logits(h).float(), dim=-1)
                total += float(logp[0, want[t]])
            out.append(total / len(want))
        return out

    def _rank(self, ids: list[int], score: float, o) -> float:
        """What step 4 ranks candidates by: the score, less repeat_penalty for an output that repeats itself."""
        if o.repeat_penalty and repeats(ids, self.tokenizer.word_pieces()):
            return score - o.repeat_penalty
        return score

    @staticmethod
    def _output(cfg, tokens, conf, lengths, r, o) -> tuple[list[int], float]:
        """Candidate r's output tokens (repeats collapsed with stutter_remask; a ctc canvas collapsed: repeats
        merged, then blanks dropped, its score the mean over the whole canvas) and its score."""
        L = int(lengths[r])
        ids, cf = tokens[r, :L].tolist(), conf[r, :L].numpy()
        if cfg.objective == "ctc":
            return ctc_collapse(ids, cfg.pad_id), mean_score(cf)
        if o.stutter_remask:
            keep = [j for j in range(L) if j == 0 or ids[j] != ids[j - 1]]
            ids, cf = [ids[j] for j in keep], cf[keep]
        return ids, mean_score(cf)

    # --- AR: greedy and beam search ------------------------------------------------------------
    def _ar(self, srcs: list[list[int]], o):
        cfg, m, dev = self.cfg, self.model, self.device
        src, src_mask = _pad(srcs, cfg.pad_id, dev)
        enc = m.encode(src, src_mask)
        beam = o.beam_size
        B = len(srcs)
        if beam > 1:
            enc, src_mask = enc.repeat_interleave(beam, 0), src_mask.repeat_interleave(beam, 0)
        ckv = m.cross_kv(enc)
        R = enc.shape[0]
        cache = m.new_self_cache(R, cfg.max_target_len + 1, dev)
        tok = torch.full((R,), cfg.decoder_start_token_id, dtype=torch.long, device=dev)
        out = torch.zeros(R, 0, dtype=torch.long, device=dev)
        score = torch.zeros(R, dtype=torch.float64, device=dev)
        if beam > 1:  # only the first beam is alive at step 0
            score.view(B, beam)[:, 1:] = float("-inf")
        finished: list[list[tuple[float, list[int], float]]] = [[] for _ in range(B)]
        alive = torch.ones(R, dtype=torch.bool, device=dev)
        for step in range(cfg.max_target_len):
            h = m.decode_step(tok, step, cache, ckv, src_mask)
            logp = F.log_softmax(m.vocab_logits(h).float(), dim=-1)               # (R, V)
            if beam == 1:
                nxt = torch.argmax(logp, dim=-1)
                score = score + torch.where(alive, logp.gather(1, nxt[:, None]).squeeze(1).double(), 0.0)
                nxt = torch.where(alive, nxt, torch.full_like(nxt, cfg.pad_id))
                out = torch.cat([out, nxt[:, None]], 1)
                alive &= nxt != cfg.eos_id
                tok = nxt
                if not alive.any():
                    break
                continue
            V = logp.shape[1]
            total = (score[:, None] + logp.double()).view(B, beam * V)
            top_s, top_i = total.topk(2 * beam, dim=1)                             # (B, 2beam)
            src_beam, word = top_i // V, top_i % V
            new_rows, new_tok, new_score = [], [], []
            for b in range(B):
                rows, toks, scs = [], [], []
                for s, sb, w in zip(top_s[b].tolist(), src_beam[b].tolist(), word[b].tolist()):
                    if s == float("-inf"):
                        break
                    r = b * beam + sb
                    if w == cfg.eos_id or step == cfg.max_target_len - 1:
                        if len(finished[b]) < beam:
                            hyp = out[r].tolist() + ([] if w == cfg.eos_id else [w])
                            finished[b].append((s / (len(hyp) + 1) ** o.length_penalty, hyp, s))
                    else:
                        rows.append(r); toks.append(w); scs.append(s)  # noqa: E702
                    if len(rows) == beam:
                        break
                if len(finished[b]) >= beam or not rows:
                    rows, toks, scs = [b * beam] * beam, [cfg.pad_id] * beam, [float("-inf")] * beam
                while len(rows) < beam:
                    rows.append(rows[0]); toks.append(cfg.pad_id); scs.append(float("-inf"))  # noqa: E702
                new_rows += rows; new_tok += toks; new_score += scs
            if all(len(f) >= beam for f in finished):
                break
            idx = torch.tensor(new_rows, device=dev)
            m.reorder_self_cache(cache, idx)
            out = torch.cat([out[idx], torch.tensor(new_tok, device=dev)[:, None]], 1)
            tok = torch.tensor(new_tok, device=dev)
            score = torch.tensor(new_score, dtype=torch.float64, device=dev)
        outs = []
        for b in range(B):
            if beam == 1:
                ids = out[b].tolist()
                if cfg.eos_id in ids:
                    ids = ids[:ids.index(cfg.eos_id)]
                ids = [i for i in ids if i != cfg.pad_id]
                s = float(score[b]) / (len(ids) + 1)
            else:
                if not finished[b]:
                    finished[b].append((float(score[b * beam]), out[b * beam].tolist(), 0.0))
                s, ids, _ = max(finished[b], key=lambda x: x[0])
            outs.append(DecodeResult(ids, s, len(ids) + 1, [], []))
        return outs
