// GEMM: y(M, N) = alpha * a(M, K) . b(N, K)^T + beta * y, then an optional epilogue on y.
// b is a weight in PyTorch's (out, in) layout. With Epilogue::gated_gelu, b holds [wi_0; wi_1]
// interleaved by column blocks (see gated_layout) and y(M, N/2) = gelu_tanh(a wi_0^T) * (a wi_1^T).
//
// Work is split into tiles of up to kRowBlock rows by column_block(N) columns, one single-threaded
// BLAS call per tile, spread over the pool; the epilogue runs on the tile while it is in cache.
// The tiling depends on the shapes only, never on the thread count, so results do not depend on
// intra_threads. (They do depend, in the last bits, on a row's place in the batch: OpenBLAS's
// kernels sum in a different order in different lanes of their 12-row panels and at edges; we
// measured it. Exact batch invariance would cost padding every sequence to 12 rows.)
#pragma once

#include <cstdint>
#include <vector>

#include "core/matrix.h"
#include "core/thread_pool.h"
#include "cpu/lowp.h"

namespace gmlm::ops {

enum class Epilogue { none, relu, gated_gelu };

struct Gemm {
  float alpha = 1.f;
  float beta = 0.f;
  Epilogue epilogue = Epilogue::none;

  static constexpr int64_t kRowBlock = 192;
  static constexpr int64_t kLowpRowBlock = 128;  // low precision (cpu/lowp.h): rows per oneDNN task
  // Width of the column blocks of an N-column product (a function of N only).
  static int64_t column_block(int64_t n);
  // Row order of the fused gated weight: for block j of the F outputs, wi_0's rows then wi_1's.
  // Returns, for each fused row, the source row (r < F: wi_0[r], r >= F: wi_1[r - F]).
  static std::vector<int64_t> gated_layout(int64_t f);

  void operator()(ConstMat a, ConstMat b, Mat y, ThreadPool& pool) const;

  template <Device D>
  void compute(ConstMat a, ConstMat b, Mat y, ThreadPool& pool) const;

 private:
  void compute_lowp(const cpu::LowpWeights::Weight& w, int64_t wrow, ConstMat a, Mat y, ThreadPool& pool) const;
};

}  // namespace gmlm::ops
