// Low-precision GEMMs on the CPU through oneDNN's matmul primitive (built with GMLM_WITH_ONEDNN):
//   bfloat16: weights converted once at load, activations converted per call, fp32 accumulation;
//   int8:     weights quantised per output channel at load (symmetric, scale = max|w| / 127),
//             activations quantised per row on the fly (scale = max|a| / 127), s8 x s8 -> s32
//             (exact integer sums: the result does not depend on the batch), then
//             y = s32 * a_scale[row] * w_scale[col] in fp32.
// Everything else (norms, softmax, the scores, the re-masking rules) stays fp32.
//
// A model's GEMM weights are registered in a LowpWeights set once at load (converted or quantised);
// the engine installs the set on the calling thread for the duration of a call (like the
// profiler); the GEMM ops look the right-hand side up (find) before they start their tasks and
// compute every product whose weight is registered in that weight's compute type (lowp_gemm_nt),
// the rest with OpenBLAS's sgemm. The first use of a weight (or of a range of its rows) reorders it
// into the layout oneDNN's matmul picks for it (blocked for AMX / VNNI), once. oneDNN runs
// single-threaded inside the engine's own pool tasks; the ops give it wide tasks (ops/gemm.h
// kLowpRowBlock, ops/vocab_argmax.h kLowpChunk) because a call costs microseconds to launch.
// Tiling depends on the shapes only; int8 sums are exact and bfloat16's fp32 sums do not depend on
// a row's neighbours, so every compute type is batch invariant (tests/test_lowp.py).
#pragma once

#include "core/compute_type.h"

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace gmlm::cpu {

using gmlm::ComputeType;             // core/compute_type.h: the one enum (the CPU runs float32, bfloat16, int8)
using gmlm::compute_type_from_name;
using gmlm::compute_type_name;
bool onednn_built();
// The compute types this CPU runs natively: int8 (AVX512-VNNI or AMX-INT8), bfloat16
// (AVX512-BF16 or AMX-BF16) as oneDNN sees them (ONEDNN_MAX_CPU_ISA limits it).
bool native_support(ComputeType t);
std::string onednn_info();  // "oneDNN 3.2.0 (ISA: ...)" or "not built"

class LowpWeights {
 public:
  explicit LowpWeights(ComputeType type);
  ~LowpWeights();
  LowpWeights(const LowpWeights&) = delete;
  LowpWeights& operator=(const LowpWeights&) = delete;
  ComputeType type() const { return type_; }
  // Prepares w (N, K) row-major (copied and converted: w may change or go away afterwards, but
  // gemm_nt finds the weight by the address w had).
  void add(const float* w, int64_t N, int64_t K);

  // The set the ops of this thread use (nullptr: none, float32).
  static void install(const LowpWeights* set);
  static const LowpWeights* current();

  struct Weight;
  // The registered weight that holds b (a view of its rows starting at *row), or nullptr.
  const Weight* find(const float* b, int64_t ldb, int64_t* row) const;

 private:
  ComputeType type_;
  std::map<const float*, std::unique_ptr<Weight>> weights_;  // by the fp32 address
};

// A fresh id for one GEMM op call: tiles of the same call on the same thread that share their rows
// of A convert (bfloat16) or quantise (int8) them once.
uint64_t next_call_id();

// True where a product of M rows with w runs on the engine's AVX2 int8 kernel (cpu/gemm_s8_avx2.h),
// which has no per-call cost: the ops may then cut it into narrow column tiles (for balance between
// threads at a few rows) instead of the wide tasks oneDNN needs.
bool lowp_on_avx2_kernel(const LowpWeights::Weight& w, int64_t M);

// Computes with w (rows [row, row + N)) in its compute type; call: next_call_id() of the op call.
void lowp_gemm_nt(const LowpWeights::Weight& w, int64_t row, int64_t M, int64_t N, const float* A, int64_t lda,
                  float beta, float* C, int64_t ldc, uint64_t call);

// oneDNN's own matmul on the same shape, for the ops benchmark (bench/bench_lowp.py): inputs already
// in the compute type (int8: s8 x s8 with a common source scale and per-output-channel weight
// scales, f32 out; bfloat16: bf16 x bf16, f32 out), weights in the layout oneDNN picks for itself,
// OpenMP with `threads` threads. What the engine's path does on top (converting or quantising the
// fp32 activations per call, its own tiling, dequantising per row) is what the benchmark measures.
class OnednnMatmul {
 public:
  OnednnMatmul(ComputeType type, int64_t M, int64_t N, int64_t K, int threads, bool plain_weights = false);
  ~OnednnMatmul();
  void run(int reps);  // executes the primitive reps times

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace gmlm::cpu
