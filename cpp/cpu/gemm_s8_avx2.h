// The int8 GEMM for AVX2 CPUs without VNNI (AMD Zen 2/3, older Intel), any number of rows.
//
// oneDNN's int8 matmul on plain AVX2 multiplies with vpmaddubsw, whose int16 pair sums saturate
// for our ranges (u8 activations + 128 times s8 weights up to 127: 2 * 255 * 127 > 32767; measured:
// errors of 1e5 on sums of 5e5, tests/test_lowp.py). This kernel sign-extends both sides to int16
// and multiplies with vpmaddwd: a pair sum is at most 2 * 127 * 127 = 32258, the int32 sums are
// exact (K <= 65536), so its results are the bits of oneDNN's s8 x s8 -> s32 on a VNNI or AMX CPU
// and of the AVX512-VNNI few-rows kernel (cpu/gemv_s8.h): the same tokens on every x86-64 CPU, and
// batch invariance, because a row's sums do not depend on its neighbours.
//
// Weights are repacked once at load into panels of 16 channels, each one sequential stream of
// [K2 / 2][16 channels][2 k] bytes (K2: K rounded up to even). One step reads 32 bytes (16 channels
// x 2 k), sign-extends them into two registers and updates up to 4 rows x 16 channels; a panel
// (4-16 KB at our widths) stays in L1 while the row blocks pass over it.
//
// Shapes: a (M, K) s8 stride lda; w (N, K) s8 row-major; out (M, N) s32 stride ldo.
#pragma once

#include <cstdint>
#include <vector>

namespace gmlm::cpu {

struct GemmS8Avx2Weight {
  int64_t N = 0, K = 0, K2 = 0;    // channels, depth, depth rounded up to even
  std::vector<int8_t> packed;       // [ceil(N / 16)][K2 / 2][16][2], padding channels and k are 0
};

// True where this build and CPU run the kernel (AVX2; GMLM_CPU_ISA=generic turns it off).
bool gemm_s8_avx2_available();
// Empty where the kernel is not available.
GemmS8Avx2Weight pack_gemm_s8_avx2(const int8_t* w, int64_t N, int64_t K);
// out[m, n - n0] = sum_k a[m, k] * w[n, k] for m < M, n in [n0, n0 + N) (any n0, N).
void gemm_s8_avx2(const GemmS8Avx2Weight& w, const int8_t* a, int64_t lda, int64_t M, int64_t n0, int64_t N,
                  int32_t* out, int64_t ldo);

}  // namespace gmlm::cpu
