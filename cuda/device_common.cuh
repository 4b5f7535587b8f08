// Device helpers shared by the kernels: storage-type conversion, warp/block reductions, the total
// (confidence, index) order of ops/select.h, and the hash RNG of decoding/rng.h on the device.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/launch.h"

namespace gmlm::cuda {

template <typename T> __device__ __forceinline__ float to_float(T x);
template <> __device__ __forceinline__ float to_float<float>(float x) { return x; }
template <> __device__ __forceinline__ float to_float<__half>(__half x) { return __half2float(x); }
template <> __device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Run the statements with T the storage type of t: GMLM_CTYPE_SWITCH(t, T, kernel<T><<<...>>>(...));
#define GMLM_CTYPE_SWITCH(t, T, ...)                        \
  switch (t) {                                              \
    case ::gmlm::cuda::CType::f32: {                        \
      using T = float;                                      \
      __VA_ARGS__;                                          \
    } break;                                                \
    case ::gmlm::cuda::CType::f16: {                        \
      using T = __half;                                     \
      __VA_ARGS__;                                          \
    } break;                                                \
    case ::gmlm::cuda::CType::bf16: {                       \
      using T = __nv_bfloat16;                              \
      __VA_ARGS__;                                          \
    } break;                                                \
  }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// (conf, index) ascending with NaN above +inf: ops/select.cc's conf_less.
__device__ __forceinline__ bool conf_less(float a, int ia, float b, int ib) {
  const bool na = isnan(a), nb = isnan(b);
  if (na != nb) return nb;
  if (!na && a != b) return a < b;
  return ia < ib;
}

// --- hash RNG (decoding/rng.h) ----------------------------------------------------------------
constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ULL;
__device__ __forceinline__ uint64_t mix(uint64_t z) {
  z ^= z >> 30;
  z *= 0xBF58476D1CE4E5B9ULL;
  z ^= z >> 27;
  z *= 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}
__device__ __forceinline__ uint64_t rng_prefix(uint64_t seed, uint64_t stream, uint64_t src_hash, uint64_t k,
                                               uint64_t t, uint64_t i) {
  uint64_t h = mix(seed + kGolden);
  h = mix(h ^ stream);
  h = mix(h ^ src_hash);
  h = mix(h ^ k);
  h = mix(h ^ t);
  return mix(h ^ i);
}
__device__ __forceinline__ float gumbel(uint64_t h) {
  const double u = (static_cast<double>(h >> 40) + 0.5) / 16777216.0;
  return static_cast<float>(-log(-log(u)));
}

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace gmlm::cuda
