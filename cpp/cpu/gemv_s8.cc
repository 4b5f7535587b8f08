#include "cpu/gemv_s8.h"

#include <cstdlib>
#include <cstring>

#include "core/error.h"
#include "cpu/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace gmlm::cpu {

namespace {
constexpr int64_t kMaxK = 16384;  // the activations of a call live on the stack
}

bool gemv_s8_available() {
#if defined(__x86_64__) && defined(__GNUC__)
  static const bool ok = [] {
    const char* off = std::getenv("GMLM_NO_GEMV");
    if (off && *off && std::strcmp(off, "0") != 0) return false;
    __builtin_cpu_init();
    return cpu_isa() == CpuIsa::avx512 && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  }();
  return ok;
#else
  return false;
#endif
}

GemvWeight pack_gemv_s8(const int8_t* w, int64_t N, int64_t K) {
  GemvWeight g;
  if (N % 64 != 0 || K > kMaxK || !gemv_s8_available()) return g;
  g.N = N;
  g.K4 = (K + 3) / 4 * 4;
  g.packed.assign(static_cast<size_t>(N * g.K4), 0);
  g.wsum.assign(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) {
      const int8_t v = w[n * K + k];
      s += v;
      g.packed[static_cast<size_t>((n / 64) * g.K4 * 64 + (k / 4) * 256 + (n % 64) * 4 + k % 4)] = v;
    }
    g.wsum[n] = s;
  }
  return g;
}

#if defined(__x86_64__) && defined(__GNUC__)
namespace {

// Channels [64 g, 64 g + 64) for M rows: 4 vectors of 16 channels; au: (M, K4) activations + 128.
template <int M>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void group(const GemvWeight& w, const uint8_t* au, int64_t g,
                                                                   int64_t n0, int32_t* out, int64_t ldo) {
  const int64_t K4 = w.K4;
  __m512i acc[M][4];
  for (int m = 0; m < M; ++m)
    for (int j = 0; j < 4; ++j) acc[m][j] = _mm512_setzero_si512();
  const int8_t* base = w.packed.data() + g * K4 * 64;   // [K4 / 4][4][64]: one sequential stream
  for (int64_t kk = 0; kk < K4 / 4; ++kk) {
    const int8_t* p = base + kk * 256;
    const __m512i w0 = _mm512_loadu_si512(p), w1 = _mm512_loadu_si512(p + 64), w2 = _mm512_loadu_si512(p + 128),
                  w3 = _mm512_loadu_si512(p + 192);
    for (int m = 0; m < M; ++m) {
      int32_t a4;
      std::memcpy(&a4, au + m * K4 + kk * 4, 4);
      const __m512i av = _mm512_set1_epi32(a4);
      acc[m][0] = _mm512_dpbusd_epi32(acc[m][0], av, w0);
      acc[m][1] = _mm512_dpbusd_epi32(acc[m][1], av, w1);
      acc[m][2] = _mm512_dpbusd_epi32(acc[m][2], av, w2);
      acc[m][3] = _mm512_dpbusd_epi32(acc[m][3], av, w3);
    }
  }
  for (int j = 0; j < 4; ++j) {
    const int64_t n = g * 64 + j * 16;
    const __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(w.wsum.data() + n), 7);  // 128 * sum_k w
    for (int m = 0; m < M; ++m) _mm512_storeu_si512(out + m * ldo + (n - n0), _mm512_sub_epi32(acc[m][j], corr));
  }
}

template <int M>
void rows(const GemvWeight& w, const uint8_t* au, int64_t n0, int64_t N, int32_t* out, int64_t ldo) {
  for (int64_t g = n0 / 64; g < (n0 + N) / 64; ++g) group<M>(w, au, g, n0, out, ldo);
}

}  // namespace
#endif

void gemv_s8(const GemvWeight& w, const int8_t* a, int64_t lda, int64_t M, int64_t K, int64_t n0, int64_t N,
             int32_t* out, int64_t ldo) {
  GMLM_CHECK(!w.packed.empty() && M >= 1 && M <= kGemvMaxRows && n0 % 64 == 0 && N % 64 == 0 && n0 + N <= w.N &&
                 (K + 3) / 4 * 4 == w.K4,
             "gemv_s8: M ", M, ", channels [", n0, ", ", n0 + N, ") of ", w.N);
#if defined(__x86_64__) && defined(__GNUC__)
  alignas(64) uint8_t au[kGemvMaxRows * kMaxK];   // the activations + 128; padding k: 0 after the - 128
  GMLM_CHECK(w.K4 <= kMaxK, "gemv_s8: K = ", K, " is above ", kMaxK);
  for (int64_t m = 0; m < M; ++m) {
    uint8_t* dst = au + m * w.K4;
    const int8_t* src = a + m * lda;
    for (int64_t k = 0; k < K; ++k) dst[k] = static_cast<uint8_t>(src[k]) ^ 0x80;
    for (int64_t k = K; k < w.K4; ++k) dst[k] = 128;
  }
  switch (M) {
    case 1: rows<1>(w, au, n0, N, out, ldo); break;
    default: rows<2>(w, au, n0, N, out, ldo); break;
  }
#else
  (void)a; (void)lda; (void)out; (void)ldo;
#endif
}

}  // namespace gmlm::cpu
