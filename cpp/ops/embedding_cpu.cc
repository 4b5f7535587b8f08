#include <cstring>

#include "ops/embedding.h"

namespace gmlm::ops {

template <>
void Embedding::compute<Device::cpu>(ConstMat table, const int32_t* ids, int64_t n, Mat y) const {
  for (int64_t r = 0; r < n; ++r) std::memcpy(y.row(r), table.row(ids[r]), sizeof(float) * table.cols);
}

}  // namespace gmlm::ops
