// AR decoding (docs/decoding.md, "AR decoding") of ar models on the CPU, as a resumable batch like
// RefineBatch: ArBatch owns the live hypotheses of many requests, each at its own step with its own
// options. add() encodes newcomers (their encoder rows and cross-attention K/V join the batch's);
// step() is one causal decoder step over every live hypothesis (self-attention keys and values from
// each hypothesis' cache slot), then greedy or beam selection per request; requests whose search
// ended leave with their result. ar_batch() is a loop over it. The reference decoder
// (reference.py, `_ar`) is the spec: the same tokens in float32.
//
// Beam search keeps, per request, at most beam_size live hypotheses: its step takes the 2 x beam
// best (log-prob sum, then lower (hypothesis, token) index) continuations of the live ones, moves
// those ending in eos (or at max_target_len) to the finished list while it holds fewer than
// beam_size, and continues the first beam_size others; the request ends when beam_size have
// finished or nothing continues. The best finished by sum / (length + 1)^length_penalty wins.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "decoding/batch.h"
#include "decoding/options.h"
#include "models/t5_model.h"

namespace gmlm {

struct ArOptions {
  int64_t beam_size = 1;        // 1: greedy
  double length_penalty = 1.0;  // beam search: finished score = log-prob sum / (length + 1)^length_penalty

  // The one check of the AR options (ValueError naming the option); ArBatch::add and the bindings call it.
  void validate() const;
};

class ArBatch : public ResumableBatch {
 public:
  explicit ArBatch(const T5Model& model);

  // Checks the options (ValueError naming the bad one), encodes the sources (non-empty encoder
  // inputs: pieces + [</s>]) and adds one request each. Returns the requests' ids.
  std::vector<int64_t> add(const std::vector<std::vector<int32_t>>& sources, const std::vector<ArOptions>& opts,
                           Workspace& ws, ThreadPool& pool);
  // One decoder step over every live hypothesis (ResumableBatch). Results: ids, score, passes =
  // steps run = len(ids) + 1, no history or length candidates; current: the best live hypothesis.
  std::vector<std::pair<int64_t, RefineResult>> step(Workspace& ws, ThreadPool& pool) override;
  bool cancel(int64_t id) override;
  bool current(int64_t id, RefineResult* out) const override;
  // The live hypotheses, best first (no confidences or masks); a finished request: its result.
  bool snapshot(int64_t id, std::vector<CandidateState>* out, int64_t* best) const override;
  int64_t requests() const override { return static_cast<int64_t>(live_.size()); }
  int64_t live_rows() const override;  // hypotheses of the next step
  std::size_t held_bytes() const override { return ResumableBatch::held_bytes() + cache_.bytes(); }
  void release() override {
    ResumableBatch::release();
    cache_.release();
    free_slots_.clear();
  }
  // Room for this many hypotheses' caches at once, allocated now (beam search holds up to 2 x beam_size
  // per request while children take over their parents' slots).
  void reserve(int64_t hypotheses);

 private:
  struct Hyp {
    std::vector<int32_t> tokens;  // emitted so far (the next input is the last, or the start token)
    double score = 0.0;           // log-prob sum
    int32_t slot = 0;             // self-attention cache slot
  };
  struct Finished {
    double norm, sum;
    std::vector<int32_t> tokens;
  };
  struct Request {
    int64_t id = 0;
    ArOptions o;
    int64_t step = 0;     // the position it decodes next
    int64_t source = 0;   // its rows in enc_
    std::vector<Hyp> hyps;
    std::vector<Finished> finished;
  };

  // A continuation of a beam: its log-prob sum and its (hypothesis, token) index.
  struct Cand {
    double s;
    int64_t flat;
    bool operator<(const Cand& o) const { return s > o.s || (s == o.s && flat < o.flat); }  // better first
  };
  bool advance_beam(Request& r, const std::vector<Cand>& top);
  int32_t take_slot();
  RefineResult result(Request& r) const;
  std::vector<int64_t*> live_sources() override;

  SelfCache cache_;
  std::vector<int32_t> free_slots_;
  std::vector<Request> live_;
  std::vector<std::pair<int64_t, CandidateState>> finished_;  // the requests that ended in the latest step
  Tensor states_, logits_, logits_dev_;   // logits_: host log-probabilities of the beam rows (logits_dev_: on a device)
};

// Teacher-forced scores of targets[i] given sources[i] (encoder inputs): the mean of the float32
// log-probabilities of its tokens and of eos (sum in float64, / (len + 1)); a target of max_target_len
// tokens or more is scored on its first max_target_len tokens, without eos (/ max_target_len).
std::vector<double> ar_score(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                             const std::vector<std::vector<int32_t>>& targets, Workspace& ws, ThreadPool& pool);

// Decode one batch of non-empty encoder inputs with the same options (a loop over ArBatch).
std::vector<RefineResult> ar_batch(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                                   const ArOptions& opts, Workspace& ws, ThreadPool& pool);

}  // namespace gmlm
