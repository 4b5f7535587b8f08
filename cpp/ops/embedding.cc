#include "ops/embedding.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

void Embedding::operator()(ConstMat table, const int32_t* ids, int64_t n, Mat y) const {
  GMLM_CHECK(y.rows >= n && y.cols == table.cols, "embedding: y (", y.rows, ", ", y.cols, ") for ", n, " ids of dim ",
             table.cols);
  for (int64_t r = 0; r < n; ++r)
    GMLM_CHECK_ARG(ids[r] >= 0 && ids[r] < table.rows, "token id ", ids[r], " is outside the vocabulary [0, ",
                   table.rows, ")");
  Profiler::Scope scope(Phase::layers_other);
  GMLM_DISPATCH_DEVICE(table.device, compute<Device::cpu>(table, ids, n, y));
}

}  // namespace gmlm::ops
