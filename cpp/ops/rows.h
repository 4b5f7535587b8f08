// Row movements between the model's GEMMs, on host or device rows alike (the model calls these, never a
// loop of its own, so that one model runs on every device):
//   CopyRows: y[dst(i)] = x[src(i)] (accumulate: +=) for i in [0, n), src(i) = src_idx ? src_idx[i] : i and
//             dst(i) likewise: a gather (src_idx), a scatter (dst_idx) or both; rows are `x.cols` floats.
//   Scale:    y *= s, elementwise.
// Index arrays live on the operands' device. Rows of y named twice by dst_idx: undefined (the model never does).
#pragma once

#include <cstdint>

#include "core/matrix.h"
#include "core/thread_pool.h"

namespace gmlm::ops {

struct CopyRows {
  bool accumulate = false;
  void operator()(ConstMat x, const int32_t* src_idx, Mat y, const int32_t* dst_idx, int64_t n,
                  ThreadPool* pool = nullptr) const;

  template <Device D>
  void compute(ConstMat x, const int32_t* src_idx, Mat y, const int32_t* dst_idx, int64_t n, ThreadPool* pool) const;
};

struct Scale {
  float s;
  explicit Scale(float s) : s(s) {}
  void operator()(Mat y) const;

  template <Device D>
  void compute(Mat y) const;
};

}  // namespace gmlm::ops
