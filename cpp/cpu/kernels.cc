#include "cpu/kernels.h"

#include <cstdlib>
#include <cstring>

namespace gmlm::cpu {

static bool cpu_has_avx2_fma() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

const Kernels& generic_kernels() {
  static const Kernels k = generic::table();
  return k;
}

const Kernels& kernels() {
  static const Kernels k = [] {
    const char* force = std::getenv("GMLM_CPU_ISA");  // "generic" forces the portable kernels
    if (avx2::compiled() && cpu_has_avx2_fma() && !(force && std::strcmp(force, "generic") == 0))
      return avx2::table();
    return generic::table();
  }();
  return k;
}

}  // namespace gmlm::cpu
