// Embedding gather: y[r] = table[ids[r]]. table: (V, D), ids: (R) -> y: (R, D). An id outside
// [0, V) is a ValueError naming it.
#pragma once

#include <cstdint>

#include "core/matrix.h"

namespace gmlm::ops {

struct Embedding {
  void operator()(ConstMat table, const int32_t* ids, int64_t n, Mat y) const;

  template <Device D>
  void compute(ConstMat table, const int32_t* ids, int64_t n, Mat y) const;
};

}  // namespace gmlm::ops
