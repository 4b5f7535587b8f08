// Device helpers shared by the kernels: storage-type conversion, warp reductions.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/launch.h"

namespace gmlm::cuda {

template <typename T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_float<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

// Run the statements with T the storage type of t: GMLM_CTYPE_SWITCH(t, T, kernel<T><<<...>>>(...));
#define GMLM_CTYPE_SWITCH(t, T, ...)                        \
  switch (t) {                                              \
    case ::gmlm::cuda::CType::float32: {                        \
      using T = float;                                      \
      __VA_ARGS__;                                          \
    } break;                                                \
    case ::gmlm::cuda::CType::float16: {                        \
      using T = __half;                                     \
      __VA_ARGS__;                                          \
    } break;                                                \
    case ::gmlm::cuda::CType::bfloat16: {                       \
      using T = __nv_bfloat16;                              \
      __VA_ARGS__;                                          \
    } break;                                                \
    default: /* int8: the CPU's type, refused at load */    \
      break;                                                \
  }

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

inline unsigned blocks_for(int64_t n, int threads) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace gmlm::cuda
