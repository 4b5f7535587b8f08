// Host-callable launchers of the CUDA kernels (cuda/kernels/*.cu) and the cuBLAS GEMM (cuda/gemm.cu).
// Plain C++ declarations: the ops (cuda/ops_gpu.cu), the device model and the device refinement
// loop (cuda/cuda_engine.cu) call these; only the .cu files see kernel syntax.
//
// Storage types: activations that feed a GEMM (normed states, attention outputs, FFN activations)
// and the weights are in the compute type CType (float32, float16 or bfloat16); the residual
// stream, GEMM outputs, attention scores and softmax statistics are float32 always.
//
// Shapes as in the CPU engine: R rows (packed sequences), D d_model, I = H * Dh, F d_ff, V vocab.
#pragma once

#include <cstddef>
#include <cstdint>

#include "core/compute_type.h"
#include <cuda_runtime_api.h>

typedef struct cublasContext* cublasHandle_t;

namespace gmlm::cuda {

using CType = ComputeType;   // core/compute_type.h (the CUDA engine runs float32, float16, bfloat16)
std::size_t ctype_size(CType t);

// Throws std::runtime_error("CUDA error ... at file:line") for a failed runtime call.
void check(cudaError_t e, const char* what, const char* file, int line);
#define GMLM_CUDA_CHECK(call) ::gmlm::cuda::check((call), #call, __FILE__, __LINE__)
// The error of the last launch (cudaGetLastError), as check() does.
#define GMLM_CUDA_CHECK_LAUNCH() ::gmlm::cuda::check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)

// --- cuda/gemm.cu -----------------------------------------------------------------------------
// c(M, N) = alpha * a(M, K) . b(N, K)^T + beta * c, row-major with leading dimensions; a and b in
// `t`, c float32, accumulation in float32 (no TF32 for float32 operands).
void gemm_nt(cublasHandle_t handle, CType t, const void* a, int64_t lda, const void* b, int64_t ldb, float* c,
             int64_t ldc, int64_t M, int64_t N, int64_t K, float alpha, float beta);
// A cuBLAS handle bound to `stream` with a fixed workspace (needed for CUDA graph capture).
cublasHandle_t create_cublas(cudaStream_t stream, void* workspace, std::size_t workspace_bytes);
void destroy_cublas(cublasHandle_t h);

// --- cuda/kernels/elementwise.cu --------------------------------------------------------------
// y[r] = gamma * x[r] / sqrt(mean(x[r]^2) + eps) * scale, written as `yt`. x: (R, D) f32.
void rms_norm(const float* x, int64_t ldx, const float* gamma, void* y, CType yt, int64_t ldy, int64_t rows,
              int64_t d, float eps, float scale, cudaStream_t s);
// x[r] = table[id] (+ positions[pos]) with id = ids[map ? map[r] : r], pos = pos_of[map ? map[r] : r];
// a negative map entry is a padding row: x[r] = 0. Ids outside [0, vocab) also give a zero row
// (the binding checks ids before they reach the device). table: (V, D) in `tt`; x: (R, D) f32.
void embed(const void* table, CType tt, int64_t vocab, const int32_t* ids, const int32_t* map, const float* positions,
           const int32_t* pos_of, float* x, int64_t rows, int64_t d, cudaStream_t s);
// FFN activation: relu: y[r, j] = relu(f[r, j]); gated: y[r, j] = gelu_tanh(f[r, i0]) * f[r, i1] with
// the column pairs of a fused [wi_0; wi_1] weight laid out in blocks of `block` columns
// (i0 = 2 c0 + (j - c0), i1 = i0 + min(block, F - c0), c0 = j - j % block); block = F means the plain
// halves [0, F) and [F, 2F). f: (R, F or 2F) f32; y: (R, F) in `yt`.
void ffn_activation(const float* f, int64_t ldf, void* y, CType yt, int64_t ldy, int64_t rows, int64_t F, bool gated,
                    int64_t block, cudaStream_t s);
// y[dst(i)] = x[src(i)] (accumulate: +=) for i in [0, n), rows of `cols` floats; a null index array means the
// identity (ops::CopyRows). x, y f32.
void copy_rows(const float* x, int64_t ldx, const int32_t* src, float* y, int64_t ldy, const int32_t* dst, int64_t n,
               int64_t cols, bool accumulate, cudaStream_t s);
// y *= factor on a (rows, cols) view (ops::Scale).
void scale(float* y, int64_t ldy, int64_t rows, int64_t cols, float factor, cudaStream_t s);
// Host float32 array -> device array of type t (n values), synchronous (weights at load time).
void upload_converted(const float* host, void* dev, CType t, int64_t n);

// --- cuda/kernels/attention.cu ----------------------------------------------------------------
// Multi-head attention of packed sequences, one warp per (query row, head). Query row r attends to
// key rows [k_begin[r], k_begin[r] + k_len[r]) of k and v; with rel_bias (H, 2 max_rel + 1) the
// bias of key j is rel_bias[h, (j - pos) + max_rel], pos = q_pos[r] (clamped to the keys). A row
// with k_len <= 0 is padding and is left untouched. No 1/sqrt(Dh) scaling (T5).
// q (R, H*Dh), k/v (Rk, H*Dh) f32 with leading dimensions; out (R, H*Dh) in `ot`. max_k bounds k_len.
void attention(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
               const int32_t* k_begin, const int32_t* k_len, const int32_t* q_pos, const float* rel_bias,
               int64_t max_rel, void* out, CType ot, int64_t ldo, int64_t rows, int64_t heads, int64_t head_dim,
               int64_t max_k, cudaStream_t s);

// --- cuda/kernels/vocab.cu --------------------------------------------------------------------
// The per-row keys of Gumbel noise (docs/decoding.md, stream 0): row r of the logits is home row
// h = work_home[r] (skipped when < 0), candidate c = home_cand[h], position home_pos[h].
struct NoiseKeys {
  const uint64_t* seed = nullptr;  // device scalar (so a captured graph serves every seed)
  const int32_t* work_home = nullptr;
  const int32_t* home_cand = nullptr;
  const int32_t* home_pos = nullptr;
  const int32_t* cand_k = nullptr;
  const uint64_t* cand_hash = nullptr;
  const int32_t* t = nullptr;      // device iteration counter
  const int32_t* sampling = nullptr;  // device flag: 0 argmax, 1 Gumbel-max
  int64_t row_offset = 0;          // logits row 0 is work row row_offset
};
// For each row of logits (rows, V) f32: logp = log_softmax(row); pred = first argmax of logp (or,
// when keys && *keys->sampling, of float32(logp + gumbel)); conf = logp[pred]. Rows whose
// work_home is negative are skipped (keys given).
void vocab_reduce(const float* logits, int64_t ld, int64_t rows, int64_t V, int32_t* pred, float* conf,
                  const NoiseKeys* keys, cudaStream_t s);

// --- cuda/kernels/refine.cu -------------------------------------------------------------------
// Lowest-confidence / threshold / stutter re-masking of one candidate: the device twin of
// ops::lowest_confidence, ops::threshold_remask and ops::stutter_remask (for tests: one block per
// candidate of the flattened arrays; begin/len per candidate; n per candidate for linear;
// max_len bounds len).
void remask_test(const float* conf, const uint8_t* just, const int32_t* tokens, const int32_t* begin,
                 const int32_t* len, const int64_t* n, int64_t num_cands, bool threshold, double log_threshold,
                 bool stutter, uint8_t* mask, int64_t max_len, cudaStream_t s);
// Length candidates per source b: the k classes of highest log_softmax of logits[row[b]] (n classes,
// ties: the shorter), lengths[b * k + i] = class + 1.
void length_candidates(const float* logits, int64_t ld, const int32_t* row, int64_t num_sources, int64_t n,
                       int64_t k, int32_t* lengths, cudaStream_t s);

// The decoding state in the "home" layout: every length candidate of the batch, rows back to back.
struct LoopState {
  int32_t* tokens = nullptr;   // (R_home)
  float* conf = nullptr;       // (R_home)
  uint8_t* masked = nullptr;   // (R_home)
  int32_t* prev = nullptr;     // (R_home) tokens after the previous pass
  int32_t* in_ids = nullptr;   // (R_home) the next decoder input
  int32_t* history = nullptr;  // (T, R_home) or null
  const int32_t* cand_begin = nullptr, *cand_len = nullptr, *cand_k = nullptr;  // (C)
  const uint64_t* cand_hash = nullptr;                                             // (C)
  const int32_t* home_cand = nullptr, *home_pos = nullptr;                         // (R_home)
  uint8_t* done = nullptr;     // (C)
  int32_t* passes = nullptr;   // (C)
};
// Options of the loop, in device memory so that one captured graph serves any of them.
struct LoopParams {
  int32_t t = 0;              // iteration counter, advanced by advance_iteration()
  int32_t T = 1;
  int32_t threshold = 0;      // remask == "threshold"
  int32_t stutter = 1;
  int32_t update_all = 0;     // update == "all": every position takes the pass's prediction (else the masked)
  int32_t early_stop = 0;     // a pass that changes no token ends the candidate
  int32_t sampling = 0;
  int32_t mask_id = 3;
  int32_t init_random = 0;
  int32_t first_random_id = 5;
  int32_t vocab = 0;
  int32_t R_home = 0;
  int32_t num_cands = 0;
  double log_threshold = 0.0;
  uint64_t seed = 0;
};
// Initial state: every position masked, input mask_id (or the random init token).
void init_state(const LoopState& st, const LoopParams* p, int64_t R_home, int64_t num_cands, cudaStream_t s);
// One candidate per block (work candidate c = home candidate work_cand[c], its rows start at work
// row work_begin[c]): write the predictions into masked positions, count the pass, stop / re-mask,
// and the next decoder input. Skips done candidates and padding entries (work_cand < 0).
void update_candidates(const LoopState& st, const LoopParams* p, const int32_t* work_cand, const int32_t* work_begin,
                       int64_t num_work, const int32_t* pred, const float* pconf, int64_t max_len, cudaStream_t s);
// p->t += 1 (one thread).
void advance_iteration(LoopParams* p, cudaStream_t s);

}  // namespace gmlm::cuda
