// The AVX-512 instance of kernels_impl.inl (this file is compiled with -mavx512f -mavx2 -mfma; it is
// only called after a run-time check of the CPU). Only attention_head has an AVX-512 path; the other
// kernels are the AVX2 ones. Without those flags it compiles to a stub.
#if defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
#define GMLM_KERNEL_NS avx512
#include "cpu/kernels_impl.inl"
namespace gmlm::cpu::avx512 { bool compiled() { return true; } }
#else
#include "cpu/kernels.h"
namespace gmlm::cpu::avx512 {
bool compiled() { return false; }
Kernels table() { return avx2::table(); }
}  // namespace gmlm::cpu::avx512
#endif
