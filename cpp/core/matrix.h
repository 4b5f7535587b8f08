// 2-D views with a row stride: what the ops take (a Q slice of a fused QKV output, rows of a
// workspace buffer). They never own memory.
#pragma once

#include <cstdint>

#include "core/tensor.h"

namespace gmlm {

struct ConstMat {
  const float* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  Device device = Device::cpu;

  const float* row(int64_t r) const { return data + r * ld; }
  ConstMat sub(int64_t r0, int64_t nr, int64_t c0, int64_t nc) const { return {data + r0 * ld + c0, nr, nc, ld, device}; }
};

struct Mat {
  float* data = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  Device device = Device::cpu;

  operator ConstMat() const { return {data, rows, cols, ld, device}; }
  float* row(int64_t r) const { return data + r * ld; }
  Mat sub(int64_t r0, int64_t nr, int64_t c0, int64_t nc) const { return {data + r0 * ld + c0, nr, nc, ld, device}; }
};

// A 2-D tensor (or its first `rows` rows) as a view.
inline Mat mat(Tensor& t) { return {t.data<float>(), t.dim(0), t.dim(1), t.dim(1), t.device()}; }
inline ConstMat mat(const Tensor& t) { return {t.data<float>(), t.dim(0), t.dim(1), t.dim(1), t.device()}; }
inline Mat mat(Tensor& t, int64_t rows) { return {t.data<float>(), rows, t.dim(1), t.dim(1), t.device()}; }

}  // namespace gmlm
