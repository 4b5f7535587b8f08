// The float32 GEMM for a few rows (AR steps at batch 1 to 12, beam search at batch 1-3), where OpenBLAS's
// sgemm spends more on packing and dispatch than on the product: row-major weights streamed once,
// dot products of 4 channels x 2 rows at a time with AVX2 FMA, the rows of A held in L1. One
// kernel for every x86-64 CPU with AVX2 (GMLM_CPU_ISA=generic turns it off), so AVX2 and AVX-512
// machines give the same bits. Its sums run in another order than OpenBLAS's, like OpenBLAS's own
// results differ with the row count: float32 results are batch invariant in tokens, not in bits.
#pragma once

#include <cstdint>

namespace gmlm::cpu {

// Measured on AMD Zen 5 capped to AVX2, (M x 256) . (1024 x 256)^T streamed from L3, us per product,
// this kernel / OpenBLAS: M 1: 19 / 50+, 4: 38 / 79, 8: 67 / 101, 12: 101 / 124, 16: 131 / 145, 24: 194 / 175.
constexpr int64_t kGemvF32MaxRows = 12;

// True where this CPU runs the kernel (AVX2 + FMA, not capped to generic).
bool gemv_f32_available();
// C(M, N) = alpha * A(M, K) . B(N, K)^T + beta * C for M <= kGemvF32MaxRows, row-major.
void gemv_f32(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
              float beta, float* C, int64_t ldc);

}  // namespace gmlm::cpu
