// The AVX-512 instance of kernels_impl.inl (this file is compiled with -mavx512f -mavx2 -mfma; it is
// only called after a run-time check of the CPU). attention_head and the int8 conversions (quantize_s8,
// dequant_s32) have AVX-512 paths; the other kernels are the AVX2 ones. Without those flags it compiles to a stub.
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
