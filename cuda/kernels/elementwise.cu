// Row-wise and element-wise kernels of the T5 layers:
//   rms_norm:       y[r] = gamma * x[r] * rsqrt(mean(x[r]^2) + eps) * scale.
//                   One block of 128 threads per row; the sum of squares is a block reduction
//                   (warp shuffles, then one value per warp in shared memory). Output in the compute type.
//   embed:          x[r] = table[ids[map[r]]] + positions[pos_of[map[r]]]; padding rows (map < 0) are zeroed.
//                   One block of 128 threads per row, columns strided over the threads.
//   ffn_activation: relu, or gelu_tanh(x0) * x1 for the gated FFN (the column pairing of ops::Gemm's
//                   fused gated weight). A 1-D grid of 256-thread blocks over R * F outputs.
// The arithmetic follows the CPU kernels (cpu/kernels_impl.inl) operation for operation; sums are
// in a different order, so results agree to rounding, not bit for bit.
#include <cstdio>
#include <stdexcept>
#include <string>
#include <vector>

#include "cuda/device_common.cuh"

namespace gmlm::cuda {

std::size_t ctype_size(CType t) { return t == CType::float32 ? 4 : 2; }

void check(cudaError_t e, const char* what, const char* file, int line) {
  if (e == cudaSuccess) return;
  throw std::runtime_error(std::string("CUDA error: ") + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) +
                           ") in " + what + " at " + file + ":" + std::to_string(line));
}

namespace {

constexpr int kRowThreads = 128;

template <typename T>
__global__ void rms_norm_kernel(const float* __restrict__ x, int64_t ldx, const float* __restrict__ gamma,
                                T* __restrict__ y, int64_t ldy, int64_t d, float eps, float scale) {
  const int64_t r = blockIdx.x;
  const float* xr = x + r * ldx;
  float ss = 0.f;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) ss += xr[i] * xr[i];
  __shared__ float part[kRowThreads / 32];
  ss = warp_sum(ss);
  if ((threadIdx.x & 31) == 0) part[threadIdx.x >> 5] = ss;
  __syncthreads();
  float tot = 0.f;
  for (int w = 0; w < kRowThreads / 32; ++w) tot += part[w];
  const float inv = 1.0f / sqrtf(tot / static_cast<float>(d) + eps);
  T* yr = y + r * ldy;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float v = gamma[i] * (xr[i] * inv);
    if (scale != 1.f) v = v * scale;
    yr[i] = from_float<T>(v);
  }
}

template <typename T>
__global__ void embed_kernel(const T* __restrict__ table, int64_t vocab, const int32_t* __restrict__ ids,
                             const int32_t* __restrict__ map, const float* __restrict__ positions,
                             const int32_t* __restrict__ pos_of, float* __restrict__ x, int64_t d) {
  const int64_t r = blockIdx.x;
  float* xr = x + r * d;
  const int64_t src = map ? map[r] : r;
  const int32_t id = src >= 0 ? ids[src] : -1;
  if (src < 0 || id < 0 || id >= vocab) {
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) xr[i] = 0.f;
    return;
  }
  const T* tr = table + static_cast<int64_t>(id) * d;
  const float* pr = positions ? positions + static_cast<int64_t>(pos_of[src]) * d : nullptr;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    float v = to_float<T>(tr[i]);
    if (pr) v += pr[i];
    xr[i] = v;
  }
}

template <typename T>
__global__ void ffn_activation_kernel(const float* f, int64_t ldf, T* y, int64_t ldy,  // may alias (relu in place)
                                      int64_t rows, int64_t F, bool gated, int64_t block) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= rows * F) return;
  const int64_t r = e / F, j = e % F;
  const float* fr = f + r * ldf;
  float out;
  if (!gated) {
    const float v = fr[j];
    out = v > 0.f ? v : (v == v ? 0.f : v);  // NaN passes through, as the CPU relu
  } else {
    const int64_t c0 = j - j % block, cw = block < F - c0 ? block : F - c0;
    const int64_t i0 = 2 * c0 + (j - c0), i1 = i0 + cw;
    constexpr float kBeta = 0.7978845608028654f, kKappa = 0.044715f;
    const float v = fr[i0];
    const float inner = kBeta * (v + kKappa * v * v * v);
    out = 0.5f * v * (1.f + tanhf(inner)) * fr[i1];
  }
  y[r * ldy + j] = from_float<T>(out);
}

template <typename T>
__global__ void convert_kernel(const float* __restrict__ x, int64_t ldx, T* __restrict__ y, int64_t ldy, int64_t rows,
                               int64_t cols) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) y[(i / cols) * ldy + i % cols] = from_float<T>(x[(i / cols) * ldx + i % cols]);
}

__global__ void copy_rows_kernel(const float* __restrict__ x, int64_t ldx, const int32_t* __restrict__ src,
                                 float* __restrict__ y, int64_t ldy, const int32_t* __restrict__ dst, int64_t cols,
                                 bool accumulate) {
  const int64_t i = blockIdx.x;
  const float* xr = x + (src ? src[i] : i) * ldx;
  float* yr = y + (dst ? dst[i] : i) * ldy;
  for (int64_t c = threadIdx.x; c < cols; c += blockDim.x) yr[c] = accumulate ? yr[c] + xr[c] : xr[c];
}

__global__ void scale_kernel(float* y, int64_t ldy, int64_t rows, int64_t cols, float s) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < rows * cols) y[(i / cols) * ldy + i % cols] *= s;
}

}  // namespace

void rms_norm(const float* x, int64_t ldx, const float* gamma, void* y, CType yt, int64_t ldy, int64_t rows,
              int64_t d, float eps, float scale, cudaStream_t s) {
  if (rows <= 0) return;
  GMLM_CTYPE_SWITCH(yt, T,
                    rms_norm_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(
                        x, ldx, gamma, static_cast<T*>(y), ldy, d, eps, scale));
  GMLM_CUDA_CHECK_LAUNCH();
}

void embed(const void* table, CType tt, int64_t vocab, const int32_t* ids, const int32_t* map, const float* positions,
           const int32_t* pos_of, float* x, int64_t rows, int64_t d, cudaStream_t s) {
  if (rows <= 0) return;
  GMLM_CTYPE_SWITCH(tt, T,
                    embed_kernel<T><<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(
                        static_cast<const T*>(table), vocab, ids, map, positions, pos_of, x, d));
  GMLM_CUDA_CHECK_LAUNCH();
}

void ffn_activation(const float* f, int64_t ldf, void* y, CType yt, int64_t ldy, int64_t rows, int64_t F, bool gated,
                    int64_t block, cudaStream_t s) {
  if (rows <= 0 || F <= 0) return;
  GMLM_CTYPE_SWITCH(yt, T,
                    ffn_activation_kernel<T><<<blocks_for(rows * F, 256), 256, 0, s>>>(
                        f, ldf, static_cast<T*>(y), ldy, rows, F, gated, block > 0 ? block : F));
  GMLM_CUDA_CHECK_LAUNCH();
}

void copy_rows(const float* x, int64_t ldx, const int32_t* src, float* y, int64_t ldy, const int32_t* dst, int64_t n,
               int64_t cols, bool accumulate, cudaStream_t s) {
  if (n <= 0 || cols <= 0) return;
  copy_rows_kernel<<<static_cast<unsigned>(n), kRowThreads, 0, s>>>(x, ldx, src, y, ldy, dst, cols, accumulate);
  GMLM_CUDA_CHECK_LAUNCH();
}

void scale(float* y, int64_t ldy, int64_t rows, int64_t cols, float factor, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return;
  scale_kernel<<<blocks_for(rows * cols, 256), 256, 0, s>>>(y, ldy, rows, cols, factor);
  GMLM_CUDA_CHECK_LAUNCH();
}

void convert(const float* x, int64_t ldx, void* y, CType t, int64_t ldy, int64_t rows, int64_t cols, cudaStream_t s) {
  if (rows <= 0 || cols <= 0) return;
  GMLM_CTYPE_SWITCH(t, T,
                    convert_kernel<T><<<blocks_for(rows * cols, 256), 256, 0, s>>>(x, ldx, static_cast<T*>(y), ldy,
                                                                                   rows, cols));
  GMLM_CUDA_CHECK_LAUNCH();
}

}  // namespace gmlm::cuda
