// The counter-based hash RNG of docs/decoding.md, bit-identical to common.py: a draw is a pure
// function of (seed, stream, source hash, candidate, iteration, position, vocabulary id), so
// results do not depend on batching or threads.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace gmlm::rng {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;

inline uint64_t mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ULL;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// FNV-1a 64 over the little-endian int32 bytes of the encoder input ids.
inline uint64_t source_hash(const int32_t* ids, int64_t n) {
  uint64_t h = 0xCBF29CE484222325ULL;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t v = static_cast<uint32_t>(ids[i]);
    for (int b = 0; b < 4; ++b) h = (h ^ ((v >> (8 * b)) & 0xFF)) * 0x100000001B3ULL;
  }
  return h;
}

// The hash chain up to (and including) the position; the vocabulary id is mixed last.
inline uint64_t prefix(uint64_t seed, uint64_t stream, uint64_t src_hash, uint64_t k, uint64_t t, uint64_t i) {
  uint64_t h = mix(seed + kGolden);
  for (uint64_t x : {stream, src_hash, k, t, i}) h = mix(h ^ x);
  return h;
}

inline uint64_t draw(uint64_t prefix_hash, uint64_t v) { return mix(prefix_hash ^ v); }

// Gumbel noise: u = ((h >> 40) + 0.5) / 2^24, g = -log(-log(u)) in float64, rounded to float32.
inline float gumbel(uint64_t h) {
  const double u = (static_cast<double>(h >> 40) + 0.5) / 16777216.0;
  return static_cast<float>(-std::log(-std::log(u)));
}

// Random initial token (stream 1, t = 0, v = 0): first_id + (h >> 40) % (V - first_id).
inline int32_t init_token(uint64_t seed, uint64_t src_hash, uint64_t k, uint64_t i, int64_t vocab, int64_t first_id) {
  const uint64_t h = draw(prefix(seed, 1, src_hash, k, 0, i), 0);
  return static_cast<int32_t>(first_id + static_cast<int64_t>((h >> 40) % static_cast<uint64_t>(vocab - first_id)));
}

}  // namespace gmlm::rng
