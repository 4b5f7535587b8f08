#include "ops/rms_norm.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

void RMSNorm::operator()(ConstMat x, const float* gamma, Mat y, ThreadPool* pool) const {
  GMLM_CHECK(x.rows == y.rows && x.cols == y.cols, "rms_norm: x (", x.rows, ", ", x.cols, ") y (", y.rows, ", ",
             y.cols, ")");
  Profiler::Scope scope(Phase::layers_other);
  GMLM_DISPATCH_DEVICE(x.device, compute, x, gamma, y, pool);
}

}  // namespace gmlm::ops
