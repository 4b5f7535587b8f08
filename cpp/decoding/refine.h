// GMLM refinement decoding (docs/decoding.md, "GMLM refinement") on the CPU, as a resumable batch:
// RefineBatch owns the live length candidates of many requests, each at its own pass with its own
// options. add() encodes newcomers (their encoder rows and cross-attention K/V join the batch's);
// step() is one decoder pass over every live candidate, predictions for masked positions only,
// then re-masking, pruning, early stop and, for requests that are done, scoring. A pass boundary is
// where requests join and leave: that is continuous batching. refine_batch() is a loop over it.
//
// Every request's result is the same, token for token, whatever else is in the batch and whenever
// it joined: rows never see each other (attention is per segment) and the RNG is keyed by the
// request's own source, candidate, pass and position.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "decoding/batch.h"
#include "decoding/options.h"
#include "models/t5_model.h"

namespace gmlm {

class RefineBatch : public ResumableBatch {
 public:
  explicit RefineBatch(const T5Model& model) : ResumableBatch(model) {}

  // Checks the options (ValueError naming the bad one), encodes the sources (non-empty encoder
  // inputs: [<len>] + pieces + [</s>]) and adds one request each. Returns the requests' ids.
  std::vector<int64_t> add(const std::vector<std::vector<int32_t>>& sources, const std::vector<RefineOptions>& opts,
                           Workspace& ws, ThreadPool& pool);
  // One decoder pass over every live candidate (ResumableBatch; current: the best candidate so far).
  std::vector<std::pair<int64_t, RefineResult>> step(Workspace& ws, ThreadPool& pool) override;
  bool cancel(int64_t id) override;
  bool current(int64_t id, RefineResult* out) const override;
  bool snapshot(int64_t id, std::vector<CandidateState>* out, int64_t* best) const override;
  int64_t requests() const override { return static_cast<int64_t>(live_.size()); }
  int64_t live_rows() const override;  // decoder rows (target positions) of the next pass
  std::size_t held_bytes() const override { return ResumableBatch::held_bytes() + kv_.capacity(); }
  void release() override {
    ResumableBatch::release();
    kv_ = Tensor();
  }

 private:
  struct Candidate {
    int64_t k = 0, len = 0;
    std::vector<int32_t> tokens, prev;
    std::vector<float> conf;
    std::vector<uint8_t> masked;
    bool done = false;
    bool pruned = false;  // dropped by length-candidate pruning: no more passes, not scored
    int64_t passes = 0;
    std::vector<std::vector<int32_t>> history;
    std::vector<int32_t> sel_of;  // this pass: the selected row of each masked position, else -1
    int64_t kv = -1;              // its position 0's row in kv_ (-1: none yet)
    std::vector<int32_t> cached_in;  // the input id each position had when its keys/values were computed
  };
  struct Request {
    int64_t id = 0;
    RefineOptions o;
    int64_t t = 0;              // the pass it runs next
    int64_t source = 0;         // its rows in enc_
    uint64_t src_hash = 0;
    std::vector<Candidate> cands;
    std::vector<int32_t> length_candidates;
  };

  // The best candidate's index; its output, score, passes and the length candidates into *out.
  int64_t best_candidate(const Request& r, RefineResult* out) const;
  void snapshot(const Request& r, std::vector<CandidateState>* out, int64_t* best) const;
  // The three phases of step(). 3a: the decoder input of every live candidate, packed (argmax requests first,
  // then sampling ones, so that each group's selected rows are contiguous); *n_argmax: the argmax group's
  // selected rows; for sampling rows, their candidate and position. 3b: the vocabulary step on the selected rows.
  // blank_lp: with a blank penalty, each selected row's blank log-probability (else empty). 3c-3e: one
  // request's predictions written (a ctc model's repeats without the penalty), pruning after its first pass,
  // stop and re-mask; true if it ended.
  struct Sampled {
    std::vector<std::pair<Request*, Candidate*>> owner;
    std::vector<int32_t> pos;
  };
  DecoderInput pack_input(int64_t* n_argmax, Sampled* sampled);
  void predict(const Tensor& states, int64_t n_argmax, const Sampled& sampled, std::vector<int32_t>* pred,
               std::vector<float>* conf, std::vector<float>* blank_lp, ThreadPool& pool) const;
  bool update(Request& r, const std::vector<int32_t>& pred, const std::vector<float>& conf,
              const std::vector<float>& blank_lp);
  std::vector<int64_t*> live_sources() override;
  // kv_ := rows for every live candidate that runs passes (renumbered; the rows of a candidate with
  // cached refinement keep their contents, an exact pass rewrites its own), or nothing when no live
  // request uses cached refinement: then the decoder keeps no keys/values between passes.
  void pack_kv();

  std::vector<Request> live_;  // in arrival order
  Tensor kv_;                  // the decoder's self-attention keys/values (T5Model::decode), a block per candidate
  bool cached_ = false;        // some live request uses cached refinement: kv_ holds every candidate's rows
  std::vector<float> blank_bias_;  // this pass: each selected row's blank_penalty (ctc models; pack_input)
  // The requests that finished in the latest step, as it left them (snapshot); replaced by each step.
  std::vector<std::pair<int64_t, std::pair<std::vector<CandidateState>, int64_t>>> finished_;
};

// Decode one batch of non-empty encoder inputs with the same options (a loop over RefineBatch).
std::vector<RefineResult> refine_batch(const T5Model& model, const std::vector<std::vector<int32_t>>& sources,
                                       const RefineOptions& opts, Workspace& ws, ThreadPool& pool);

}  // namespace gmlm
