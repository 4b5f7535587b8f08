#include "ops/gemm.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

int64_t Gemm::column_block(int64_t n) {
  // about n/8 (8-way parallelism), a multiple of 16, at least 64 (narrower BLAS calls lose speed)
  int64_t w = ((n + 7) / 8 + 15) / 16 * 16;
  return w < 64 ? 64 : w;
}

std::vector<int64_t> Gemm::gated_layout(int64_t f) {
  std::vector<int64_t> src;
  src.reserve(2 * f);
  const int64_t w = column_block(f);
  for (int64_t c0 = 0; c0 < f; c0 += w) {
    const int64_t cw = c0 + w <= f ? w : f - c0;
    for (int64_t r = 0; r < cw; ++r) src.push_back(c0 + r);
    for (int64_t r = 0; r < cw; ++r) src.push_back(f + c0 + r);
  }
  return src;
}

void Gemm::operator()(ConstMat a, ConstMat b, Mat y, ThreadPool& pool) const {
  const bool gated = epilogue == Epilogue::gated_gelu;
  GMLM_CHECK(a.cols == b.cols, "gemm: a is (", a.rows, ", ", a.cols, ") but b is (", b.rows, ", ", b.cols, ")");
  GMLM_CHECK(y.rows == a.rows && y.cols == (gated ? b.rows / 2 : b.rows) && (!gated || b.rows % 2 == 0),
             "gemm: y is (", y.rows, ", ", y.cols, ") for a (", a.rows, ", ", a.cols, ") and b (", b.rows, ", ",
             b.cols, ")", gated ? " gated" : "");
  GMLM_CHECK(a.ld >= a.cols && b.ld >= b.cols && y.ld >= y.cols, "gemm: bad leading dimensions");
  GMLM_CHECK(!gated || beta == 0.f, "gemm: the gated epilogue needs beta = 0");
  GMLM_CHECK(a.device == b.device && a.device == y.device, "gemm: operands on different devices");
  Profiler::Scope scope(Phase::gemm);
  GMLM_DISPATCH_DEVICE(a.device, compute, a, b, y, pool);
  if (Profiler* p = scope.profiler()) {
    const double flops = 2.0 * a.rows * b.rows * a.cols;
    p->gemm_flops += flops;
    GemmStat& s = p->gemm_shapes[{a.rows, b.rows, a.cols}];
    s.calls += 1;
    s.seconds += scope.elapsed();
  }
}

}  // namespace gmlm::ops
