// The int8 GEMM for a few rows (M <= kGemvMaxRows: an AR step at batch 1),
// where a oneDNN call (rows padded to 16, microseconds of fixed cost) would cost more than the
// arithmetic. Exact int32 sums, like oneDNN's s8 x s8 -> s32, so both paths give the same bits and
// results stay batch invariant (cpu/lowp.h).
//
// AVX512-VNNI: vpdpbusd multiplies u8 by s8, so the activations go in as a + 128 and 128 * sum_k w[n, k]
// is subtracted per output channel. Weights are repacked once at load into groups of 64 channels,
// each one sequential stream of [K / 4][4 x 16 channels][4 k] bytes: one instruction advances 16
// channels by 4 k, four run side by side.
//
// Shapes: a (M, K) s8 stride lda; w (N, K) s8 row-major; out (M, N) s32 stride ldo.
#pragma once

#include <cstdint>
#include <vector>

namespace gmlm::cpu {

constexpr int64_t kGemvMaxRows = 2;  // measured: from 3 rows on, oneDNN is faster

struct GemvWeight {
  int64_t N = 0, K4 = 0;            // channels, K rounded up to a multiple of 4
  std::vector<int8_t> packed;       // [N / 64][K4 / 4][64][4]
  std::vector<int32_t> wsum;        // (N) sum_k w[n, k]
};

// True where this CPU runs the kernel (AVX512-VNNI and AVX512-BW, GMLM_CPU_ISA not capping AVX-512);
// GMLM_NO_GEMV=1 turns it off (benchmarks).
bool gemv_s8_available();
// Empty unless N is a multiple of 64 and the kernel is available.
GemvWeight pack_gemv_s8(const int8_t* w, int64_t N, int64_t K);
// out[m, n - n0] = sum_k a[m, k] * w[n, k] for m < M <= kGemvMaxRows, n in [n0, n0 + N) (multiples of 64).
void gemv_s8(const GemvWeight& w, const int8_t* a, int64_t lda, int64_t M, int64_t K, int64_t n0, int64_t N,
             int32_t* out, int64_t ldo);

}  // namespace gmlm::cpu
