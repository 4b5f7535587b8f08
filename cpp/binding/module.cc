// gmlm_engine._core: the compiled engine (see docs/architecture.md, "The engine").
#include <pybind11/pybind11.h>

#include "cpu/blas.h"
#include "cpu/kernels.h"
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
    return d;
  }, "Version and build options of the compiled engine (and the BLAS and CPU kernels in use).");
  gmlm::register_engine(m);
  gmlm::register_ops(m);
  // C++ exceptions: std::invalid_argument -> ValueError, others -> RuntimeError (pybind11 defaults).
}
