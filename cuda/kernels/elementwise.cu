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

__global__ void rms_norm_kernel(const float* __restrict__ x, int64_t ldx, const float* __restrict__ gamma,
                                float* __restrict__ y, int64_t ldy, int64_t d, float eps) {
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
  float* yr = y + r * ldy;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) yr[i] = gamma[i] * (xr[i] * inv);
}

__global__ void embed_kernel(const float* __restrict__ table, int64_t vocab, const int32_t* __restrict__ ids,
                             float* __restrict__ x, int64_t d) {
  const int64_t r = blockIdx.x;
  float* xr = x + r * d;
  const int32_t id = ids[r];
  const float* tr = id >= 0 && id < vocab ? table + static_cast<int64_t>(id) * d : nullptr;
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) xr[i] = tr ? tr[i] : 0.f;
}

__global__ void ffn_activation_kernel(const float* f, int64_t ldf, float* y, int64_t ldy,  // may alias (relu in place)
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
  y[r * ldy + j] = out;
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

void rms_norm(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows, int64_t d, float eps,
              cudaStream_t s) {
  if (rows <= 0) return;
  rms_norm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(x, ldx, gamma, y, ldy, d, eps);
  GMLM_CUDA_CHECK_LAUNCH();
}

void embed(const float* table, int64_t vocab, const int32_t* ids, float* x, int64_t rows, int64_t d, cudaStream_t s) {
  if (rows <= 0) return;
  embed_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, s>>>(table, vocab, ids, x, d);
  GMLM_CUDA_CHECK_LAUNCH();
}

void ffn_activation(const float* f, int64_t ldf, float* y, int64_t ldy, int64_t rows, int64_t F, bool gated, int64_t block,
                    cudaStream_t s) {
  if (rows <= 0 || F <= 0) return;
  ffn_activation_kernel<<<blocks_for(rows * F, 256), 256, 0, s>>>(f, ldf, y, ldy, rows, F, gated, block > 0 ? block : F);
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
