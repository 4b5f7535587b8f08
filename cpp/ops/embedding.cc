#include "ops/embedding.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

void Embedding::operator()(ConstMat table, const int32_t* ids, int64_t n, Mat y) const {
  GMLM_CHECK(y.rows >= n && y.cols == table.cols, "embedding: y (", y.rows, ", ", y.cols, ") for ", n, " ids of dim ",
             table.cols);
  // ids live on the operands' device; device ids are checked by whoever wrote them (the CUDA loop
  // only writes ids the model produced or the binding checked)
  for (int64_t r = 0; table.device == Device::cpu && r < n; ++r)
    GMLM_CHECK_ARG(ids[r] >= 0 && ids[r] < table.rows, "token id ", ids[r], " is outside the vocabulary [0, ",
                   table.rows, ")");
  Profiler::Scope scope(Phase::layers_other);
  GMLM_DISPATCH_DEVICE(table.device, compute, table, ids, n, y);
}

}  // namespace gmlm::ops
