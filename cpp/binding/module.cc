// gmlm_engine._core: the compiled engine (see docs/architecture.md, "The engine").
#include <pybind11/pybind11.h>

#include "core/thread_pool.h"
#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "cpu/lowp.h"
#include "models/t5_model.h"

namespace py = pybind11;

namespace gmlm {
void register_engine(py::module_& m);
void register_ops(py::module_& m);
}  // namespace gmlm

PYBIND11_MODULE(_core, m) {
  m.doc() = "gmlm-engine compiled core";
  m.attr("__version__") = GMLM_VERSION;
  m.def("build_info", []() {
    py::dict d;
    d["version"] = GMLM_VERSION;
    d["cuda"] = static_cast<bool>(GMLM_WITH_CUDA);
    d["sanitize"] = static_cast<bool>(GMLM_SANITIZE);
#ifdef __VERSION__
    d["compiler"] = __VERSION__;
#endif
    d["blas"] = gmlm::cpu::blas_info();
    d["cpu_isa"] = gmlm::cpu::kernels().isa;
    d["onednn"] = gmlm::cpu::onednn_info();
    py::list native;
    for (auto t : {gmlm::cpu::ComputeType::float32, gmlm::cpu::ComputeType::bfloat16, gmlm::cpu::ComputeType::int8})
      if (gmlm::cpu::onednn_built() || t == gmlm::cpu::ComputeType::float32)
        if (gmlm::cpu::native_support(t)) native.append(gmlm::cpu::compute_type_name(t));
    d["native_compute_types"] = native;
    d["max_intra_threads"] = gmlm::ThreadPool::max_threads();
    return d;
  }, "Version and build options of the compiled engine (the BLAS, the CPU kernels, oneDNN, and the compute\n"
     "types this CPU runs natively, the largest intra_threads accepted).");
  gmlm::register_engine(m);
  gmlm::register_ops(m);
  // C++ exceptions: std::invalid_argument -> ValueError, others -> RuntimeError (pybind11 defaults).
}
