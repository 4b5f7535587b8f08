// Half-precision copies of an engine's GEMM weights on the GPU (compute types float16 and bfloat16): the
// CUDA twin of cpu::LowpWeights. The model keeps its float32 weights; an engine that computes in half
// precision registers each weight the GEMMs read (T5Model::gemm_weights) and installs the set on the
// thread that runs the ops, and ops::Gemm and ops::VocabArgmax on cuda then multiply with the copy that
// holds their right-hand operand, after converting their float32 left operand to the same type (cuBLAS,
// float32 accumulation and output). Everything else (norms, attention, the residual stream) stays float32.
// Plain C++ (no CUDA headers), so that the binding can hold a set.
#pragma once

#include <cstdint>
#include <map>
#include <memory>

#include "core/compute_type.h"

namespace gmlm::cuda {

class DeviceBuffer;

class HalfWeights {
 public:
  explicit HalfWeights(ComputeType type);  // float16 or bfloat16 (else ValueError)
  ~HalfWeights();
  HalfWeights(const HalfWeights&) = delete;
  HalfWeights& operator=(const HalfWeights&) = delete;
  ComputeType type() const { return type_; }
  // Converts w (N, K), row-major and contiguous in device memory, into a copy found by w's address.
  void add(const float* w, int64_t N, int64_t K);

  // The set the ops of this thread use (nullptr: none, float32).
  static void install(const HalfWeights* set);
  static const HalfWeights* current();

  // The copy of the registered weight that holds b (a view of whole rows with b's row stride), pointing at
  // b's first row, or nullptr.
  const void* find(const float* b, int64_t ldb) const;

 private:
  struct Weight {
    int64_t rows, cols;
    std::unique_ptr<DeviceBuffer> copy;
  };
  ComputeType type_;
  std::map<const float*, Weight> weights_;  // by the float32 address
};

}  // namespace gmlm::cuda
