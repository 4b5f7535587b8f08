#include "decoding/ar.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/profiler.h"
#include "ops/gemm.h"
#include "ops/vocab_argmax.h"

namespace gmlm {

void ArOptions::validate() const {
  GMLM_CHECK_ARG(beam_size >= 1 && beam_size <= 256, "beam_size must be in [1, 256], got ", beam_size);
  GMLM_CHECK_ARG(std::isfinite(length_penalty) && length_penalty >= 0.0 && length_penalty <= 10.0,
                 "length_penalty must be a number in [0, 10], got ", length_penalty);
}

namespace {

// Row r of logits -> log-probabilities in place (float32, as log_softmax computes them:
// (x - max) - log(sum exp(x - max))).
void log_softmax_row(float* x, int64_t V) {
  float mx = x[0];
  for (int64_t v = 1; v < V; ++v) mx = std::max(mx, x[v]);
  float sum = 0.f;
  for (int64_t v = 0; v < V; ++v) sum += std::exp(x[v] - mx);
  const float lse = std::log(sum);
  for (int64_t v = 0; v < V; ++v) x[v] = (x[v] - mx) - lse;
}

// The log-probabilities of states' rows (states times the output embedding, log-softmax) into `out` on the host;
// on a device the logits are computed in `dev` and come to the host first.
void host_log_probs(const T5Model& model, ConstMat states, Tensor& dev, Tensor& out, ThreadPool& pool) {
  const int64_t m = states.rows, V = model.config().vocab_size;
  out.resize({m, V});
  if (model.device() == Device::cpu) {
    ops::Gemm()(states, model.output_embedding(), mat(out), pool);
  } else {
    model.place(dev, {m, V});
    ops::Gemm()(states, model.output_embedding(), mat(dev), pool);
    dev.copy_to_host(out.data<float>(), sizeof(float) * m * V);
  }
  Profiler::Scope scope(Phase::vocab);
  pool.parallel_for(m, [&](int64_t r, int) { log_softmax_row(out.data<float>() + r * V, V); });
}

}  // namespace

ArBatch::ArBatch(const T5Model& model) : ResumableBatch(model) {
  const T5Config& cfg = model.config();
  GMLM_CHECK_ARG(!cfg.gmlm, "AR decoding needs an ar model; this is a gmlm model");
  cache_.reset(cfg.num_decoder_layers, model.self_cache_width(), cfg.max_target_len, model.device());
}

int32_t ArBatch::take_slot() {
  if (free_slots_.empty()) {
    const int64_t old = cache_.slots;
    cache_.reserve(old + 1);
    for (int64_t s = cache_.slots - 1; s >= old; --s) free_slots_.push_back(static_cast<int32_t>(s));
  }
  const int32_t s = free_slots_.back();
  free_slots_.pop_back();
  return s;
}

std::vector<int64_t*> ArBatch::live_sources() {
  std::vector<int64_t*> s;
  for (Request& r : live_) s.push_back(&r.source);
  return s;
}

std::vector<int64_t> ArBatch::add(const std::vector<std::vector<int32_t>>& sources, const std::vector<ArOptions>& opts,
                                  Workspace& ws, ThreadPool& pool) {
  GMLM_CHECK_ARG(opts.size() == sources.size(), "add: ", sources.size(), " sources but ", opts.size(), " options");
  for (const ArOptions& o : opts) o.validate();
  std::vector<int64_t> ids;
  if (sources.empty()) return ids;
  EncoderOutput fresh;
  // the live requests' rows first, then the newcomers (in order)
  const int64_t base = join(sources, &fresh, ws, pool);
  for (size_t b = 0; b < sources.size(); ++b) {
    Request r;
    r.id = next_id_++;
    r.o = opts[b];
    r.source = base + static_cast<int64_t>(b);
    Hyp h;
    h.slot = take_slot();
    r.hyps.push_back(std::move(h));  // beam search: only the first beam is alive at step 0
    ids.push_back(r.id);
    live_.push_back(std::move(r));
  }
  return ids;
}

bool ArBatch::cancel(int64_t id) {
  auto it = find_request(live_, id);
  if (it == live_.end()) return false;
  for (const Hyp& h : it->hyps) free_slots_.push_back(h.slot);
  live_.erase(it);
  left_ = true;
  return true;
}

void ArBatch::reserve(int64_t hypotheses) {
  const int64_t old = cache_.slots;
  cache_.reserve(hypotheses);
  for (int64_t s = cache_.slots - 1; s >= old; --s) free_slots_.push_back(static_cast<int32_t>(s));
}

int64_t ArBatch::live_rows() const {
  int64_t n = 0;
  for (const Request& r : live_) n += static_cast<int64_t>(r.hyps.size());
  return n;
}

bool ArBatch::current(int64_t id, RefineResult* out) const {
  auto it = find_request(live_, id);
  if (it == live_.end() || it->step == 0) return false;
  const Hyp& h = it->hyps.front();  // the best live hypothesis (ranked first)
  out->ids = h.tokens;
  out->score = h.score / static_cast<double>(h.tokens.size() + 1);
  out->passes = it->step;
  out->history.clear();
  out->length_candidates.clear();
  return true;
}

bool ArBatch::snapshot(int64_t id, std::vector<CandidateState>* out, int64_t* best) const {
  *best = 0;
  out->clear();
  for (const auto& [fid, state] : finished_)
    if (fid == id) {
      out->push_back(state);
      return true;
    }
  auto it = find_request(live_, id);
  if (it == live_.end() || it->step == 0) return false;
  for (const Hyp& h : it->hyps)
    out->push_back({h.tokens, {}, {}, h.score / static_cast<double>(h.tokens.size() + 1), it->step, false, false});
  return true;
}

RefineResult ArBatch::result(Request& r) const {
  const T5Config& cfg = model_.config();
  RefineResult res;
  if (r.o.beam_size == 1) {
    // greedy: the tokens before eos, without padding; the sum (eos included) / (length + 1)
    const Hyp& h = r.hyps.front();
    for (int32_t t : h.tokens)
      if (t != cfg.pad_id) res.ids.push_back(t);
    res.score = h.score / static_cast<double>(res.ids.size() + 1);
  } else if (r.finished.empty()) {
    res.ids = r.hyps.front().tokens;
    res.score = r.hyps.front().score;
  } else {
    const Finished* best = &r.finished.front();
    for (const Finished& f : r.finished)
      if (f.norm > best->norm) best = &f;  // ties: the first finished
    res.ids = best->tokens;
    res.score = best->norm;
  }
  res.passes = static_cast<int64_t>(res.ids.size()) + 1;
  return res;
}

// 3b for a beam request: the finished hypotheses and the next beam from its best continuations (`top`, best
// first); the children take over or copy their parents' cache slots. True when the search ended.
bool ArBatch::advance_beam(Request& r, const std::vector<Cand>& top) {
  const T5Config& cfg = model_.config();
  const int64_t V = cfg.vocab_size, T = cfg.max_target_len;
  const int64_t beam = r.o.beam_size, nh = static_cast<int64_t>(r.hyps.size());
  std::vector<Hyp> next;
  std::vector<int64_t> parent;
  for (const Cand& c : top) {
    if (c.s == -INFINITY) break;
    const int64_t h = c.flat / V;
    const int32_t w = static_cast<int32_t>(c.flat % V);
    if (w == cfg.eos_id || r.step == T - 1) {
      if (static_cast<int64_t>(r.finished.size()) < beam) {
        Finished f;
        f.tokens = r.hyps[h].tokens;
        if (w != cfg.eos_id) f.tokens.push_back(w);
        f.sum = c.s;
        f.norm = c.s / std::pow(static_cast<double>(f.tokens.size() + 1), r.o.length_penalty);
        r.finished.push_back(std::move(f));
      }
    } else {
      Hyp child;
      child.tokens = r.hyps[h].tokens;
      child.tokens.push_back(w);
      child.score = c.s;
      next.push_back(std::move(child));
      parent.push_back(h);
    }
    if (static_cast<int64_t>(next.size()) == beam) break;
  }
  if (static_cast<int64_t>(r.finished.size()) >= beam || next.empty()) return true;
  // cache slots: a parent's first child takes over its slot, the others get copies of its rows
  std::vector<char> taken(nh, 0);
  for (size_t c = 0; c < next.size(); ++c) {
    const int64_t h = parent[c];
    if (!taken[h]) {
      taken[h] = 1;
      next[c].slot = r.hyps[h].slot;
    } else {
      next[c].slot = -1;
    }
  }
  for (size_t c = 0; c < next.size(); ++c)
    if (next[c].slot < 0) {
      next[c].slot = take_slot();
      cache_.copy_slot(r.hyps[parent[c]].slot, next[c].slot, r.step + 1);
    }
  for (int64_t h = 0; h < nh; ++h)
    if (!taken[h]) free_slots_.push_back(r.hyps[h].slot);
  r.hyps = std::move(next);
  return false;
}

std::vector<std::pair<int64_t, RefineResult>> ArBatch::step(Workspace& ws, ThreadPool& pool) {
  std::vector<std::pair<int64_t, RefineResult>> done;
  finished_.clear();
  if (live_.empty()) return done;
  compact();
  const T5Config& cfg = model_.config();
  const int64_t V = cfg.vocab_size, T = cfg.max_target_len;

  // 1. one causal step of every live hypothesis: greedy requests' rows first, then beam rows
  StepInput in;
  std::vector<int64_t> first_row(live_.size());
  int64_t n_greedy = 0;
  for (int pass = 0; pass < 2; ++pass)
    for (size_t q = 0; q < live_.size(); ++q) {
      const Request& r = live_[q];
      if ((r.o.beam_size == 1) != (pass == 0)) continue;
      first_row[q] = static_cast<int64_t>(in.ids.size());
      for (const Hyp& h : r.hyps) {
        in.ids.push_back(h.tokens.empty() ? cfg.decoder_start_token_id : h.tokens.back());
        in.pos.push_back(static_cast<int32_t>(r.step));
        in.slot.push_back(h.slot);
        in.source.push_back(r.source);
      }
      if (pass == 0) n_greedy = static_cast<int64_t>(in.ids.size());
    }
  model_.decode_step(in, enc_, cache_, ws, pool, states_);
  const int64_t n = static_cast<int64_t>(in.ids.size()), D = cfg.d_model;

  // 2. the vocabulary: fused argmax for greedy rows, full log-probabilities for beam rows (on the host)
  std::vector<int32_t> pred;
  std::vector<float> conf;
  const auto [out_pred, out_conf] = prediction_outputs(pred, conf, n_greedy);
  if (n_greedy > 0)
    ops::VocabArgmax()(mat(states_).sub(0, n_greedy, 0, D), model_.output_embedding(), out_pred, out_conf, pool);
  fetch_predictions(pred, conf, n_greedy);
  const int64_t n_beam = n - n_greedy;
  if (n_beam > 0) host_log_probs(model_, mat(states_).sub(n_greedy, n_beam, 0, D), logits_dev_, logits_, pool);

  // 3a. beam requests: the 2 x beam best continuations of each, in parallel (requests are independent)
  std::vector<std::vector<Cand>> tops(live_.size());
  {
    std::vector<size_t> beams;
    for (size_t q = 0; q < live_.size(); ++q)
      if (live_[q].o.beam_size > 1) beams.push_back(q);
    pool.parallel_for(static_cast<int64_t>(beams.size()), [&](int64_t i, int) {
      const size_t q = beams[i];
      const Request& r = live_[q];
      const size_t want = static_cast<size_t>(2 * r.o.beam_size);
      std::vector<Cand>& top = tops[q];  // best first
      top.reserve(want + 1);
      const float* lp = logits_.data<float>() + (first_row[q] - n_greedy) * V;
      for (int64_t h = 0; h < static_cast<int64_t>(r.hyps.size()); ++h) {
        const double base = r.hyps[h].score;
        for (int64_t v = 0; v < V; ++v) {
          const Cand c{base + static_cast<double>(lp[h * V + v]), h * V + v};
          if (top.size() == want && !(c < top.back())) continue;
          top.insert(std::upper_bound(top.begin(), top.end(), c), c);
          if (top.size() > want) top.pop_back();
        }
      }
    });
  }

  // 3b. selection per request
  std::vector<Request> still;
  still.reserve(live_.size());
  for (size_t q = 0; q < live_.size(); ++q) {
    Request& r = live_[q];
    bool ended = false;
    if (r.o.beam_size == 1) {
      Hyp& h = r.hyps.front();
      const int64_t row = first_row[q];
      h.score += static_cast<double>(conf[row]);
      if (pred[row] == cfg.eos_id) {
        ended = true;
      } else {
        h.tokens.push_back(pred[row]);
        ended = r.step + 1 >= T;
      }
    } else {
      ended = advance_beam(r, tops[q]);
    }
    if (ended) {
      done.emplace_back(r.id, result(r));
      const RefineResult& res = done.back().second;
      finished_.emplace_back(r.id, CandidateState{res.ids, {}, {}, res.score, r.step + 1, true, false});
      for (const Hyp& h : r.hyps) free_slots_.push_back(h.slot);
      left_ = true;
    } else {
      ++r.step;
      still.push_back(std::move(r));
    }
  }
  live_ = std::move(still);
  return done;
}

std::vector<double> ar_score(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                             const std::vector<std::vector<int32_t>>& targets, Workspace& ws, ThreadPool& pool) {
  const T5Config& cfg = model.config();
  GMLM_CHECK_ARG(!cfg.gmlm, "AR scoring needs an ar model; this is a gmlm model");
  GMLM_CHECK_ARG(sources.size() == targets.size(), "ar_score: ", sources.size(), " sources but ", targets.size(),
                 " targets");
  const int64_t n = static_cast<int64_t>(targets.size()), T = cfg.max_target_len, V = cfg.vocab_size;
  std::vector<double> sum(n, 0.0);
  if (n == 0) return sum;
  EncoderOutput enc;
  model.encode(sources, enc, ws, pool);
  SelfCache cache;
  cache.reset(cfg.num_decoder_layers, model.self_cache_width(), T, model.device());
  cache.reserve(n);
  std::vector<int64_t> steps(n);   // positions scored: the tokens, then eos when there is room
  for (int64_t i = 0; i < n; ++i) {
    for (int32_t t : targets[i]) GMLM_CHECK_ARG(t >= 0 && t < V, "target ", i, ": token id ", t, " outside the vocabulary");
    steps[i] = std::min<int64_t>(static_cast<int64_t>(targets[i].size()) + 1, T);
  }
  Tensor states, logits, logits_dev;
  for (int64_t t = 0; t < T; ++t) {
    StepInput in;
    std::vector<int64_t> row_of;
    for (int64_t i = 0; i < n; ++i) {
      if (t >= steps[i]) continue;
      in.ids.push_back(t == 0 ? cfg.decoder_start_token_id : targets[i][t - 1]);
      in.pos.push_back(static_cast<int32_t>(t));
      in.slot.push_back(static_cast<int32_t>(i));
      in.source.push_back(i);
      row_of.push_back(i);
    }
    if (row_of.empty()) break;
    model.decode_step(in, enc, cache, ws, pool, states);
    const int64_t m = static_cast<int64_t>(row_of.size());
    host_log_probs(model, mat(states), logits_dev, logits, pool);
    for (int64_t r = 0; r < m; ++r) {
      const int64_t i = row_of[r];
      const int32_t want = t < static_cast<int64_t>(targets[i].size()) ? targets[i][t] : cfg.eos_id;
      sum[i] += static_cast<double>(logits.data<float>()[r * V + want]);
    }
  }
  for (int64_t i = 0; i < n; ++i) sum[i] /= static_cast<double>(steps[i]);
  return sum;
}

std::vector<RefineResult> ar_batch(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                                   const ArOptions& opts, Workspace& ws, ThreadPool& pool) {
  opts.validate();  // before the reservation below, which a huge beam_size would make fail
  ArBatch batch(model);
  batch.reserve(static_cast<int64_t>(sources.size()) * (opts.beam_size > 1 ? 2 * opts.beam_size : 1));
  const std::vector<int64_t> ids = batch.add(sources, std::vector<ArOptions>(sources.size(), opts), ws, pool);
  return drain(batch, ids, ws, pool);
}

}  // namespace gmlm
