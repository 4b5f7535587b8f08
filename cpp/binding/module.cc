// gmlm_engine._core: the compiled engine. For now it reports its version and build options.
#include <pybind11/pybind11.h>

namespace py = pybind11;

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
    return d;
  }, "Version and build options of the compiled engine.");
}
