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

class ResumableBatch {
 public:
  virtual ~ResumableBatch() = default;
  // One decoder pass (gmlm) or step (ar) over every live request; returns those that finished in it.
  virtual std::vector<std::pair<int64_t, RefineResult>> step(Workspace& ws, ThreadPool& pool) = 0;
  // Drops a request (its client left): it runs no further and returns no result. False if unknown.
  virtual bool cancel(int64_t id) = 0;
  // The output a live request would have if it stopped now; false if unknown or before its first pass.
  virtual bool current(int64_t id, RefineResult* out) const = 0;
  virtual int64_t requests() const = 0;
  virtual int64_t live_rows() const = 0;  // decoder rows of the next pass or step

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

  const T5Model& model_;
  EncoderOutput enc_;
  bool left_ = false;   // some requests left: enc_ holds rows nobody uses
  int64_t next_id_ = 0;

 private:
  void merge(const EncoderOutput* fresh);
};

}  // namespace gmlm
