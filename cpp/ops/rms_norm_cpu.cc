#include "cpu/kernels.h"
#include "ops/rms_norm.h"

namespace gmlm::ops {

template <>
void RMSNorm::compute<Device::cpu>(ConstMat x, const float* gamma, Mat y, ThreadPool* pool) const {
  const cpu::Kernels& k = cpu::kernels();
  constexpr int64_t kRows = 256;  // below this, waking the pool costs more than it saves
  if (!pool || x.rows <= kRows) {
    k.rms_norm(x.data, x.ld, gamma, y.data, y.ld, x.rows, x.cols, eps);
    return;
  }
  const int64_t n = (x.rows + kRows - 1) / kRows;
  pool->parallel_for(n, [&](int64_t t, int) {
    const int64_t r0 = t * kRows, rows = std::min(kRows, x.rows - r0);
    k.rms_norm(x.row(r0), x.ld, gamma, y.row(r0), y.ld, rows, x.cols, eps);
  });
}

}  // namespace gmlm::ops
