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

static bool cpu_has_avx512f() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
#else
  return false;
#endif
}

const Kernels& generic_kernels() {
  static const Kernels k = generic::table();
  return k;
}

CpuIsa cpu_isa() {
  static const CpuIsa isa = [] {
    // GMLM_CPU_ISA caps the kernels: "generic" (portable), "avx2" (no AVX-512); unset: the best
    const char* force = std::getenv("GMLM_CPU_ISA");
    const bool generic_only = force && std::strcmp(force, "generic") == 0;
    const bool no_avx512 = generic_only || (force && std::strcmp(force, "avx2") == 0);
    if (avx512::compiled() && cpu_has_avx2_fma() && cpu_has_avx512f() && !no_avx512) return CpuIsa::avx512;
    if (avx2::compiled() && cpu_has_avx2_fma() && !generic_only) return CpuIsa::avx2;
    return CpuIsa::generic;
  }();
  return isa;
}

const Kernels& kernels() {
  static const Kernels k = [] {
    switch (cpu_isa()) {
      case CpuIsa::avx512: return avx512::table();
      case CpuIsa::avx2: return avx2::table();
      default: return generic::table();
    }
  }();
  return k;
}

}  // namespace gmlm::cpu
