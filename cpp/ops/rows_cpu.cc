#include <cstring>

#include "ops/rows.h"

namespace gmlm::ops {

template <>
void CopyRows::compute<Device::cpu>(ConstMat x, const int32_t* src_idx, Mat y, const int32_t* dst_idx, int64_t n,
                                    ThreadPool* pool) const {
  const int64_t cols = x.cols;
  auto run = [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const float* xr = x.row(src_idx ? src_idx[i] : i);
      float* yr = y.row(dst_idx ? dst_idx[i] : i);
      if (accumulate) {
        for (int64_t c = 0; c < cols; ++c) yr[c] += xr[c];
      } else {
        std::memcpy(yr, xr, sizeof(float) * cols);
      }
    }
  };
  constexpr int64_t kBlock = 128;  // rows per task: a copy of many rows is memory-bound, worth every core
  if (!pool || n < 2 * kBlock) {
    run(0, n);
    return;
  }
  pool->parallel_for((n + kBlock - 1) / kBlock, [&](int64_t t, int) { run(t * kBlock, std::min(n, (t + 1) * kBlock)); });
}

template <>
void Scale::compute<Device::cpu>(Mat y) const {
  for (int64_t r = 0; r < y.rows; ++r) {
    float* yr = y.row(r);
    for (int64_t c = 0; c < y.cols; ++c) yr[c] *= s;
  }
}

}  // namespace gmlm::ops
