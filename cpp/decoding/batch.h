// What the two resumable batches share (RefineBatch: gmlm refinement, decoding/refine.h; ArBatch: AR
// search, decoding/ar.h): the interface the scheduler and translate loops drive (step, cancel, current,
// requests, live_rows), request ids, and the encoder side: the rows of the live requests' sources,
// packed, plus the newcomers'. Requests that left leave rows nobody uses until the next pass drops them.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "core/thread_pool.h"
#include "decoding/options.h"
#include "models/t5_model.h"

namespace gmlm {

// One candidate (gmlm: a length candidate; ar: a live beam hypothesis) after its request's latest pass
// or step, for watching a request decode (the server's stream).
struct CandidateState {
  std::vector<int32_t> tokens;  // gmlm: every position, re-masked ones hold their last prediction
  std::vector<float> conf;      // gmlm: log-probability of each token; ar: empty
  std::vector<uint8_t> masked;  // gmlm: 1 where the next pass predicts again; ar: empty
  double score = 0.0;           // gmlm: mean log-probability (docs step 4); ar: log-prob sum / (length + 1)
  int64_t passes = 0;
  bool done = false;    // runs no further passes
  bool pruned = false;  // gmlm: dropped by length-candidate pruning (not scored)
};

class ResumableBatch {
 public:
  virtual ~ResumableBatch() = default;
  // One decoder pass (gmlm) or step (ar) over every live request; returns those that finished in it.
  virtual std::vector<std::pair<int64_t, RefineResult>> step(Workspace& ws, ThreadPool& pool) = 0;
  // Drops a request (its client left): it runs no further and returns no result. False if unknown.
  virtual bool cancel(int64_t id) = 0;
  // The output a live request would have if it stopped now; false if unknown or before its first pass.
  virtual bool current(int64_t id, RefineResult* out) const = 0;
  // Every candidate of a live request, or of one that finished in the latest step(), as that step left
  // it; *best: the candidate current() reports. False if unknown or before its first pass.
  virtual bool snapshot(int64_t id, std::vector<CandidateState>* out, int64_t* best) const = 0;
  virtual int64_t requests() const = 0;
  virtual int64_t live_rows() const = 0;  // decoder rows of the next pass or step
  // Memory the batch holds between steps (encoder rows, key/value caches), and its release; call release() only
  // when no request is live (a server keeps one batch for its lifetime: one big request must not leave its room held).
  virtual std::size_t held_bytes() const { return enc_.states.capacity() + enc_.cross_kv.capacity(); }
  virtual void release() {
    enc_ = EncoderOutput();
    pred_dev_ = conf_dev_ = Tensor();
  }

 protected:
  explicit ResumableBatch(const T5Model& model) : model_(model) {}
  // The enc_ index of each live request's source, in live order (renumbered by the merges below).
  virtual std::vector<int64_t*> live_sources() = 0;
  // Encodes the newcomers into *fresh and packs enc_ = the live requests' rows, then the newcomers' in
  // order; returns the enc_ index of the first newcomer.
  int64_t join(const std::vector<std::vector<int32_t>>& sources, EncoderOutput* fresh, Workspace& ws, ThreadPool& pool);
  // Before a pass: drops the rows of requests that left (if any did).
  void compact();
  // The live request with this id, or live.end().
  template <typename Live>
  static auto find_request(Live& live, int64_t id) {
    return std::find_if(live.begin(), live.end(), [&](const auto& r) { return r.id == id; });
  }

  // Where the vocabulary op writes a step's n predictions and confidences: pred's and conf's own storage on the
  // CPU, device buffers on a device; fetch_predictions() then brings them into pred and conf (a no-op on the CPU).
  std::pair<int32_t*, float*> prediction_outputs(std::vector<int32_t>& pred, std::vector<float>& conf, int64_t n) const;
  void fetch_predictions(std::vector<int32_t>& pred, std::vector<float>& conf, int64_t n) const;

  const T5Model& model_;
  EncoderOutput enc_;
  mutable Tensor pred_dev_, conf_dev_;  // on a device: the vocabulary op's outputs before they come to the host
  bool left_ = false;   // some requests left: enc_ holds rows nobody uses
  int64_t next_id_ = 0;

 private:
  void merge(const EncoderOutput* fresh);
};

// Copies rows [begin, begin + len) of a (rows, cols) tensor to row `at` of another (on their device).
void copy_row_range(const Tensor& from, int64_t begin, int64_t len, Tensor& to, int64_t at);

// The offline path of both strategies (refine_batch, ar_batch): steps `batch` until no request is live; the
// results in the order of `ids` (the requests add() returned, consecutive).
std::vector<RefineResult> drain(ResumableBatch& batch, const std::vector<int64_t>& ids, Workspace& ws,
                                ThreadPool& pool);

}  // namespace gmlm
