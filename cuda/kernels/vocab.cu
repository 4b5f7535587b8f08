// The vocabulary step's reduction, fused: for each row of logits (the selected decoder states
// times the output embedding, computed by cuBLAS into a float32 tile of at most a few thousand rows):
//   m = max, pred = first index of m, lse = log(sum exp(x - m)), conf = (m - m) - lse
// (logp at the argmax as log_softmax computes it). Sampling and a logit bias reduce on the host
// (ops::reduce_logits, called by cuda/ops_gpu.cu).
// Launch: one block of 256 threads per row; each pass strides the V columns over the threads and
// ends in a block reduction (warp shuffles, then 8 per-warp values in shared memory). The logits
// tile is read 2 times from L2/HBM; V * 4 bytes per row.
#include "cuda/device_common.cuh"

namespace gmlm::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float block_max(float v, float* sh) {
  v = warp_max(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = sh[0];
  for (int w = 1; w < kThreads / 32; ++w) r = fmaxf(r, sh[w]);
  return r;
}

__device__ float block_sum(float v, float* sh) {
  v = warp_sum(v);
  __syncthreads();
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = 0.f;
  for (int w = 0; w < kThreads / 32; ++w) r += sh[w];
  return r;
}

// (value, index): larger value first, then lower index.
__device__ void block_argmax(float& val, int& idx, float* shv, int* shi) {
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, val, o);
    const int oi = __shfl_xor_sync(0xffffffffu, idx, o);
    if (ov > val || (ov == val && oi < idx)) {
      val = ov;
      idx = oi;
    }
  }
  __syncthreads();
  if ((threadIdx.x & 31) == 0) {
    shv[threadIdx.x >> 5] = val;
    shi[threadIdx.x >> 5] = idx;
  }
  __syncthreads();
  val = shv[0];
  idx = shi[0];
  for (int w = 1; w < kThreads / 32; ++w)
    if (shv[w] > val || (shv[w] == val && shi[w] < idx)) {
      val = shv[w];
      idx = shi[w];
    }
}

__global__ void vocab_reduce_kernel(const float* __restrict__ logits, int64_t ld, int64_t V, int32_t* __restrict__ pred,
                                    float* __restrict__ conf) {
  __shared__ float shv[kThreads / 32];
  __shared__ int shi[kThreads / 32];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * ld;
  float m = -INFINITY;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) m = fmaxf(m, x[v]);
  m = block_max(m, shv);
  int first = static_cast<int>(V);
  for (int64_t v = threadIdx.x; v < V; v += kThreads)
    if (x[v] == m) {
      first = static_cast<int>(v);
      break;
    }
  float fv = 0.f;
  block_argmax(fv, first, shv, shi);  // equal values: the lowest index
  if (first >= V) first = 0;          // all-NaN row
  float s = 0.f;
  for (int64_t v = threadIdx.x; v < V; v += kThreads) s += expf(x[v] - m);
  const float lse = logf(block_sum(s, shv));
  if (threadIdx.x == 0) {
    pred[r] = first;
    conf[r] = (m - m) - lse;
  }
}

}  // namespace

void vocab_reduce(const float* logits, int64_t ld, int64_t rows, int64_t V, int32_t* pred, float* conf,
                  cudaStream_t s) {
  if (rows <= 0) return;
  vocab_reduce_kernel<<<static_cast<unsigned>(rows), kThreads, 0, s>>>(logits, ld, V, pred, conf);
  GMLM_CUDA_CHECK_LAUNCH();
}

}  // namespace gmlm::cuda
