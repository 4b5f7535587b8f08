#include "ops/rows.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

void CopyRows::operator()(ConstMat x, const int32_t* src_idx, Mat y, const int32_t* dst_idx, int64_t n,
                          ThreadPool* pool) const {
  GMLM_CHECK(x.cols == y.cols && x.device == y.device && n >= 0 && (src_idx || n <= x.rows) && (dst_idx || n <= y.rows),
             "copy_rows: x (", x.rows, ", ", x.cols, ") y (", y.rows, ", ", y.cols, ") n ", n);
  for (int64_t i = 0; x.device == Device::cpu && i < n; ++i)   // device indices: checked by whoever wrote them
    GMLM_CHECK((!src_idx || (src_idx[i] >= 0 && src_idx[i] < x.rows)) &&
                   (!dst_idx || (dst_idx[i] >= 0 && dst_idx[i] < y.rows)),
               "copy_rows: row index out of range at ", i);
  Profiler::Scope scope(Phase::layers_other);
  GMLM_DISPATCH_DEVICE(x.device, compute, x, src_idx, y, dst_idx, n, pool);
}

void Scale::operator()(Mat y) const {
  Profiler::Scope scope(Phase::layers_other);
  GMLM_DISPATCH_DEVICE(y.device, compute, y);
}

}  // namespace gmlm::ops
