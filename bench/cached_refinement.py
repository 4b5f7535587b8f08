"""Cached refinement, emulated in the PyTorch reference (issue 40, item 2): how much BLEU the approximation
costs and what share of decoder rows it still computes, before building it in the engine.

    GMLM_DATA_DIR=../shared/data/multi30k python bench/cached_refinement.py [--split val] [--sentences 1014]

The rule: a decoder row whose input (its token, or <mask>) did not change since the previous pass, and
that is not masked now (masked rows need new predictions), is not recomputed; every decoder layer's
self-attention takes that row's keys and values from the pass that last computed it. Every r passes
(--refresh) all rows are computed again; r=1 is the exact decoder (checked against ReferenceTranslator
on the first 64 sentences), r=0 never refreshes after the first pass. The emulation computes every row
and swaps in the cached keys and values, so its outputs are those of a real cache; only the share of
rows is counted, not time. Linear re-masking with stutter re-masking, mask init, argmax.
Results: bench/results/cached_refinement.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from gmlm_engine.data import load_split
from gmlm_engine.tools.evaluate import score
from gmlm_engine.pytorch.model import Attention
from gmlm_engine.pytorch.reference import ReferenceTranslator, _pad, lowest_confidence

CTX = {}
orig = Attention.forward
def patched(self, x, kv, bias, kv_cache=None):
    li = CTX.get("layers", {}).get(id(self))
    if li is None or not CTX.get("on"):
        return orig(self, x, kv, bias, kv_cache)
    q = self.split(self.q(x)); k, v = self.split(self.k(kv)), self.split(self.v(kv))   # (n, H, Lm, Dh)
    live, R = CTX["live"], CTX["R"]                   # R: (n, Lm) bool, rows recomputed
    Lm = x.shape[1]
    ck, cv = CTX["k"][li], CTX["v"][li]
    r = R[:, None, :, None]
    k = torch.where(r, k, ck[live, :, :Lm]); v = torch.where(r, v, cv[live, :, :Lm])
    ck[live, :, :Lm] = k; cv[live, :, :Lm] = v
    o = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype), scale=1.0)
    return self.o(o.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1))
Attention.forward = patched

def refine(tr, srcs, T, K, refresh, offset=1):
    cfg, m = tr.cfg, tr.model
    B = len(srcs)
    src, src_mask = _pad(srcs, cfg.pad_id, "cpu")
    enc = m.encode(src, src_mask); ckv = m.cross_kv(enc)
    len_lp = F.log_softmax(m.length_logits(enc).float(), dim=-1)
    order = torch.sort(-len_lp, dim=-1, stable=True).indices[:, :K]
    lengths = (order + 1 + offset).clamp(1, cfg.max_target_len).reshape(-1)
    N, Lmax = B * K, int(lengths.max())
    enc_index = torch.arange(B).repeat_interleave(K)
    valid = torch.arange(Lmax)[None, :] < lengths[:, None]
    tokens = torch.full((N, Lmax), cfg.pad_id, dtype=torch.long); tokens[valid] = cfg.mask_id
    conf = torch.zeros(N, Lmax); masked = valid.clone(); done = torch.zeros(N, dtype=torch.bool)
    prev_inp = torch.full((N, Lmax), -1, dtype=torch.long)
    H, Dh = cfg.num_heads, cfg.d_kv
    sas = [blk.layer[0].SelfAttention for blk in m.decoder.block]
    CTX.update(on=True, layers={id(a): i for i, a in enumerate(sas)},
               k=[torch.zeros(N, H, Lmax, Dh) for _ in sas], v=[torch.zeros(N, H, Lmax, Dh) for _ in sas])
    rows = computed = 0
    for t in range(T):
        live = (~done).nonzero().squeeze(1)
        if len(live) == 0: break
        Lm = int(lengths[live].max())
        inp_full = torch.where(masked, torch.full_like(tokens, cfg.mask_id), tokens)
        inp = inp_full[live, :Lm]
        full = refresh > 0 and t % refresh == 0 or t == 0
        R = torch.ones_like(inp, dtype=torch.bool) if full else (inp != prev_inp[live, :Lm]) | masked[live, :Lm]
        R &= valid[live, :Lm]
        prev_inp[live] = inp_full[live]
        rows += int(valid[live, :Lm].sum()); computed += int(R.sum())
        CTX.update(live=live, R=R)
        h = m.decode(inp, valid[live, :Lm], None, src_mask, ckv, enc_index[live])
        sel = masked[live, :Lm]
        rr, cc = sel.nonzero(as_tuple=True)
        logp = F.log_softmax(m.vocab_logits(h[sel]).float(), dim=-1)
        pred = logp.argmax(-1)
        g = live[rr]; tokens[g, cc] = pred; conf[g, cc] = logp.gather(1, pred[:, None]).squeeze(1)
        if t == T - 1: done[live] = True
        go = live[~done[live]]
        if len(go) == 0: continue
        c = torch.where(valid[go], conf[go], torch.tensor(float("inf")))
        n = torch.div(lengths[go] * (T - 1 - t), T, rounding_mode="floor")
        nm = lowest_confidence(c, n)
        tg = tokens[go]; rep = torch.zeros_like(nm); rep[:, 1:] = (tg[:, 1:] == tg[:, :-1]) & valid[go][:, 1:]
        nm |= rep; nm &= valid[go]; masked[go] = nm
        done[go[nm.sum(1) == 0]] = True
    CTX["on"] = False
    outs = []
    for b in range(B):
        best = None
        for k in range(K):
            ids, s = tr._output(tokens, conf, lengths, b * K + k, type("O", (), {"stutter_remask": True}))
            if best is None or s > best[1]: best = (ids, s)
        outs.append(best[0])
    return outs, computed, rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default=os.environ.get("GMLM_DATA_DIR"))
    p.add_argument("--split", default="val")
    p.add_argument("--sentences", type=int, default=0, help="the first N (0: all)")
    p.add_argument("--out", default="bench/results")
    args = p.parse_args()
    if not args.data_dir:
        raise SystemExit("set GMLM_DATA_DIR or --data-dir")
    src, ref = load_split(args.data_dir, args.split)[:2]
    if args.sentences:
        src, ref = src[:args.sentences], ref[:args.sentences]
    tr = ReferenceTranslator()
    from gmlm_engine.common import encode_sources
    enc = encode_sources(tr.tokenizer, tr.cfg, src)
    rows_out = []
    with torch.inference_mode():
        a = [r.tokens for r in tr.translate_batch(src[:64])]
        b = [tr.tokenizer.pieces(x) for x in refine(tr, enc[:64], 8, 2, 1)[0]]
        if a != b:
            raise SystemExit("the emulation's exact mode differs from the reference decoder")
        for T, K in ((8, 2), (10, 3)):
            for refresh in (1, 2, 4, 0):
                hyp, comp, tot = [], 0, 0
                for i in range(0, len(enc), 64):
                    o, c, r = refine(tr, enc[i:i + 64], T, K, refresh)
                    hyp += [tr.tokenizer.decode(x) for x in o]
                    comp, tot = comp + c, tot + r
                s = score(hyp, ref)
                rows_out.append(dict(T=T, K=K, refresh=refresh, bleu=s["bleu"], repetition=s["repetition"],
                                     rows_recomputed=round(comp / tot, 3)))
                print(json.dumps(rows_out[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "cached_refinement.json").write_text(json.dumps(rows_out, indent=1))
    md = [f"{args.split} ({len(src)} sentences), PyTorch reference, float32", "",
          "| T | K | refresh every | BLEU | repetition % | decoder rows computed |", "|---|---|---|---|---|---|"]
    md += [f"| {r['T']} | {r['K']} | {r['refresh'] or 'never'} | {r['bleu']} | {r['repetition']} | {r['rows_recomputed']} |"
           for r in rows_out]
    (out / "cached_refinement.md").write_text("\n".join(md) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
