// One implementation of the CPU kernels of kernels.h, included by kernels_generic.cc and
// kernels_avx2.cc inside namespace gmlm::cpu::GMLM_KERNEL_NS. Under __AVX2__ the hot loops use
// 8-wide intrinsics (dot products, exp); otherwise plain loops with several accumulators, which
// the compiler vectorises for the baseline ISA.
//
// exp: Cephes-style range reduction + degree-6 polynomial, ~2 ulp (PyTorch uses Sleef's ~1 ulp exp;
// the difference is far below the GEMM rounding differences).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cpu/kernels.h"

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define GMLM_HAVE_AVX2 1
#endif
#if defined(GMLM_HAVE_AVX2) && defined(__AVX512F__)
#define GMLM_HAVE_AVX512 1
#endif

namespace gmlm::cpu::GMLM_KERNEL_NS {
namespace {

#ifdef GMLM_HAVE_AVX2
inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-88.3762626647949f)), _mm256_set1_ps(88.3762626647949f));
  __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

inline float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax8(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#endif

inline float dot(const float* a, const float* b, int64_t n) {
  int64_t i = 0;
#ifdef GMLM_HAVE_AVX2
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc0);
  float s = hsum8(_mm256_add_ps(acc0, acc1));
#else
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (; i + 8 <= n; i += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[i + l] * b[i + l];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
#endif
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

inline float row_max(const float* x, int64_t n) {
  int64_t i = 0;
  float m = -std::numeric_limits<float>::infinity();
#ifdef GMLM_HAVE_AVX2
  if (n >= 8) {
    __m256 vm = _mm256_loadu_ps(x);
    for (i = 8; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    m = hmax8(vm);
  }
#endif
  for (; i < n; ++i) m = x[i] > m ? x[i] : m;
  return m;
}

// x[i] = exp(x[i] - m); returns the sum.
inline float exp_shift_sum(float* x, int64_t n, float m, bool store) {
  int64_t i = 0;
  float s = 0.f;
#ifdef GMLM_HAVE_AVX2
  __m256 vm = _mm256_set1_ps(m), acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    __m256 e1 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
    if (store) {
      _mm256_storeu_ps(x + i, e0);
      _mm256_storeu_ps(x + i + 8, e1);
    }
    acc0 = _mm256_add_ps(acc0, e0);
    acc1 = _mm256_add_ps(acc1, e1);
  }
  for (; i + 8 <= n; i += 8) {
    __m256 e0 = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
    if (store) _mm256_storeu_ps(x + i, e0);
    acc0 = _mm256_add_ps(acc0, e0);
  }
  if (i < n) {  // the tail, masked (short rows such as attention scores would spend most of their time here)
    const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n - i)),
                                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    __m256 e0 = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mask), vm)), _mm256_castsi256_ps(mask));
    if (store) _mm256_maskstore_ps(x + i, mask, e0);
    acc0 = _mm256_add_ps(acc0, e0);
    i = n;
  }
  s = hsum8(_mm256_add_ps(acc0, acc1));
#endif
  for (; i < n; ++i) {
    float e = std::exp(x[i] - m);
    if (store) x[i] = e;
    s += e;
  }
  return s;
}

#ifdef GMLM_HAVE_AVX2
// x[0..n) = softmax(x[0..n)) in place for short rows (attention scores): blocks of 16 as two 8-wide
// halves with masked tails, sum = hsum8(lo + hi). softmax16 (AVX-512) does the same arithmetic per
// lane and the same final reduction, so the two kernel sets give the same bits.
inline void softmax8x2(float* x, int64_t n) {
  const __m256i iota = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  auto mask = [&](int64_t j) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(n - j, 8))), iota);
  };
  const __m256 vm = _mm256_set1_ps(row_max(x, n));
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __m256i m0 = mask(j);
    const __m256 e0 = _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j, m0), vm)), _mm256_castsi256_ps(m0));
    _mm256_maskstore_ps(x + j, m0, e0);
    lo = _mm256_add_ps(lo, e0);
    if (j + 8 < n) {
      const __m256i m1 = mask(j + 8);
      const __m256 e1 =
          _mm256_and_ps(exp8(_mm256_sub_ps(_mm256_maskload_ps(x + j + 8, m1), vm)), _mm256_castsi256_ps(m1));
      _mm256_maskstore_ps(x + j + 8, m1, e1);
      hi = _mm256_add_ps(hi, e1);
    }
  }
  const float inv = 1.0f / hsum8(_mm256_add_ps(lo, hi));
  for (int64_t j = 0; j < n; ++j) x[j] *= inv;
}
#endif

void rms_norm(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows, int64_t d,
              float eps) {
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * ldx;
    float* yr = y + r * ldy;
    float ss = dot(xr, xr, d);
    float inv = 1.0f / std::sqrt(ss / static_cast<float>(d) + eps);
    for (int64_t i = 0; i < d; ++i) yr[i] = gamma[i] * (xr[i] * inv);
  }
}

// Scores, softmax and weighted values for one (segment, head), one query row at a time.
[[maybe_unused]] void attention_rows(const AttentionHeadArgs& a, int64_t i0, int64_t i1, float* s) {
  for (int64_t i = i0; i < i1; ++i) {
    const float* qi = a.q + i * a.ldq;
    const int64_t pos = a.q_pos ? a.q_pos[i] : i;
    for (int64_t j = 0; j < a.nk; ++j) s[j] = dot(qi, a.k + j * a.ldk, a.dh);
    if (a.rel_bias) {
      const float* b = a.rel_bias + (a.max_rel - pos);  // b[j] = bias(j - pos)
      for (int64_t j = 0; j < a.nk; ++j) s[j] += b[j];
    }
    const float m = row_max(s, a.nk);
    const float inv = 1.0f / exp_shift_sum(s, a.nk, m, true);
    float* o = a.out + i * a.ldo;
    for (int64_t d = 0; d < a.dh; ++d) o[d] = 0.f;
    for (int64_t j = 0; j < a.nk; ++j) {
      const float p = s[j] * inv;
      const float* vj = a.v + j * a.ldv;
      for (int64_t d = 0; d < a.dh; ++d) o[d] += p * vj[d];
    }
  }
}

#ifdef GMLM_HAVE_AVX512
// r[i] = row i of a 16 x 16 block -> r[i] = column i (pairs of rows interleaved, then 4 x 4 blocks
// within 128-bit lanes, then the 128-bit lanes themselves)
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
    r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
    r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xdd);
  }
}

inline __m512 exp16(__m512 x) {  // exp8's steps, 16 wide
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-88.3762626647949f)), _mm512_set1_ps(88.3762626647949f));
  __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                   _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
  x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
  __m512 y = _mm512_set1_ps(1.9875691500e-4f);
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073e-3f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894e-2f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459e-1f));
  y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201e-1f));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
  __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(e));
}

// softmax8x2, 16 wide: the same per-lane arithmetic and final reduction (bit-identical results)
inline void softmax16(float* x, int64_t n) {
  auto tail = [n](int64_t j) { return n - j >= 16 ? __mmask16(0xffff) : __mmask16((1u << (n - j)) - 1); };
  __m512 vm = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t j = 0; j < n; j += 16) vm = _mm512_mask_max_ps(vm, tail(j), vm, _mm512_maskz_loadu_ps(tail(j), x + j));
  const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(vm));
  __m512 acc = _mm512_setzero_ps();
  for (int64_t j = 0; j < n; j += 16) {
    const __m512 e = _mm512_maskz_mov_ps(tail(j), exp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail(j), x + j), m)));
    _mm512_mask_storeu_ps(x + j, tail(j), e);
    acc = _mm512_add_ps(acc, e);
  }
  const __m256 lo = _mm512_castps512_ps256(acc), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
  const __m512 inv = _mm512_set1_ps(1.0f / hsum8(_mm256_add_ps(lo, hi)));  // softmax8x2's reduction
  for (int64_t j = 0; j < n; j += 16)
    _mm512_mask_storeu_ps(x + j, tail(j), _mm512_mul_ps(_mm512_maskz_loadu_ps(tail(j), x + j), inv));
}

// AVX-512 version for dh % 16 == 0: blocks of 8 queries; scores against K^T packed 16 keys wide
// (8 broadcast-FMAs per key block and d), then P.V with 8 broadcast-FMAs per key and 16 dims.
// Every score and output element is the same chain of FMAs over d (scores) and j (P.V), in the same
// order, as in the AVX2 version, and the softmax the same arithmetic (softmax16 = softmax8x2): the results are bit-identical.
void attention_head(const AttentionHeadArgs& a) {
  if (a.dh % 16 != 0 || a.dh > 512 || a.nq < 2) {  // the AVX2 kernel's cases
    static const Kernels avx2_kernels = avx2::table();
    avx2_kernels.attention_head(a);
    return;
  }
  constexpr int R = 8;
  const int64_t nk = a.nk, dh = a.dh, nkp = (nk + 15) / 16 * 16;
  float* kt = a.scratch;       // (dh, nkp)
  float* s = kt + dh * nkp;    // (R, nkp)
  // K^T, 16 x 16 blocks transposed in registers (key rows past nk: zeros)
  for (int64_t j0 = 0; j0 < nkp; j0 += 16) {
    const int64_t nj = std::min<int64_t>(16, nk - j0);
    for (int64_t d0 = 0; d0 < dh; d0 += 16) {
      __m512 blk[16];
      for (int64_t j = 0; j < 16; ++j)
        blk[j] = j < nj ? _mm512_loadu_ps(a.k + (j0 + j) * a.ldk + d0) : _mm512_setzero_ps();
      transpose16x16(blk);
      for (int64_t d = 0; d < 16; ++d) _mm512_storeu_ps(kt + (d0 + d) * nkp + j0, blk[d]);
    }
  }
  static const float zeros[512] = {};
  for (int64_t i0 = 0; i0 < a.nq; i0 += R) {
    const int64_t ni = std::min<int64_t>(R, a.nq - i0);
    const float* q[R];
    for (int r = 0; r < R; ++r) q[r] = r < ni ? a.q + (i0 + r) * a.ldq : zeros;
    // scores
    for (int64_t j0 = 0; j0 < nkp; j0 += 16) {
      __m512 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
      const float* kd = kt + j0;
      for (int64_t d = 0; d < dh; ++d, kd += nkp) {
        const __m512 kv = _mm512_loadu_ps(kd);
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(q[r][d]), kv, acc[r]);
      }
      for (int r = 0; r < R; ++r) _mm512_storeu_ps(s + r * nkp + j0, acc[r]);
    }
    // bias and softmax (normalised probabilities, as torch.softmax)
    for (int64_t r = 0; r < ni; ++r) {
      float* sr = s + r * nkp;
      if (a.rel_bias) {
        const int64_t pos = a.q_pos ? a.q_pos[i0 + r] : i0 + r;
        const float* b = a.rel_bias + (a.max_rel - pos);
        for (int64_t j = 0; j < nk; ++j) sr[j] += b[j];
      }
      softmax16(sr, nk);
    }
    for (int64_t r = ni; r < R; ++r)
      for (int64_t j = 0; j < nk; ++j) s[r * nkp + j] = 0.f;
    // out = P . V
    for (int64_t d0 = 0; d0 < dh; d0 += 16) {
      __m512 acc[R];
      for (int r = 0; r < R; ++r) acc[r] = _mm512_setzero_ps();
      const float* vj = a.v + d0;
      for (int64_t j = 0; j < nk; ++j, vj += a.ldv) {
        const __m512 vv = _mm512_loadu_ps(vj);
        for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(s[r * nkp + j]), vv, acc[r]);
      }
      for (int64_t r = 0; r < ni; ++r) _mm512_storeu_ps(a.out + (i0 + r) * a.ldo + d0, acc[r]);
    }
  }
}
#elif defined(GMLM_HAVE_AVX2)
// AVX2 version for dh % 8 == 0: blocks of 4 queries; scores against K^T packed 8 keys wide
// (4 broadcast-FMAs per key block and d), then P.V with 4 broadcast-FMAs per key and 8 dims.
void attention_head(const AttentionHeadArgs& a) {
  if (a.dh % 8 != 0 || a.nq < 2) {
    attention_rows(a, 0, a.nq, a.scratch);
    return;
  }
  const int64_t nk = a.nk, dh = a.dh, nkp = (nk + 7) / 8 * 8;
  float* kt = a.scratch;       // (dh, nkp)
  float* s = kt + dh * nkp;    // (4, nkp)
  for (int64_t j = 0; j < nkp; ++j)
    for (int64_t d = 0; d < dh; ++d) kt[d * nkp + j] = j < nk ? a.k[j * a.ldk + d] : 0.f;
  static const float zeros[512] = {};
  for (int64_t i0 = 0; i0 < a.nq; i0 += 4) {
    const int64_t ni = std::min<int64_t>(4, a.nq - i0);
    const float* q[4];
    for (int r = 0; r < 4; ++r) q[r] = r < ni ? a.q + (i0 + r) * a.ldq : zeros;
    if (dh > 512) {
      attention_rows(a, i0, i0 + ni, s);
      continue;
    }
    // scores
    for (int64_t j0 = 0; j0 < nkp; j0 += 8) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
             acc3 = _mm256_setzero_ps();
      const float* kd = kt + j0;
      for (int64_t d = 0; d < dh; ++d, kd += nkp) {
        const __m256 kv = _mm256_loadu_ps(kd);
        acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[0] + d), kv, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[1] + d), kv, acc1);
        acc2 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[2] + d), kv, acc2);
        acc3 = _mm256_fmadd_ps(_mm256_broadcast_ss(q[3] + d), kv, acc3);
      }
      _mm256_storeu_ps(s + 0 * nkp + j0, acc0);
      _mm256_storeu_ps(s + 1 * nkp + j0, acc1);
      _mm256_storeu_ps(s + 2 * nkp + j0, acc2);
      _mm256_storeu_ps(s + 3 * nkp + j0, acc3);
    }
    // bias and softmax (normalised probabilities, as torch.softmax)
    for (int64_t r = 0; r < ni; ++r) {
      float* sr = s + r * nkp;
      if (a.rel_bias) {
        const int64_t pos = a.q_pos ? a.q_pos[i0 + r] : i0 + r;
        const float* b = a.rel_bias + (a.max_rel - pos);
        for (int64_t j = 0; j < nk; ++j) sr[j] += b[j];
      }
      softmax8x2(sr, nk);
    }
    for (int64_t r = ni; r < 4; ++r)
      for (int64_t j = 0; j < nk; ++j) s[r * nkp + j] = 0.f;
    // out = P . V
    for (int64_t d0 = 0; d0 < dh; d0 += 8) {
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps(), acc2 = _mm256_setzero_ps(),
             acc3 = _mm256_setzero_ps();
      const float* vj = a.v + d0;
      for (int64_t j = 0; j < nk; ++j, vj += a.ldv) {
        const __m256 vv = _mm256_loadu_ps(vj);
        acc0 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 0 * nkp + j), vv, acc0);
        acc1 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 1 * nkp + j), vv, acc1);
        acc2 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 2 * nkp + j), vv, acc2);
        acc3 = _mm256_fmadd_ps(_mm256_broadcast_ss(s + 3 * nkp + j), vv, acc3);
      }
      const __m256 acc[4] = {acc0, acc1, acc2, acc3};
      for (int64_t r = 0; r < ni; ++r) _mm256_storeu_ps(a.out + (i0 + r) * a.ldo + d0, acc[r]);
    }
  }
}
#else
void attention_head(const AttentionHeadArgs& a) { attention_rows(a, 0, a.nq, a.scratch); }
#endif

void max_argmax_sumexp(const float* x, int64_t n, float* max, int32_t* argmax, float* sumexp) {
  const float m = row_max(x, n);
  int64_t am = 0;
#ifdef GMLM_HAVE_AVX2
  const __m256 vm = _mm256_set1_ps(m);
  for (; am + 8 <= n; am += 8) {
    const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(x + am), vm, _CMP_EQ_OQ));
    if (hit) {
      am += __builtin_ctz(static_cast<unsigned>(hit));
      break;
    }
  }
#endif
  while (am < n && !(x[am] == m)) ++am;  // first maximum (all-NaN rows: n, clamped below)
  *max = m;
  *argmax = static_cast<int32_t>(am < n ? am : 0);
  *sumexp = exp_shift_sum(const_cast<float*>(x), n, m, false);
}

void relu(float* x, int64_t ld, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * ld;
    for (int64_t i = 0; i < n; ++i) xr[i] = xr[i] > 0.f ? xr[i] : (xr[i] == xr[i] ? 0.f : xr[i]);
  }
}

// gelu with the tanh approximation; tanh(u) = 1 - 2 / (exp(2u) + 1)
void gelu_mul(const float* a, const float* b, int64_t ldab, float* y, int64_t ldy, int64_t rows, int64_t n) {
  constexpr float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
  for (int64_t r = 0; r < rows; ++r) {
    const float* ar = a + r * ldab;
    const float* br = b + r * ldab;
    float* yr = y + r * ldy;
    int64_t i = 0;
#ifdef GMLM_HAVE_AVX2
    const __m256 one = _mm256_set1_ps(1.f), two = _mm256_set1_ps(2.f), half = _mm256_set1_ps(0.5f);
    for (; i + 8 <= n; i += 8) {
      __m256 x = _mm256_loadu_ps(ar + i);
      __m256 inner = _mm256_mul_ps(_mm256_set1_ps(kBeta),
                                   _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(kKappa), x), _mm256_mul_ps(x, x), x));
      __m256 t = _mm256_sub_ps(one, _mm256_div_ps(two, _mm256_add_ps(exp8(_mm256_mul_ps(two, inner)), one)));
      __m256 g = _mm256_mul_ps(_mm256_mul_ps(half, x), _mm256_add_ps(one, t));
      _mm256_storeu_ps(yr + i, _mm256_mul_ps(g, _mm256_loadu_ps(br + i)));
    }
#endif
    for (; i < n; ++i) {
      const float x = ar[i];
      const float inner = kBeta * (x + kKappa * x * x * x);
      yr[i] = 0.5f * x * (1.f + std::tanh(inner)) * br[i];
    }
  }
}

void scale(const float* x, float s, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * s;
}

float quantize_s8(const float* x, int64_t n, int8_t* q) {
  float mx = 0.f;
  int64_t i = 0;
#if defined(GMLM_HAVE_AVX512)
  // four independent running maxima (one would wait on max's latency every 16 elements)
  __m512 m0 = _mm512_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
  for (; i + 64 <= n; i += 64) {
    m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    m1 = _mm512_max_ps(m1, _mm512_abs_ps(_mm512_loadu_ps(x + i + 16)));
    m2 = _mm512_max_ps(m2, _mm512_abs_ps(_mm512_loadu_ps(x + i + 32)));
    m3 = _mm512_max_ps(m3, _mm512_abs_ps(_mm512_loadu_ps(x + i + 48)));
  }
  for (; i + 16 <= n; i += 16) m0 = _mm512_max_ps(m0, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
  mx = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m0, m1), _mm512_max_ps(m2, m3)));
#elif defined(GMLM_HAVE_AVX2)
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m0 = _mm256_setzero_ps(), m1 = m0, m2 = m0, m3 = m0;
  for (; i + 32 <= n; i += 32) {
    m0 = _mm256_max_ps(m0, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
    m1 = _mm256_max_ps(m1, _mm256_and_ps(_mm256_loadu_ps(x + i + 8), abs_mask));
    m2 = _mm256_max_ps(m2, _mm256_and_ps(_mm256_loadu_ps(x + i + 16), abs_mask));
    m3 = _mm256_max_ps(m3, _mm256_and_ps(_mm256_loadu_ps(x + i + 24), abs_mask));
  }
  for (; i + 8 <= n; i += 8) m0 = _mm256_max_ps(m0, _mm256_and_ps(_mm256_loadu_ps(x + i), abs_mask));
  mx = hmax8(_mm256_max_ps(_mm256_max_ps(m0, m1), _mm256_max_ps(m2, m3)));
#endif
  for (; i < n; ++i) mx = std::max(mx, std::fabs(x[i]));
  const float s = mx > 0.f ? mx / 127.f : 1.f, inv = 1.f / s;
  i = 0;
#if defined(GMLM_HAVE_AVX512)
  // the same arithmetic 16 wide; (v & sign) | 0.5 in one ternary-logic op, saturating narrowing store
  const __m512 vinv = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-127.f), hi = _mm512_set1_ps(127.f);
  const __m512i half = _mm512_castps_si512(_mm512_set1_ps(0.5f)), sign = _mm512_set1_epi32(INT32_MIN);
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vinv), lo), hi);
    const __m512 h = _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(v), sign, half, 0xEA));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtsepi32_epi8(_mm512_cvttps_epi32(_mm512_add_ps(v, h))));
  }
#elif defined(GMLM_HAVE_AVX2)
  const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  const __m256 half = _mm256_set1_ps(0.5f), sign = _mm256_castsi256_ps(_mm256_set1_epi32(INT32_MIN));
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto round8 = [&](const float* p) {  // v + copysign(0.5, v), truncated: round half away from zero
    const __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(p), vinv), lo), hi);
    return _mm256_cvttps_epi32(_mm256_add_ps(v, _mm256_or_ps(half, _mm256_and_ps(v, sign))));
  };
  for (; i + 32 <= n; i += 32) {
    const __m256i a = _mm256_packs_epi32(round8(x + i), round8(x + i + 8));
    const __m256i b = _mm256_packs_epi32(round8(x + i + 16), round8(x + i + 24));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), order));
  }
#endif
  for (; i < n; ++i) {
    const float v = std::min(std::max(x[i] * inv, -127.f), 127.f);
    q[i] = static_cast<int8_t>(static_cast<int>(v + (v >= 0.f ? 0.5f : -0.5f)));
  }
  return s;
}

void to_bf16(const float* x, int64_t n, uint16_t* y) {
  int64_t i = 0;
#ifdef GMLM_HAVE_AVX2
  const __m256i bias = _mm256_set1_epi32(0x7fff), one = _mm256_set1_epi32(1), quiet = _mm256_set1_epi32(0x40);
  const __m256i abs_mask = _mm256_set1_epi32(0x7fffffff), inf = _mm256_set1_epi32(0x7f800000);
  auto conv8 = [&](const float* p) {
    const __m256i u = _mm256_castps_si256(_mm256_loadu_ps(p));
    const __m256i r = _mm256_srli_epi32(
        _mm256_add_epi32(_mm256_add_epi32(u, bias), _mm256_and_si256(_mm256_srli_epi32(u, 16), one)), 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, abs_mask), inf);
    return _mm256_blendv_epi8(r, _mm256_or_si256(_mm256_srli_epi32(u, 16), quiet), nan);
  };
  for (; i + 16 <= n; i += 16) {
    const __m256i p = _mm256_packus_epi32(conv8(x + i), conv8(x + i + 8));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(y + i), _mm256_permute4x64_epi64(p, 0xD8));
  }
#endif
  for (; i < n; ++i) {
    uint32_t u;
    std::memcpy(&u, &x[i], 4);
    y[i] = static_cast<uint16_t>((u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u)
                                                                 : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  }
}

// c (+)= (float(q) * s) * ws, in that order and without FMA in every kernel set (bit-identical)
void dequant_s32(const int32_t* q, float s, const float* ws, float* c, int64_t n, bool accumulate) {
  int64_t i = 0;
#if defined(GMLM_HAVE_AVX512)
  const __m512 vs = _mm512_set1_ps(s);
  for (; i + 16 <= n; i += 16) {
    const __m512 y = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_loadu_si512(q + i)), vs),
                                   _mm512_loadu_ps(ws + i));
    _mm512_storeu_ps(c + i, accumulate ? _mm512_add_ps(_mm512_loadu_ps(c + i), y) : y);
  }
#elif defined(GMLM_HAVE_AVX2)
  const __m256 vs = _mm256_set1_ps(s);
  for (; i + 8 <= n; i += 8) {
    const __m256 y = _mm256_mul_ps(
        _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + i))), vs),
        _mm256_loadu_ps(ws + i));
    _mm256_storeu_ps(c + i, accumulate ? _mm256_add_ps(_mm256_loadu_ps(c + i), y) : y);
  }
#endif
  for (; i < n; ++i) {
    const float y = static_cast<float>(q[i]) * s * ws[i];
    c[i] = accumulate ? c[i] + y : y;
  }
}

}  // namespace

Kernels table() {
#if defined(GMLM_HAVE_AVX512)
  const char* isa = "avx512";
#elif defined(GMLM_HAVE_AVX2)
  const char* isa = "avx2";
#else
  const char* isa = "generic";
#endif
  return Kernels{isa, rms_norm, attention_head, max_argmax_sumexp, relu, gelu_mul, scale, quantize_s8, to_bf16,
                 dequant_s32};
}

}  // namespace gmlm::cpu::GMLM_KERNEL_NS
