// The decoding rules that the CPU engine and the CUDA kernels share, written once and compiled for host
// and device (docs/decoding.md; the Python twins in rules.py and pytorch/reference.py are the spec and
// tests/test_engine_ops.py and tests/test_engine_common.py check them against these on random inputs):
//   - the counter-based hash RNG: a draw is a pure function of (seed, stream, source hash, candidate,
//     iteration, position, vocabulary id), so results do not depend on batching, threads or device;
//   - the total (confidence, index) order of re-masking, NaN above +inf;
//   - the linear schedule's re-mask count;
//   - the candidate score's mean: float64, summed exactly as numpy's pairwise sum.
// Nothing here allocates or touches a thread: plain functions of their arguments.
#pragma once

#include <math.h>

#include <cstdint>

#if defined(__CUDACC__)
#define GMLM_HD __host__ __device__ inline
#else
#define GMLM_HD inline
#endif

namespace gmlm::rules {

// --- hash RNG ------------------------------------------------------------------------------------------
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

// The SplitMix64 finaliser.
GMLM_HD uint64_t mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ULL;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// FNV-1a 64 over the little-endian int32 bytes of the encoder input ids.
GMLM_HD uint64_t source_hash(const int32_t* ids, int64_t n) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = static_cast<uint32_t>(ids[i]);
    for (int b = 0; b < 4; ++b) h = (h ^ ((v >> (8 * b)) & 0xFF)) * 0x100000001B3ULL;
  }
  return h;
}

// The hash chain up to (and including) the position; the vocabulary id is mixed last (draw).
GMLM_HD uint64_t prefix(uint64_t seed, uint64_t stream, uint64_t src_hash, uint64_t k, uint64_t t, uint64_t i) {
  uint64_t h = mix(seed + kGolden);
  h = mix(h ^ stream);
  h = mix(h ^ src_hash);
  h = mix(h ^ k);
  h = mix(h ^ t);
  return mix(h ^ i);
}

GMLM_HD uint64_t draw(uint64_t prefix_hash, uint64_t v) { return mix(prefix_hash ^ v); }

// Gumbel noise: u = ((h >> 40) + 0.5) / 2^24, g = -log(-log(u)) in float64, rounded to float32.
GMLM_HD float gumbel(uint64_t h) {
  const double u = (static_cast<double>(h >> 40) + 0.5) / 16777216.0;
  return static_cast<float>(-::log(-::log(u)));
}

// Random initial token (stream 1, t = 0, v = 0): first_id + (h >> 40) % (V - first_id).
GMLM_HD int32_t init_token(uint64_t seed, uint64_t src_hash, uint64_t k, uint64_t i, int64_t vocab,
                           int64_t first_id) {
  const uint64_t h = draw(prefix(seed, 1, src_hash, k, 0, i), 0);
  return static_cast<int32_t>(first_id + static_cast<int64_t>((h >> 40) % static_cast<uint64_t>(vocab - first_id)));
}

// --- re-masking ----------------------------------------------------------------------------------------
// (conf, index) ascending, NaN above +inf: the order in which positions are re-masked.
GMLM_HD bool conf_less(float a, int64_t ia, float b, int64_t ib) {
  const bool na = a != a, nb = b != b;
  if (na != nb) return nb;
  if (!na && a != b) return a < b;
  return ia < ib;
}

// The linear schedule: after pass t of T, floor(L * (T - 1 - t) / T) positions are masked again.
GMLM_HD int64_t linear_remask_count(int64_t L, int64_t T, int64_t t) { return L * (T - 1 - t) / T; }

// --- scores --------------------------------------------------------------------------------------------
// numpy's pairwise_sum for float64 (numpy/_core/src/umath/loops_utils.h.src): 8 accumulators up to 128
// values, halves above.
GMLM_HD double pairwise_sum(const double* a, int64_t n) {
  if (n < 8) {
    double res = 0.;
    for (int64_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int j = 0; j < 8; ++j) r[j] = a[j];
    int64_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (int j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return pairwise_sum(a, n2) + pairwise_sum(a + n2, n - n2);
}

}  // namespace gmlm::rules
