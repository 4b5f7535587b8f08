// The refinement loop's small per-candidate kernels (docs/decoding.md steps 1-4), the device twins
// of ops/select.h and the bookkeeping of decoding/refine.cc:
//   length_candidates  one block (128 threads) per source: log_softmax of the length logits on
//                      thread 0 (the CPU's sequential order), then each thread ranks classes by the
//                      total order (-logp, class) and the top k write their lengths.
//   init_state         1-D grid over max(R_home, C): all positions masked, input <mask> or random.
//   update_candidates  one block (128 threads) per live candidate of the current shape bucket:
//                      write predictions into masked positions, pass count, history, early stop,
//                      re-mask (linear: rank < n by (conf, index); threshold with its at-least-one
//                      rule; stutter), next decoder input. The candidate's L <= max_target_len
//                      positions sit in dynamic shared memory; the ranks are O(L^2) comparisons,
//                      a few thousand per candidate at these lengths, cheaper than a sort.
//   advance_iteration  one thread: t += 1 (so a captured graph can be replayed for every t).
//   remask_test        one block per candidate: remask_block alone, for the op tests.
#include "cuda/device_common.cuh"

namespace gmlm::cuda {

namespace {

constexpr int kThreads = 128;

// The new mask of one candidate from its (shared-memory) conf, just-masked flags and tokens.
// All threads of the block call it; mask is shared memory; counts is 2 shared ints.
__device__ void remask_block(const float* cf, const uint8_t* just, const int32_t* tok, int L, bool threshold,
                             int64_t n, double log_thr, bool stutter, uint8_t* mask, int* counts) {
  if (!threshold) {
    for (int i = threadIdx.x; i < L; i += blockDim.x) {
      if (n <= 0) {
        mask[i] = 0;
      } else if (n >= L) {
        mask[i] = 1;
      } else {
        int rank = 0;
        for (int j = 0; j < L; ++j) rank += conf_less(cf[j], j, cf[i], i);
        mask[i] = rank < n;
      }
    }
  } else {
    if (threadIdx.x == 0) counts[0] = counts[1] = 0;
    __syncthreads();
    for (int i = threadIdx.x; i < L; i += blockDim.x) {
      const bool keep = just[i] && static_cast<double>(cf[i]) < log_thr;
      mask[i] = keep;
      if (just[i]) atomicAdd(&counts[0], 1);
      if (keep) atomicAdd(&counts[1], 1);
    }
    __syncthreads();
    if (counts[0] == counts[1]) {
      // unmask the last position in (conf, index) order among the just-masked (others: -inf)
      for (int i = threadIdx.x; i < L; i += blockDim.x) {
        const float ci = just[i] ? cf[i] : -INFINITY;
        bool last = true;
        for (int j = 0; j < L && last; ++j) {
          const float cj = just[j] ? cf[j] : -INFINITY;
          if (j != i && conf_less(ci, i, cj, j)) last = false;
        }
        if (last) mask[i] = 0;
      }
    }
  }
  __syncthreads();
  if (stutter)
    for (int i = threadIdx.x + 1; i < L; i += blockDim.x)
      if (tok[i] == tok[i - 1]) mask[i] = 1;
  __syncthreads();
}

__global__ void update_kernel(LoopState st, const LoopParams* __restrict__ p, const int32_t* __restrict__ work_cand,
                              const int32_t* __restrict__ work_begin, const int32_t* __restrict__ pred,
                              const float* __restrict__ pconf, int max_len) {
  extern __shared__ unsigned char smem[];
  float* cf = reinterpret_cast<float*>(smem);
  int32_t* tok = reinterpret_cast<int32_t*>(cf + max_len);
  uint8_t* just = reinterpret_cast<uint8_t*>(tok + max_len);
  uint8_t* mask = just + max_len;
  __shared__ int flags[4];  // changed, any masked, threshold counts (2)
  const int32_t c = work_cand[blockIdx.x];
  if (c < 0 || st.done[c]) return;
  const int t = p->t, T = p->T;
  const int64_t b = st.cand_begin[c], w = work_begin[blockIdx.x];
  const int L = st.cand_len[c];
  if (threadIdx.x == 0) flags[0] = flags[1] = 0;
  __syncthreads();
  for (int i = threadIdx.x; i < L; i += blockDim.x) {
    const uint8_t m = st.masked[b + i];
    int32_t tk = st.tokens[b + i];
    float cv = st.conf[b + i];
    if (m || p->update_all) {  // (the GPU computed every row's prediction)
      tk = pred[w + i];
      cv = pconf[w + i];
      st.tokens[b + i] = tk;
      st.conf[b + i] = cv;
    }
    just[i] = m;
    tok[i] = tk;
    cf[i] = cv;
    if (tk != st.prev[b + i]) flags[0] = 1;
    st.prev[b + i] = tk;
    if (st.history) st.history[static_cast<int64_t>(t) * p->R_home + b + i] = tk;
  }
  __syncthreads();
  bool done = (p->early_stop && t >= 1 && !flags[0]) || t == T - 1;
  if (!done) {
    const int64_t n = rules::linear_remask_count(L, T, t);
    remask_block(cf, just, tok, L, p->threshold != 0, n, p->log_threshold, p->stutter != 0, mask, flags + 2);
    for (int i = threadIdx.x; i < L; i += blockDim.x)
      if (mask[i]) flags[1] = 1;
    __syncthreads();
    done = !flags[1];
    if (!done)
      for (int i = threadIdx.x; i < L; i += blockDim.x) {
        st.masked[b + i] = mask[i];
        st.in_ids[b + i] = mask[i] ? p->mask_id : tok[i];
      }
  }
  if (threadIdx.x == 0) {
    st.passes[c] += 1;
    st.done[c] = done;
  }
}

__global__ void remask_test_kernel(const float* conf, const uint8_t* just_in, const int32_t* tokens,
                                   const int32_t* begin, const int32_t* len, const int64_t* n, bool threshold,
                                   double log_thr, bool stutter, uint8_t* out, int max_len) {
  extern __shared__ unsigned char smem[];
  float* cf = reinterpret_cast<float*>(smem);
  int32_t* tok = reinterpret_cast<int32_t*>(cf + max_len);
  uint8_t* just = reinterpret_cast<uint8_t*>(tok + max_len);
  uint8_t* mask = just + max_len;
  __shared__ int counts[2];
  const int64_t b = begin[blockIdx.x];
  const int L = len[blockIdx.x];
  for (int i = threadIdx.x; i < L; i += blockDim.x) {
    cf[i] = conf[b + i];
    tok[i] = tokens[b + i];
    just[i] = just_in[b + i];
  }
  __syncthreads();
  remask_block(cf, just, tok, L, threshold, n[blockIdx.x], log_thr, stutter, mask, counts);
  for (int i = threadIdx.x; i < L; i += blockDim.x) out[b + i] = mask[i];
}

__global__ void length_candidates_kernel(const float* __restrict__ logits, int64_t ld, const int32_t* __restrict__ row,
                                         int n, int k, int32_t* __restrict__ lengths) {
  extern __shared__ float lp[];
  const float* x = logits + static_cast<int64_t>(row[blockIdx.x]) * ld;
  if (threadIdx.x == 0) {
    float m = x[0];
    for (int i = 1; i < n; ++i) m = x[i] > m ? x[i] : m;
    float s = 0.f;
    for (int i = 0; i < n; ++i) s += expf(x[i] - m);
    const float lse = logf(s);
    for (int i = 0; i < n; ++i) lp[i] = -((x[i] - m) - lse);  // ascending -lp = descending lp
  }
  __syncthreads();
  for (int c = threadIdx.x; c < n; c += blockDim.x) {
    int rank = 0;
    for (int j = 0; j < n; ++j) rank += conf_less(lp[j], j, lp[c], c);
    if (rank < k) lengths[static_cast<int64_t>(blockIdx.x) * k + rank] = c + 1;
  }
}

__global__ void init_kernel(LoopState st, const LoopParams* __restrict__ p, int64_t R_home, int64_t C) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < R_home) {
    const int32_t mask_id = p->mask_id;
    int32_t in = mask_id;
    if (p->init_random) {
      const int32_t c = st.home_cand[i];
      in = rules::init_token(p->seed, st.cand_hash[c], static_cast<uint64_t>(st.cand_k[c]),
                             static_cast<uint64_t>(st.home_pos[i]), p->vocab, p->first_random_id);
    }
    st.tokens[i] = mask_id;
    st.prev[i] = mask_id;
    st.conf[i] = 0.f;
    st.masked[i] = 1;
    st.in_ids[i] = in;
  }
  if (i < C) {
    st.done[i] = 0;
    st.passes[i] = 0;
  }
}

__global__ void advance_kernel(LoopParams* p) { p->t += 1; }

size_t candidate_smem(int64_t max_len) { return static_cast<size_t>(max_len) * (4 + 4 + 1 + 1) + 16; }

}  // namespace

void remask_test(const float* conf, const uint8_t* just, const int32_t* tokens, const int32_t* begin,
                 const int32_t* len, const int64_t* n, int64_t num_cands, bool threshold, double log_threshold,
                 bool stutter, uint8_t* mask, int64_t max_len, cudaStream_t s) {
  if (num_cands <= 0) return;
  remask_test_kernel<<<static_cast<unsigned>(num_cands), kThreads, candidate_smem(max_len), s>>>(
      conf, just, tokens, begin, len, n, threshold, log_threshold, stutter, mask, static_cast<int>(max_len));
  GMLM_CUDA_CHECK_LAUNCH();
}

void length_candidates(const float* logits, int64_t ld, const int32_t* row, int64_t num_sources, int64_t n,
                       int64_t k, int32_t* lengths, cudaStream_t s) {
  if (num_sources <= 0) return;
  length_candidates_kernel<<<static_cast<unsigned>(num_sources), kThreads, sizeof(float) * n, s>>>(
      logits, ld, row, static_cast<int>(n), static_cast<int>(k), lengths);
  GMLM_CUDA_CHECK_LAUNCH();
}

void init_state(const LoopState& st, const LoopParams* p, int64_t R_home, int64_t num_cands, cudaStream_t s) {
  const int64_t n = R_home > num_cands ? R_home : num_cands;
  if (n <= 0) return;
  init_kernel<<<blocks_for(n, 256), 256, 0, s>>>(st, p, R_home, num_cands);
  GMLM_CUDA_CHECK_LAUNCH();
}

void update_candidates(const LoopState& st, const LoopParams* p, const int32_t* work_cand, const int32_t* work_begin,
                       int64_t num_work, const int32_t* pred, const float* pconf, int64_t max_len, cudaStream_t s) {
  if (num_work <= 0) return;
  update_kernel<<<static_cast<unsigned>(num_work), kThreads, candidate_smem(max_len), s>>>(
      st, p, work_cand, work_begin, pred, pconf, static_cast<int>(max_len));
  GMLM_CUDA_CHECK_LAUNCH();
}

void advance_iteration(LoopParams* p, cudaStream_t s) {
  advance_kernel<<<1, 1, 0, s>>>(p);
  GMLM_CUDA_CHECK_LAUNCH();
}

}  // namespace gmlm::cuda
