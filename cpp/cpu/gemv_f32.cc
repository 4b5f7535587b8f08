#include "cpu/gemv_f32.h"

#include <algorithm>

#include "core/error.h"
#include "cpu/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define GMLM_GEMV_F32 1
#else
#define GMLM_GEMV_F32 0
#endif

namespace gmlm::cpu {

bool gemv_f32_available() {
#if GMLM_GEMV_F32
  static const bool ok = cpu_isa() >= CpuIsa::avx2;
  return ok;
#else
  return false;
#endif
}

#if GMLM_GEMV_F32
namespace {

#define GMLM_AVX2 __attribute__((target("avx2,fma")))
// Software prefetch distance: the weights stream from L3 or memory in short rows (1-4 KB) that the
// hardware prefetchers pick up late.
// Measured on AMD Zen 5 capped to AVX2 (AR greedy, batch 1, 1 thread): 4 rows ahead ~103 sent/s, 8-32 KB
// ahead 125-136 (median of 7).
constexpr int64_t kPrefetchBytes = 16384;

// The 8 lanes of each of a, b, c, d summed: {sum a, sum b, sum c, sum d}.
GMLM_AVX2 inline __m128 hsum4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 t = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(t), _mm256_extractf128_ps(t, 1));
}

GMLM_AVX2 inline void store(float* c, __m128 s, float alpha, float beta, int n) {
  alignas(16) float v[4];
  _mm_store_ps(v, s);
  for (int j = 0; j < n; ++j) c[j] = alpha * v[j] + (beta == 0.f ? 0.f : beta * c[j]);
}

// Channels [n, n + C) (C <= 4) for R rows (R <= 2).
template <int R, int C>
GMLM_AVX2 void block(int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb, float beta,
                     float* Cm, int64_t ldc) {
  __m256 acc[R][4];
  for (int r = 0; r < R; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = _mm256_setzero_ps();
  const int64_t K8 = K / 8 * 8;
  const int64_t ahead = std::max<int64_t>(4, kPrefetchBytes / (4 * std::max<int64_t>(ldb, 1)));
  for (int64_t k = 0; k < K8; k += 8) {
    __m256 a[R];
    for (int r = 0; r < R; ++r) a[r] = _mm256_loadu_ps(A + r * lda + k);
    for (int j = 0; j < C; ++j) {
      // (prefetching past the end of B is harmless: a prefetch never faults)
      _mm_prefetch(reinterpret_cast<const char*>(B + (j + ahead) * ldb + k), _MM_HINT_T0);
      const __m256 w = _mm256_loadu_ps(B + j * ldb + k);
      for (int r = 0; r < R; ++r) acc[r][j] = _mm256_fmadd_ps(a[r], w, acc[r][j]);
    }
  }
  for (int r = 0; r < R; ++r) {
    __m128 s = hsum4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]);
    if (K8 < K) {  // the tail of K, in order after the vector part
      alignas(16) float t[4];
      _mm_store_ps(t, s);
      for (int j = 0; j < C; ++j)
        for (int64_t k = K8; k < K; ++k) t[j] += A[r * lda + k] * B[j * ldb + k];
      s = _mm_load_ps(t);
    }
    store(Cm + r * ldc, s, alpha, beta, C);
  }
}

}  // namespace
#endif

void gemv_f32(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
              float beta, float* C, int64_t ldc) {
  GMLM_CHECK(M >= 0 && M <= kGemvF32MaxRows && N >= 0 && K >= 0 && gemv_f32_available(), "gemv_f32: M ", M);
#if GMLM_GEMV_F32
  // per block of 4 channels (read from memory once), the rows in pairs (the second pair reads the block
  // from L1); a row's arithmetic does not depend on its pair or on M
  for (int64_t n = 0; n < N; n += 4) {
    const bool four = N - n >= 4;
    for (int64_t r = 0; r < M; r += 2) {
      const float* a = A + r * lda;
      const float* b = B + n * ldb;
      float* c = C + r * ldc + n;
      if (four && M - r >= 2) block<2, 4>(K, alpha, a, lda, b, ldb, beta, c, ldc);
      else if (four) block<1, 4>(K, alpha, a, lda, b, ldb, beta, c, ldc);
      else
        for (int64_t j = 0; j < N - n; ++j)
          for (int64_t q = r; q < std::min(M, r + 2); ++q)
            block<1, 1>(K, alpha, A + q * lda, lda, b + j * ldb, ldb, beta, C + q * ldc + n + j, ldc);
    }
  }
#else
  (void)N; (void)K; (void)alpha; (void)A; (void)lda; (void)B; (void)ldb; (void)beta; (void)C; (void)ldc;
#endif
}

}  // namespace gmlm::cpu
