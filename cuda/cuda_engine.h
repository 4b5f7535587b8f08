// The CUDA engine: the T5 model's weights on one GPU and the whole refinement loop on the device
// (docs/cuda.md). Plain C++ interface (no CUDA headers) for the binding; the same options and
// results as the CPU engine's refine_batch (decoding/refine.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "decoding/refine.h"
#include "models/t5_model.h"

namespace gmlm::cuda {

struct EngineStats {
  int64_t batches = 0;           // translate() calls
  int64_t iterations = 0;        // decoder passes launched (graph replays or direct runs)
  int64_t graphs_captured = 0;   // CUDA graphs captured (one per shape bucket and buffer generation)
  int64_t graph_launches = 0;
  int64_t compactions = 0;       // times finished candidates left the batch
  double seconds = 0.0;          // wall time inside translate()
};

class CudaEngine {
 public:
  // compute_type: "float32", "float16" or "bfloat16" (weights converted on load; the residual
  // stream and all reductions stay float32). device: the CUDA device index. Throws
  // std::invalid_argument for bad weights/options and std::runtime_error when CUDA fails. word_pieces: per
  // vocabulary id, whether it is a word piece (repeat_penalty's test; empty: repeat_penalty is refused).
  CudaEngine(const T5Config& config, const WeightMap& weights, const std::string& compute_type, int device,
             std::vector<uint8_t> word_pieces = {});
  ~CudaEngine();
  CudaEngine(const CudaEngine&) = delete;
  CudaEngine& operator=(const CudaEngine&) = delete;

  // Decode one batch of encoder inputs ([<len>] + pieces + [</s>]); not thread-safe (the binding
  // serialises calls).
  std::vector<RefineResult> translate(const std::vector<std::vector<int32_t>>& sources, const RefineOptions& opts);

  const T5Config& config() const;
  std::string compute_type() const;
  std::string device_description() const;
  EngineStats stats() const;
  // CUDA graphs on (default) or off (every iteration launched kernel by kernel; for debugging and
  // for measuring what the graphs save). Env GMLM_CUDA_GRAPHS=0 turns them off at construction.
  void set_use_graphs(bool on);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gmlm::cuda
