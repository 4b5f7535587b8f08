// CPU GEMM: tiles of (row block x column block), one single-threaded OpenBLAS call each, spread
// over the pool; the epilogue (ReLU, gated GELU) is applied to the tile right after its call.
#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "cpu/lowp.h"
#include "core/scratch.h"
#include "ops/gemm.h"

namespace gmlm::ops {

// Low precision: a oneDNN matmul per task is worth far more than an OpenBLAS call of the same size,
// and costs a few microseconds to launch, so the tasks are wide: row blocks of up to kLowpRowBlock
// rows (at least 2 blocks of a multiple of 8 rows from 24 rows on) over all the columns, the
// columns halved only when there is a single row block (splitting the columns makes both tasks
// quantise the same rows: 1.4-1.8x slower at 32-64 rows, the ops benchmark). The
// tiling depends on M and N only (not on the thread count); int8 sums are exact and bfloat16's
// fp32 sums do not depend on the row count (tests/test_lowp.py), so results are batch invariant.
void Gemm::compute_lowp(const cpu::LowpWeights::Weight& w, int64_t wrow, ConstMat a, Mat y, ThreadPool& pool) const {
  const int64_t M = a.rows;
  const bool gated = epilogue == Epilogue::gated_gelu;
  const int64_t n_out = y.cols;
  // column chunks: whole gated blocks (gated_layout) for gated GELU, multiples of 64 otherwise
  const int64_t unit = gated ? column_block(n_out) : 64;
  const int64_t units = (n_out + unit - 1) / unit;
  int64_t rb, n_cc;
  if (cpu::lowp_on_avx2_kernel(w, M)) {
    // no per-call cost: row blocks of 64 and chunks of about 128 columns, so that a few rows (a
    // refinement pass at batch 1: 10-40) still give both threads even work (the GMLM at batch 1 on Zen 5
    // capped to AVX2, 2 threads: GEMM time -11 %)
    rb = 64;
    n_cc = std::max<int64_t>(1, std::min(units, (n_out + 127) / 128));
  } else {
    rb = std::min(std::max(((M + 1) / 2 + 7) / 8 * 8, int64_t{16}), kLowpRowBlock);
    n_cc = (M + rb - 1) / rb < 2 && units >= 2 && n_out >= 512 ? 2 : 1;
  }
  const int64_t n_rb = (M + rb - 1) / rb;
  const int64_t cw = (units + n_cc - 1) / n_cc * unit;
  const cpu::Kernels& k = cpu::kernels();
  const uint64_t call = cpu::next_call_id();
  pool.parallel_for(n_rb * n_cc, [&](int64_t task, int) {
    const int64_t r0 = (task / n_cc) * rb, c0 = (task % n_cc) * cw;
    const int64_t rows = std::min(rb, M - r0), cols = std::min(cw, n_out - c0);
    const float* a_t = a.row(r0);
    if (!gated) {
      float* y_t = y.row(r0) + c0;
      cpu::lowp_gemm_nt(w, wrow + c0, rows, cols, a_t, a.ld, beta, y_t, y.ld, call);
      if (epilogue == Epilogue::relu) k.relu(y_t, y.ld, rows, cols);
      return;
    }
    // fused rows [2*c0, 2*c0 + 2*cols): per gated block of width `unit`, wi_0's block then wi_1's
    float* tmp = thread_scratch(0, static_cast<size_t>(rows * 2 * cols));
    cpu::lowp_gemm_nt(w, wrow + 2 * c0, rows, 2 * cols, a_t, a.ld, 0.f, tmp, 2 * cols, call);
    for (int64_t b0 = 0; b0 < cols; b0 += unit) {
      const int64_t bw = std::min(unit, cols - b0);
      k.gelu_mul(tmp + 2 * b0, tmp + 2 * b0 + bw, 2 * cols, y.row(r0) + c0 + b0, y.ld, rows, bw);
    }
  });
}

template <>
void Gemm::compute<Device::cpu>(ConstMat a, ConstMat b, Mat y, ThreadPool& pool) const {
  const int64_t M = a.rows, K = a.cols;
  if (M == 0 || y.cols == 0) return;
  const bool gated = epilogue == Epilogue::gated_gelu;
  const int64_t n_out = y.cols;
  const int64_t cb = column_block(n_out);
  const int64_t n_cb = (n_out + cb - 1) / cb;
  const int64_t n_rb = (M + kRowBlock - 1) / kRowBlock;
  const cpu::Kernels& k = cpu::kernels();
  // a registered weight computes in its low-precision type (cpu/lowp.h); alpha 1 only
  int64_t wrow = 0;
  const cpu::LowpWeights* set = cpu::LowpWeights::current();
  const cpu::LowpWeights::Weight* lw = set && alpha == 1.f ? set->find(b.data, b.ld, &wrow) : nullptr;
  if (lw) {
    compute_lowp(*lw, wrow, a, y, pool);
    return;
  }
  pool.parallel_for(n_rb * n_cb, [&](int64_t task, int) {
    const int64_t r0 = (task / n_cb) * kRowBlock, c0 = (task % n_cb) * cb;
    const int64_t rows = std::min(kRowBlock, M - r0), cols = std::min(cb, n_out - c0);
    const float* a_t = a.row(r0);
    if (!gated) {
      float* y_t = y.row(r0) + c0;
      cpu::sgemm_nt(rows, cols, K, alpha, a_t, a.ld, b.row(c0), b.ld, beta, y_t, y.ld);
      if (epilogue == Epilogue::relu) k.relu(y_t, y.ld, rows, cols);
    } else {
      // fused rows [2*c0, 2*c0 + 2*cols): wi_0's block then wi_1's block
      float* tmp = thread_scratch(0, static_cast<size_t>(rows * 2 * cols));
      cpu::sgemm_nt(rows, 2 * cols, K, alpha, a_t, a.ld, b.row(2 * c0), b.ld, 0.f, tmp, 2 * cols);
      k.gelu_mul(tmp, tmp + cols, 2 * cols, y.row(r0) + c0, y.ld, rows, cols);
    }
  });
}

}  // namespace gmlm::ops
