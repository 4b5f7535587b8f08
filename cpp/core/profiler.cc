#include "core/profiler.h"

namespace gmlm {

namespace {
thread_local Profiler* t_profiler = nullptr;
thread_local Profiler::Scope* t_scope = nullptr;  // innermost active scope
}

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::gemm: return "gemm";
    case Phase::attention: return "attention";
    case Phase::vocab: return "vocab";
    case Phase::remask: return "remask";
    case Phase::layers_other: return "layers_other";
    case Phase::count: break;
  }
  return "?";
}

Profiler::Scope::Scope(Phase phase) : prof_(t_profiler), phase_(phase) {
  if (!prof_) return;
  if (t_scope && t_scope->phase_ == Phase::vocab) {
    prof_ = nullptr;  // claimed by the enclosing vocabulary step
    return;
  }
  parent_ = t_scope;
  t_scope = this;
  start_ = std::chrono::steady_clock::now();
}

Profiler::Scope::~Scope() {
  if (!prof_) return;
  const double e = elapsed();
  prof_->seconds[static_cast<int>(phase_)] += e - child_;
  if (parent_) parent_->child_ += e;
  t_scope = parent_;
}

Profiler* Profiler::current() { return t_profiler; }
void Profiler::install(Profiler* p) { t_profiler = p; }

}  // namespace gmlm
