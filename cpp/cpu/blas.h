// The BLAS behind the GEMM op: OpenBLAS from the scipy-openblas32 wheel (symbols prefixed scipy_).
// The engine calls it single-threaded from its own pool (see core/thread_pool.h).
#pragma once

#include <cstdint>
#include <string>

namespace gmlm::cpu {

// C(M, N) = alpha * A(M, K) . B(N, K)^T + beta * C, row-major, on the calling thread.
void sgemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
              float beta, float* C, int64_t ldc);

// The same call with the BLAS's own threading (threads > 0), for benchmarks: "the BLAS's SGEMM".
// Not for use while an engine computes: OpenBLAS's thread count is process-wide (the engine's
// next sgemm_nt sets it back to 1).
void sgemm_nt_blas_threads(int threads, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C);

std::string blas_info();  // "OpenBLAS 0.3.x (core Haswell)"

}  // namespace gmlm::cpu
