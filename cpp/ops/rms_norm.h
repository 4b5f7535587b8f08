// RMSNorm (T5 layer norm): y = gamma * x / sqrt(mean(x^2) + eps), row by row. x: (R, D) -> y: (R, D).
#pragma once

#include "core/matrix.h"
#include "core/thread_pool.h"

namespace gmlm::ops {

struct RMSNorm {
  float eps;
  explicit RMSNorm(float eps) : eps(eps) {}
  // pool may be null (small inputs run on the calling thread anyway)
  void operator()(ConstMat x, const float* gamma, Mat y, ThreadPool* pool = nullptr) const;

  template <Device D>
  void compute(ConstMat x, const float* gamma, Mat y, ThreadPool* pool) const;
};

}  // namespace gmlm::ops
