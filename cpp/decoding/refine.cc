#include "decoding/refine.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/profiler.h"
#include "decoding/rules.h"
#include "ops/select.h"
#include "ops/vocab_argmax.h"

namespace gmlm {

void RefineOptions::validate(const T5Config& cfg) const {
  const int64_t K = length_beam;
  GMLM_CHECK_ARG(K >= 1 && K <= cfg.max_target_len, "length_beam must be in [1, ", cfg.max_target_len, "], got ", K);
  GMLM_CHECK_ARG(iterations >= 1 && iterations <= 1000, "iterations must be in [1, 1000], got ", iterations);
  GMLM_CHECK_ARG(length_beam_keep >= 0 && length_beam_keep <= K,
                 "length_beam_keep must be in [1, length_beam = ", K, "] (or 0: keep all), got ", length_beam_keep);
  GMLM_CHECK_ARG(length_offset > -cfg.max_target_len && length_offset < cfg.max_target_len,
                 "length_offset must be in [", 1 - cfg.max_target_len, ", ", cfg.max_target_len - 1, "], got ",
                 length_offset);
  GMLM_CHECK_ARG(cache_refresh >= 0 && cache_refresh <= 1000, "cache_refresh must be in [0, 1000], got ", cache_refresh);
  GMLM_CHECK_ARG(!update_all || cache_refresh == 1,
                 "cache_refresh must be 1 with update='all' (every position's input changes each pass)");
  GMLM_CHECK_ARG(std::isfinite(repeat_penalty) && repeat_penalty >= 0.0 && repeat_penalty <= 100.0,
                 "repeat_penalty must be a number in [0, 100], got ", repeat_penalty);
  GMLM_CHECK_ARG(std::isfinite(blank_penalty) && blank_penalty >= 0.0 && blank_penalty <= 100.0,
                 "blank_penalty must be a number in [0, 100], got ", blank_penalty);
  GMLM_CHECK_ARG(blank_penalty == 0.0 || cfg.ctc(), "blank_penalty applies to ctc models (a blank to penalise)");
  GMLM_CHECK_ARG(!threshold_remask || (std::isfinite(log_threshold) && log_threshold < 0.0),
                 "threshold must be a probability in (0, 1) with remask='threshold'");
  if (cfg.ctc()) {  // one canvas per source, collapsed by CTC's rule (docs/decoding.md, "CTC models")
    GMLM_CHECK_ARG(K == 1, "length_beam must be 1 for a ctc model (one canvas per source), got ", K);
    GMLM_CHECK_ARG(length_offset == 0, "length_offset must be 0 for a ctc model (its canvas length is set by the "
                   "source), got ", length_offset);
    GMLM_CHECK_ARG(!stutter_remask, "stutter_remask must be off for a ctc model (its collapse merges repeats)");
  }
}

RefineOptions RefineOptions::defaults_for(const T5Config& cfg) {
  RefineOptions o;
  if (cfg.ctc()) {
    o.iterations = 1;
    o.length_beam = 1;
    o.length_offset = 0;
    o.stutter_remask = false;
    o.repeat_remask = true;
    o.blank_penalty = kCtcBlankPenalty;
  }
  return o;
}

namespace {

// A candidate's output and score, and its rank (docs step 4: ops::candidate_output, ops::candidate_rank).
template <typename C>
double candidate_output(const C& c, const RefineOptions& o, const T5Config& cfg, std::vector<int32_t>* ids) {
  return ops::candidate_output(c.tokens.data(), c.conf.data(), c.len, o.stutter_remask, ids, cfg.ctc_blank());
}

double rank_of(double score, const std::vector<int32_t>& ids, const RefineOptions& o, const T5Model& model) {
  return ops::candidate_rank(score, ids, o.repeat_penalty, model.word_pieces().data());
}

void check_options(const RefineOptions& o, const T5Model& model) {
  o.validate(model.config());
  GMLM_CHECK_ARG((!o.repeat_remask && o.repeat_penalty == 0.0) ||
                     static_cast<int64_t>(model.word_pieces().size()) == model.config().vocab_size,
                 "repeat_remask and repeat_penalty need the model's word pieces (the engine was built without its "
                 "tokenizer)");
}

}  // namespace

std::vector<int64_t*> RefineBatch::live_sources() {
  std::vector<int64_t*> s;
  for (Request& r : live_) s.push_back(&r.source);
  return s;
}

std::vector<int64_t> RefineBatch::add(const std::vector<std::vector<int32_t>>& sources,
                                      const std::vector<RefineOptions>& opts, Workspace& ws, ThreadPool& pool) {
  const T5Config& cfg = model_.config();
  GMLM_CHECK_ARG(opts.size() == sources.size(), "add: ", sources.size(), " sources but ", opts.size(), " options");
  for (const RefineOptions& o : opts) check_options(o, model_);
  std::vector<int64_t> ids;
  if (sources.empty()) return ids;

  // 1. encoder, cross-attention K/V, length candidates of the newcomers
  EncoderOutput fresh;
  // the live requests' rows first, then the newcomers (in order)
  const int64_t base = join(sources, &fresh, ws, pool);
  Tensor len_logits;
  if (!cfg.ctc()) {
    model_.length_logits(fresh, len_logits, ws, pool);
    len_logits = len_logits.to(Device::cpu);   // the length candidates are chosen on the host
  }
  for (size_t b = 0; b < sources.size(); ++b) {
    Request r;
    r.id = next_id_++;
    r.o = opts[b];
    r.source = base + static_cast<int64_t>(b);
    r.src_hash = rules::source_hash(sources[b].data(), static_cast<int64_t>(sources[b].size()));
    const int64_t K = r.o.length_beam;
    r.length_candidates.resize(K);
    if (cfg.ctc()) {  // K = 1: the canvas, ctc_upsample positions per encoder token
      r.length_candidates[0] = static_cast<int32_t>(cfg.ctc_canvas(static_cast<int64_t>(sources[b].size())));
    } else {
      ops::length_candidates(len_logits.data<float>() + b * cfg.max_target_len, cfg.max_target_len, K,
                             r.length_candidates.data());
      for (int32_t& len : r.length_candidates)
        len = static_cast<int32_t>(std::clamp<int64_t>(len + r.o.length_offset, 1, cfg.max_target_len));
    }
    r.cands.resize(K);
    for (int64_t k = 0; k < K; ++k) {
      Candidate& c = r.cands[k];
      c.k = k;
      c.len = r.length_candidates[k];
      c.tokens.assign(c.len, cfg.mask_id);  // 2. every position masked
      c.prev = c.tokens;
      c.conf.assign(c.len, 0.f);
      c.masked.assign(c.len, 1);
      c.cached_in.assign(c.len, -1);
    }
    ids.push_back(r.id);
    live_.push_back(std::move(r));
  }
  pack_kv();
  return ids;
}

void RefineBatch::pack_kv() {
  cached_ = std::any_of(live_.begin(), live_.end(), [](const Request& r) { return r.o.cache_refresh != 1; });
  if (!cached_ && kv_.numel() == 0) return;
  const int64_t width = model_.decoder_kv_width();
  int64_t rows = 0;
  for (const Request& r : live_)
    for (const Candidate& c : r.cands) rows += c.done ? 0 : c.len;
  Tensor packed;
  if (cached_) model_.place(packed, {rows, width});
  int64_t row = 0;
  for (Request& r : live_)
    for (Candidate& c : r.cands) {
      if (c.done) continue;
      const int64_t at = cached_ ? row : -1;
      if (cached_ && r.o.cache_refresh != 1 && c.kv >= 0) copy_row_range(kv_, c.kv, c.len, packed, at);
      c.kv = at;
      row += c.len;
    }
  kv_ = std::move(packed);
}

bool RefineBatch::cancel(int64_t id) {
  auto it = find_request(live_, id);
  if (it == live_.end()) return false;
  live_.erase(it);
  left_ = true;
  return true;
}

int64_t RefineBatch::live_rows() const {
  int64_t n = 0;
  for (const Request& r : live_)
    for (const Candidate& c : r.cands)
      if (!c.done) n += c.len;
  return n;
}

int64_t RefineBatch::best_candidate(const Request& r, RefineResult* out) const {
  // 4. score the candidates that were not pruned, keep the best (ties: the lower candidate index)
  RefineResult& res = *out;
  res.candidates.clear();
  int64_t best = -1;
  double best_rank = 0.0;
  for (const Candidate& c : r.cands) {
    if (c.pruned) continue;
    std::vector<int32_t> ids;
    const double s = candidate_output(c, r.o, model_.config(), &ids);
    if (r.o.return_candidates) res.candidates.push_back({ids, s, c.passes});
    const double rank = rank_of(s, ids, r.o, model_);
    if (best < 0 || rank > best_rank) {
      best = c.k;
      best_rank = rank;
      res.score = s;
      res.ids = std::move(ids);
    }
  }
  res.passes = r.cands[best].passes;
  res.length_candidates = r.length_candidates;
  return best;
}

bool RefineBatch::current(int64_t id, RefineResult* out) const {
  auto it = find_request(live_, id);
  if (it == live_.end() || it->t == 0) return false;
  best_candidate(*it, out);
  return true;
}

void RefineBatch::snapshot(const Request& r, std::vector<CandidateState>* out, int64_t* best) const {
  RefineResult res;
  *best = best_candidate(r, &res);
  out->clear();
  std::vector<int32_t> ids;
  for (const Candidate& c : r.cands) {
    // a done candidate predicts nothing again (its mask is the one its last pass ran with)
    std::vector<uint8_t> masked = c.done ? std::vector<uint8_t>(c.len, 0) : c.masked;
    out->push_back({c.tokens, c.conf, std::move(masked), candidate_output(c, r.o, model_.config(), &ids), c.passes,
                    c.done, c.pruned});
  }
}

bool RefineBatch::snapshot(int64_t id, std::vector<CandidateState>* out, int64_t* best) const {
  for (const auto& [fid, state] : finished_)
    if (fid == id) {
      *out = state.first;
      *best = state.second;
      return true;
    }
  auto it = find_request(live_, id);
  if (it == live_.end() || it->t == 0) return false;
  snapshot(*it, out, best);
  return true;
}

DecoderInput RefineBatch::pack_input(int64_t* n_argmax, Sampled* sampled) {
  const T5Config& cfg = model_.config();
  const int64_t V = cfg.vocab_size;
  DecoderInput in;
  int64_t positions = 0;
  blank_bias_.clear();
  Profiler::Scope scope(Phase::remask);
  for (int group = 0; group < 2; ++group) {
    for (Request& r : live_) {
      if (r.o.sampling != (group == 1)) continue;
      // a full pass computes every position; the others (cached refinement) the fresh ones
      const int64_t R = r.o.cache_refresh;
      const bool full = r.t == 0 || (R >= 1 && r.t % R == 0);
      for (Candidate& c : r.cands) {
        if (c.done) continue;
        const int64_t begin = static_cast<int64_t>(in.ids.size());
        c.sel_of.assign(c.len, -1);
        for (int64_t i = 0; i < c.len; ++i) {
          int32_t id = c.masked[i] ? cfg.mask_id : c.tokens[i];
          if (r.t == 0 && r.o.init_random) id = rules::init_token(r.o.seed, r.src_hash, c.k, i, V, cfg.first_random_id());
          if (!full && !c.masked[i] && id == c.cached_in[i]) continue;
          c.cached_in[i] = id;
          if (c.masked[i] || r.o.update_all) {  // the rows the vocabulary step predicts
            c.sel_of[i] = static_cast<int32_t>(in.sel.size());
            in.sel.push_back(static_cast<int32_t>(in.ids.size()));
            blank_bias_.push_back(static_cast<float>(r.o.blank_penalty));
            if (group == 1) {
              sampled->owner.push_back({&r, &c});
              sampled->pos.push_back(static_cast<int32_t>(i));
            }
          }
          in.ids.push_back(id);
          in.pos.push_back(static_cast<int32_t>(i));
        }
        in.segs.push_back({begin, static_cast<int64_t>(in.ids.size()) - begin, c.len, cached_ ? c.kv : begin, r.source});
        positions += c.len;
      }
    }
    if (group == 0) *n_argmax = static_cast<int64_t>(in.sel.size());
  }
  if (Profiler* prof = scope.profiler()) {
    prof->decoder_rows += static_cast<int64_t>(in.ids.size());
    prof->decoder_positions += positions;
  }
  return in;
}

void RefineBatch::predict(const Tensor& states, int64_t n_argmax, const Sampled& sampled, std::vector<int32_t>* pred,
                          std::vector<float>* conf, std::vector<float>* blank_lp, ThreadPool& pool) const {
  const int64_t V = model_.config().vocab_size;
  const int64_t n_sel = n_argmax + static_cast<int64_t>(sampled.pos.size());
  const ConstMat all = mat(states);
  // on a device the predictions are made where the states are, then come to the host, where the rules run
  const auto [out_pred, out_conf] = prediction_outputs(*pred, *conf, n_sel);
  ops::VocabArgmax vocab;
  if (std::any_of(blank_bias_.begin(), blank_bias_.end(), [](float b) { return b != 0.f; })) {
    vocab.bias_col = model_.config().ctc_blank();
    vocab.row_bias = blank_bias_.data();
    blank_lp->assign(n_sel, std::numeric_limits<float>::quiet_NaN());
    vocab.bias_lp = blank_lp->data();
  }
  if (n_argmax > 0) vocab(all.sub(0, n_argmax, 0, all.cols), model_.output_embedding(), out_pred, out_conf, pool);
  if (n_sel > n_argmax) {
    // Gumbel-max: the noise of a selected row is keyed by (source, candidate, t, position)
    const ops::VocabArgmax::Noise noise = [&](int64_t row, float* g) {
      const Request& r = *sampled.owner[row].first;
      const Candidate& c = *sampled.owner[row].second;
      const uint64_t pre = rules::prefix(r.o.seed, 0, r.src_hash, c.k, r.t, sampled.pos[row]);
      for (int64_t v = 0; v < V; ++v) g[v] = rules::gumbel(rules::draw(pre, v));
    };
    if (vocab.row_bias) {
      vocab.row_bias += n_argmax;
      vocab.bias_lp += n_argmax;
    }
    vocab.sample(all.sub(n_argmax, n_sel - n_argmax, 0, all.cols), model_.output_embedding(), noise,
                 out_pred + n_argmax, out_conf + n_argmax, pool);
  }
  fetch_predictions(*pred, *conf, n_sel);
}

bool RefineBatch::update(Request& r, const std::vector<int32_t>& pred, const std::vector<float>& conf,
                         const std::vector<float>& blank_lp) {
  const RefineOptions& o = r.o;
  const int64_t K = o.length_beam, T = o.iterations, t = r.t;
  const int64_t keep = o.length_beam_keep == 0 ? K : o.length_beam_keep;
  std::vector<int32_t> ids;
  const T5Config& cfg = model_.config();
  const bool ctc_repeats = cfg.ctc() && o.repeat_remask && o.blank_penalty != 0.0;
  std::vector<float> lp;
  for (Candidate& c : r.cands) {
    if (c.done) continue;
    for (int64_t i = 0; i < c.len; ++i)
      if (c.sel_of[i] >= 0) {
        c.tokens[i] = pred[c.sel_of[i]];
        c.conf[i] = conf[c.sel_of[i]];
      }
    if (ctc_repeats) {  // the blank's log-probability at the positions this pass predicted
      lp.assign(c.len, std::numeric_limits<float>::quiet_NaN());
      for (int64_t i = 0; i < c.len; ++i)
        if (c.sel_of[i] >= 0) lp[i] = blank_lp[c.sel_of[i]];
      ops::ctc_repeat_blanks(c.tokens.data(), c.conf.data(), lp.data(), c.len, cfg.ctc_blank(),
                             static_cast<float>(o.blank_penalty), model_.word_pieces().data());
    }
    c.passes += 1;
    if (o.return_history) c.history.push_back(c.tokens);
  }
  if (t == 0 && keep < K) {  // every candidate ran pass 0: keep the best `keep`
    std::vector<std::pair<double, int64_t>> ranked(K);
    for (int64_t k = 0; k < K; ++k) {
      const double s = candidate_output(r.cands[k], o, model_.config(), &ids);
      ranked[k] = {-rank_of(s, ids, o, model_), k};
    }
    std::sort(ranked.begin(), ranked.end());  // best score first, ties: the lower index
    for (int64_t j = keep; j < K; ++j) r.cands[ranked[j].second].pruned = true;
  }
  bool all_done = true;
  std::vector<uint8_t> new_mask;
  for (Candidate& c : r.cands) {
    if (c.done) continue;
    if (c.pruned) {
      c.done = true;
      continue;
    }
    if (o.early_stop && t >= 1 && c.tokens == c.prev) c.done = true;
    c.prev = c.tokens;
    if (t == T - 1) c.done = true;
    if (!c.done) {
      new_mask.assign(c.len, 0);
      if (!o.threshold_remask) {
        const int64_t n = rules::linear_remask_count(c.len, T, t);
        ops::lowest_confidence(c.conf.data(), c.len, n, new_mask.data());
      } else {
        ops::threshold_remask(c.conf.data(), c.masked.data(), c.len, o.log_threshold, new_mask.data());
      }
      if (o.stutter_remask) ops::stutter_remask(c.tokens.data(), c.len, new_mask.data());
      if (o.repeat_remask && !cfg.ctc())
        ops::repeat_remask(c.tokens.data(), c.conf.data(), c.len, model_.word_pieces().data(), new_mask.data());
      c.masked = new_mask;
      if (std::none_of(c.masked.begin(), c.masked.end(), [](uint8_t m) { return m != 0; })) c.done = true;
    }
    all_done = all_done && c.done;
  }
  r.t += 1;
  return all_done;
}

std::vector<std::pair<int64_t, RefineResult>> RefineBatch::step(Workspace& ws, ThreadPool& pool) {
  std::vector<std::pair<int64_t, RefineResult>> finished;
  finished_.clear();
  if (live_.empty()) return finished;
  if (left_) pack_kv();
  compact();

  int64_t n_argmax = 0;
  Sampled sampled;
  const DecoderInput in = pack_input(&n_argmax, &sampled);  // 3a
  Tensor states;
  model_.decode(in, enc_, cached_ ? &kv_ : nullptr, ws, pool, states);  // 3b: decoder pass, vocabulary step
  std::vector<int32_t> pred;
  std::vector<float> conf;
  std::vector<float> blank_lp;
  predict(states, n_argmax, sampled, &pred, &conf, &blank_lp, pool);

  Profiler::Scope scope(Phase::remask);  // 3c-3e, per request
  for (Request& r : live_) {
    if (!update(r, pred, conf, blank_lp)) continue;
    finished_.emplace_back(r.id, std::pair<std::vector<CandidateState>, int64_t>{});
    snapshot(r, &finished_.back().second.first, &finished_.back().second.second);
    RefineResult res;
    res.history = std::move(r.cands[best_candidate(r, &res)].history);
    finished.push_back({r.id, std::move(res)});
  }
  if (!finished.empty()) {
    live_.erase(std::remove_if(live_.begin(), live_.end(), [](const Request& r) {
                  return std::all_of(r.cands.begin(), r.cands.end(), [](const Candidate& c) { return c.done; });
                }),
                live_.end());
    left_ = true;
  }
  return finished;
}

std::vector<RefineResult> refine_batch(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                                       const RefineOptions& opts, Workspace& ws, ThreadPool& pool) {
  RefineBatch batch(model);
  const std::vector<int64_t> ids = batch.add(sources, std::vector<RefineOptions>(sources.size(), opts), ws, pool);
  return drain(batch, ids, ws, pool);
}

}  // namespace gmlm
