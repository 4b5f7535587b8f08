// Fused multi-head attention for short packed sequences (T5: no 1/sqrt(Dh) scaling, relative
// position bias on self-attention, no padding inside a sequence: a query row's keys are exactly
// the rows of its own sequence, given per query row as [k_begin, k_begin + k_len)).
//   out[r, h] = sum_j softmax_j(q[r, h] . k[kb + j, h] + bias_h(j - pos_r)) v[kb + j, h]
// Launch: grid (ceil(R / 4), H), 128 threads = 4 warps, one warp per (query row, head).
// The warp computes the k_len scores into its slice of dynamic shared memory (lane j takes keys
// j, j + 32, ...; max_k floats per warp), reduces max and sum with shuffles, then each lane owns
// head dimensions d, d + 32, ... of the output. Sequences here are at most a few hundred tokens, so
// one pass with all scores in shared memory is simplest and fast enough; rows with k_len <= 0
// (padding of a shape bucket) are skipped without writing.
#include <stdexcept>
#include <string>

#include "cuda/device_common.cuh"

namespace gmlm::cuda {

namespace {

constexpr int kWarps = 4;

__global__ void attention_kernel(const float* __restrict__ q, int64_t ldq, const float* __restrict__ k, int64_t ldk,
                                 const float* __restrict__ v, int64_t ldv, const int32_t* __restrict__ k_begin,
                                 const int32_t* __restrict__ k_len, const int32_t* __restrict__ q_pos,
                                 const float* __restrict__ rel_bias, int64_t max_rel, float* __restrict__ out,
                                 int64_t ldo, int64_t rows, int64_t Dh, int64_t max_k) {
  extern __shared__ float smem[];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const int64_t h = blockIdx.y;
  if (r >= rows) return;
  int64_t kl = k_len[r];
  if (kl <= 0) return;
  if (kl > max_k) kl = max_k;
  const int64_t kb = k_begin[r];
  float* s = smem + warp * max_k;
  const float* qr = q + r * ldq + h * Dh;
  const int64_t pos = q_pos ? q_pos[r] : 0;
  const float* bias = rel_bias ? rel_bias + h * (2 * max_rel + 1) : nullptr;
  for (int64_t j = lane; j < kl; j += 32) {
    const float* kr = k + (kb + j) * ldk + h * Dh;
    float acc = 0.f;
    for (int64_t d = 0; d < Dh; ++d) acc += qr[d] * kr[d];
    if (bias) {
      int64_t rel = j - pos;
      rel = rel < -max_rel ? -max_rel : (rel > max_rel ? max_rel : rel);
      acc += bias[rel + max_rel];
    }
    s[j] = acc;
  }
  __syncwarp();
  float m = -INFINITY;
  for (int64_t j = lane; j < kl; j += 32) m = fmaxf(m, s[j]);
  m = warp_max(m);
  float sum = 0.f;
  for (int64_t j = lane; j < kl; j += 32) {
    const float e = expf(s[j] - m);
    s[j] = e;
    sum += e;
  }
  sum = warp_sum(sum);
  __syncwarp();
  const float inv = 1.0f / sum;
  for (int64_t d = lane; d < Dh; d += 32) {
    const float* vd = v + kb * ldv + h * Dh + d;
    float acc = 0.f;
    for (int64_t j = 0; j < kl; ++j) acc += (s[j] * inv) * vd[j * ldv];
    out[r * ldo + h * Dh + d] = acc;
  }
}

}  // namespace

void attention(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
               const int32_t* k_begin, const int32_t* k_len, const int32_t* q_pos, const float* rel_bias,
               int64_t max_rel, float* out, int64_t ldo, int64_t rows, int64_t heads, int64_t head_dim,
               int64_t max_k, cudaStream_t s) {
  if (rows <= 0) return;
  if (max_k < 1 || max_k > 3072)  // 4 warps x max_k floats must fit the default 48 KiB of shared memory
    throw std::invalid_argument("cuda attention: " + std::to_string(max_k) + " keys per row (at most 3072)");
  const dim3 grid(blocks_for(rows, kWarps), static_cast<unsigned>(heads));
  const size_t smem = sizeof(float) * kWarps * static_cast<size_t>(max_k);
  attention_kernel<<<grid, kWarps * 32, smem, s>>>(q, ldq, k, ldk, v, ldv, k_begin, k_len, q_pos, rel_bias, max_rel,
                                                    out, ldo, rows, head_dim, max_k);
  GMLM_CUDA_CHECK_LAUNCH();
}

}  // namespace gmlm::cuda
