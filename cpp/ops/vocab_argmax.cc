#include "ops/vocab_argmax.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

void VocabArgmax::operator()(ConstMat h, ConstMat w, int32_t* pred, float* conf, ThreadPool& pool) const {
  GMLM_CHECK(h.cols == w.cols && w.rows >= 1, "vocab: h (", h.rows, ", ", h.cols, ") W (", w.rows, ", ", w.cols, ")");
  Profiler::Scope scope(Phase::vocab);
  GMLM_DISPATCH_DEVICE(h.device, compute, h, w, pred, conf, pool);
  if (Profiler* p = scope.profiler()) {
    p->vocab_flops += 2.0 * h.rows * w.rows * h.cols;
    GemmStat& s = p->vocab_shapes[{h.rows, w.rows, h.cols}];
    s.calls += 1;
    s.seconds += scope.elapsed();
  }
}

void VocabArgmax::sample(ConstMat h, ConstMat w, const Noise& noise, int32_t* pred, float* conf,
                         ThreadPool& pool) const {
  GMLM_CHECK(h.cols == w.cols && w.rows >= 1, "vocab: h (", h.rows, ", ", h.cols, ") W (", w.rows, ", ", w.cols, ")");
  Profiler::Scope scope(Phase::vocab);
  GMLM_CHECK(h.device == w.device, "vocab: h and W on different devices");
  GMLM_DISPATCH_DEVICE(h.device, compute_sample, h, w, noise, pred, conf, pool);
  if (Profiler* p = scope.profiler()) p->vocab_flops += 2.0 * h.rows * w.rows * h.cols;
}

}  // namespace gmlm::ops
