// CPU GEMM: tiles of (row block x column block), one single-threaded OpenBLAS call each, spread
// over the pool; the epilogue (ReLU, gated GELU) is applied to the tile right after its call.
#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "cpu/lowp.h"
#include "core/scratch.h"
#include "ops/gemm.h"

namespace gmlm::ops {

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
  const uint64_t call = lw ? cpu::next_call_id() : 0;
  pool.parallel_for(n_rb * n_cb, [&](int64_t task, int) {
    const int64_t r0 = (task / n_cb) * kRowBlock, c0 = (task % n_cb) * cb;
    const int64_t rows = std::min(kRowBlock, M - r0), cols = std::min(cb, n_out - c0);
    const float* a_t = a.row(r0);
    if (!gated) {
      float* y_t = y.row(r0) + c0;
      if (lw)
        cpu::lowp_gemm_nt(*lw, wrow + c0, rows, cols, a_t, a.ld, beta, y_t, y.ld, call);
      else
        cpu::sgemm_nt(rows, cols, K, alpha, a_t, a.ld, b.row(c0), b.ld, beta, y_t, y.ld);
      if (epilogue == Epilogue::relu) k.relu(y_t, y.ld, rows, cols);
    } else {
      // fused rows [2*c0, 2*c0 + 2*cols): wi_0's block then wi_1's block
      float* tmp = thread_scratch(0, static_cast<size_t>(rows * 2 * cols));
      if (lw)
        cpu::lowp_gemm_nt(*lw, wrow + 2 * c0, rows, 2 * cols, a_t, a.ld, 0.f, tmp, 2 * cols, call);
      else
        cpu::sgemm_nt(rows, 2 * cols, K, alpha, a_t, a.ld, b.row(2 * c0), b.ld, 0.f, tmp, 2 * cols);
      k.gelu_mul(tmp, tmp + cols, 2 * cols, y.row(r0) + c0, y.ld, rows, cols);
    }
  });
}

}  // namespace gmlm::ops
