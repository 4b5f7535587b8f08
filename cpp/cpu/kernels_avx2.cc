// The AVX2 + FMA instance of kernels_impl.inl (this file is compiled with -mavx2 -mfma; it is only
// called after a run-time check of the CPU). Without those flags it compiles to a stub.
#if defined(__AVX2__) && defined(__FMA__)
#define GMLM_KERNEL_NS avx2
#include "cpu/kernels_impl.inl"
namespace gmlm::cpu::avx2 { bool compiled() { return true; } }
#else
#include "cpu/kernels.h"
namespace gmlm::cpu::avx2 {
bool compiled() { return false; }
Kernels table() { return generic::table(); }
}  // namespace gmlm::cpu::avx2
#endif
