#include "decoding/refine.h"

#include <algorithm>

#include "core/profiler.h"
#include "decoding/rng.h"
#include "ops/select.h"
#include "ops/vocab_argmax.h"

namespace gmlm {

namespace {

struct Candidate {
  int64_t source = 0, k = 0, len = 0;
  std::vector<int32_t> tokens, prev;
  std::vector<float> conf;
  std::vector<uint8_t> masked;
  bool done = false;
  bool pruned = false;  // dropped by length-candidate pruning: no more passes, not scored
  int64_t passes = 0;
  std::vector<std::vector<int32_t>> history;
  // this pass: the selected row (index into DecoderInput::sel) of each masked position, else -1
  std::vector<int32_t> sel_of;
};

// A candidate's output (repeats collapsed with stutter_remask) into *ids, and its score (docs step 4).
double candidate_output(const Candidate& c, bool stutter_remask, std::vector<int32_t>* ids) {
  std::vector<float> cf;
  ids->clear();
  for (int64_t i = 0; i < c.len; ++i)
    if (!stutter_remask || i == 0 || c.tokens[i] != c.tokens[i - 1]) {
      ids->push_back(c.tokens[i]);
      cf.push_back(c.conf[i]);
    }
  return ops::mean_score(cf.data(), static_cast<int64_t>(cf.size()));
}

}  // namespace

std::vector<RefineResult> refine_batch(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                                       const RefineOptions& o, Workspace& ws, ThreadPool& pool) {
  const T5Config& cfg = model.config();
  const int64_t B = static_cast<int64_t>(sources.size()), K = o.length_beam, T = o.iterations;
  const int64_t V = cfg.vocab_size;
  GMLM_CHECK_ARG(K >= 1 && K <= cfg.max_target_len, "length_beam must be in [1, ", cfg.max_target_len, "], got ", K);
  GMLM_CHECK_ARG(T >= 1, "iterations must be >= 1, got ", T);
  const int64_t keep = o.length_beam_keep == 0 ? K : o.length_beam_keep;
  GMLM_CHECK_ARG(keep >= 1 && keep <= K, "length_beam_keep must be in [1, length_beam = ", K, "], got ", keep);
  GMLM_CHECK_ARG(!o.init_random || (o.first_random_id >= 0 && o.first_random_id < V),
                 "random init needs first_random_id in [0, vocab_size)");
  std::vector<RefineResult> results(B);
  if (B == 0) return results;

  // 1. encoder, cross-attention K/V, length candidates
  EncoderOutput enc;
  model.encode(sources, enc, ws, pool);
  Tensor len_logits;
  model.length_logits(enc, len_logits, ws, pool);
  std::vector<uint64_t> src_hash(B);
  std::vector<Candidate> cands(B * K);
  for (int64_t b = 0; b < B; ++b) {
    src_hash[b] = rng::source_hash(sources[b].data(), static_cast<int64_t>(sources[b].size()));
    std::vector<int32_t> lengths(K);
    ops::length_candidates(len_logits.data<float>() + b * cfg.max_target_len, cfg.max_target_len, K, lengths.data());
    results[b].length_candidates = lengths;
    for (int64_t k = 0; k < K; ++k) {
      Candidate& c = cands[b * K + k];
      c.source = b;
      c.k = k;
      c.len = lengths[k];
      c.tokens.assign(c.len, cfg.mask_id);  // 2. every position masked
      c.prev = c.tokens;
      c.conf.assign(c.len, 0.f);
      c.masked.assign(c.len, 1);
    }
  }

  Tensor states;
  std::vector<int32_t> pred;
  std::vector<float> conf;
  std::vector<uint8_t> new_mask;
  std::vector<std::pair<int64_t, int64_t>> owner;  // sampling: (candidate, position) of each selected row
  for (int64_t t = 0; t < T; ++t) {
    // 3a. the decoder input of every live candidate, packed; its masked positions are selected
    DecoderInput in;
    std::vector<int64_t> live;
    {
      Profiler::Scope scope(Phase::remask);
      for (int64_t ci = 0; ci < B * K; ++ci) {
        Candidate& c = cands[ci];
        if (c.done) continue;
        live.push_back(ci);
        const int64_t begin = static_cast<int64_t>(in.ids.size());
        in.segs.push_back({begin, c.len, c.source});
        c.sel_of.assign(c.len, -1);
        for (int64_t i = 0; i < c.len; ++i) {
          int32_t id = c.masked[i] ? cfg.mask_id : c.tokens[i];
          if (t == 0 && o.init_random) id = rng::init_token(o.seed, src_hash[c.source], c.k, i, V, o.first_random_id);
          in.ids.push_back(id);
          if (c.masked[i]) {
            c.sel_of[i] = static_cast<int32_t>(in.sel.size());
            in.sel.push_back(static_cast<int32_t>(begin + i));
          }
        }
      }
    }
    if (live.empty()) break;

    // 3b. decoder pass; vocabulary step on the selected rows only
    model.decode(in, enc, ws, pool, states);
    const int64_t n_sel = static_cast<int64_t>(in.sel.size());
    if (!o.sampling) {
      pred.resize(n_sel);
      conf.resize(n_sel);
      ops::VocabArgmax()(mat(states), model.output_embedding(), pred.data(), conf.data(), pool);
    } else {
      // Gumbel-max: the noise of a selected row is keyed by (source, candidate, t, position)
      owner.assign(n_sel, {0, 0});
      for (int64_t ci : live)
        for (int64_t i = 0; i < cands[ci].len; ++i)
          if (cands[ci].sel_of[i] >= 0) owner[cands[ci].sel_of[i]] = {ci, i};
      pred.resize(n_sel);
      conf.resize(n_sel);
      const ops::VocabArgmax::Noise noise = [&](int64_t r, float* g) {
        const Candidate& c = cands[owner[r].first];
        const uint64_t pre = rng::prefix(o.seed, 0, src_hash[c.source], c.k, t, owner[r].second);
        for (int64_t v = 0; v < V; ++v) g[v] = rng::gumbel(rng::draw(pre, v));
      };
      ops::VocabArgmax().sample(mat(states), model.output_embedding(), noise, pred.data(), conf.data(), pool);
    }

    // 3c. write predictions into masked positions
    Profiler::Scope scope(Phase::remask);
    for (int64_t ci : live) {
      Candidate& c = cands[ci];
      for (int64_t i = 0; i < c.len; ++i)
        if (c.sel_of[i] >= 0) {
          c.tokens[i] = pred[c.sel_of[i]];
          c.conf[i] = conf[c.sel_of[i]];
        }
      c.passes += 1;
      if (o.return_history) c.history.push_back(c.tokens);
    }
    // 3d. after the first pass, keep the best `keep` candidates of each source (every one is live at t = 0)
    if (t == 0 && keep < K) {
      std::vector<int32_t> ids;
      std::vector<std::pair<double, int64_t>> ranked(K);
      for (int64_t b = 0; b < B; ++b) {
        for (int64_t k = 0; k < K; ++k) ranked[k] = {-candidate_output(cands[b * K + k], o.stutter_remask, &ids), k};
        std::sort(ranked.begin(), ranked.end());  // best score first, ties: the lower index
        for (int64_t r = keep; r < K; ++r) cands[b * K + ranked[r].second].pruned = true;
      }
    }
    // 3e. stop and re-mask
    for (int64_t ci : live) {
      Candidate& c = cands[ci];
      if (c.pruned) {
        c.done = true;
        continue;
      }
      if (t >= 1 && c.tokens == c.prev) c.done = true;
      c.prev = c.tokens;
      if (t == T - 1) c.done = true;
      if (c.done) continue;
      new_mask.assign(c.len, 0);
      if (!o.threshold_remask) {
        const int64_t n = c.len * (T - 1 - t) / T;
        ops::lowest_confidence(c.conf.data(), c.len, n, new_mask.data());
      } else {
        ops::threshold_remask(c.conf.data(), c.masked.data(), c.len, o.log_threshold, new_mask.data());
      }
      if (o.stutter_remask) ops::stutter_remask(c.tokens.data(), c.len, new_mask.data());
      c.masked = new_mask;
      if (std::none_of(c.masked.begin(), c.masked.end(), [](uint8_t m) { return m != 0; })) c.done = true;
    }
  }

  // 4. score the candidates, keep the best per source (ties: the lower candidate index)
  for (int64_t b = 0; b < B; ++b) {
    int64_t best = -1;
    double best_s = 0;
    std::vector<int32_t> best_ids;
    for (int64_t k = 0; k < K; ++k) {
      const Candidate& c = cands[b * K + k];
      if (c.pruned) continue;
      std::vector<int32_t> ids;
      const double s = candidate_output(c, o.stutter_remask, &ids);
      if (best < 0 || s > best_s) {
        best = k;
        best_s = s;
        best_ids = std::move(ids);
      }
    }
    Candidate& w = cands[b * K + best];
    results[b].ids = std::move(best_ids);
    results[b].score = best_s;
    results[b].passes = w.passes;
    results[b].history = std::move(w.history);
  }
  return results;
}

}  // namespace gmlm
