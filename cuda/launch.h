// Host-callable launchers of the CUDA kernels (cuda/kernels/*.cu) and the cuBLAS GEMM (cuda/gemm.cu).
// Plain C++ declarations: the ops (cuda/ops_gpu.cu) call these; only the .cu files see kernel syntax.
//
// Storage types: the ops keep every activation in float32; a GEMM in half precision converts its
// left operand to the compute type CType (float16 or bfloat16) and reads the weight's half copy
// (cuda/half_weights.h); GEMM outputs and accumulation are float32.
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
// y[r] = gamma * x[r] / sqrt(mean(x[r]^2) + eps). x, y: (R, D) f32.
void rms_norm(const float* x, int64_t ldx, const float* gamma, float* y, int64_t ldy, int64_t rows, int64_t d, float eps,
              cudaStream_t s);
// x[r] = table[ids[r]]; an id outside [0, vocab) gives a zero row (ids are checked before they reach the
// device). table: (V, D), x: (R, D) f32, contiguous.
void embed(const float* table, int64_t vocab, const int32_t* ids, float* x, int64_t rows, int64_t d, cudaStream_t s);
// FFN activation: relu: y[r, j] = relu(f[r, j]); gated: y[r, j] = gelu_tanh(f[r, i0]) * f[r, i1] with
// the column pairs of a fused [wi_0; wi_1] weight laid out in blocks of `block` columns
// (i0 = 2 c0 + (j - c0), i1 = i0 + min(block, F - c0), c0 = j - j % block); block = F means the plain
// halves [0, F) and [F, 2F). f: (R, F or 2F) f32; y: (R, F) f32 (may alias f for relu).
void ffn_activation(const float* f, int64_t ldf, float* y, int64_t ldy, int64_t rows, int64_t F, bool gated, int64_t block,
                    cudaStream_t s);
// y[dst(i)] = x[src(i)] (accumulate: +=) for i in [0, n), rows of `cols` floats; a null index array means the
// identity (ops::CopyRows). x, y f32.
void copy_rows(const float* x, int64_t ldx, const int32_t* src, float* y, int64_t ldy, const int32_t* dst, int64_t n,
               int64_t cols, bool accumulate, cudaStream_t s);
// y *= factor on a (rows, cols) view (ops::Scale).
void scale(float* y, int64_t ldy, int64_t rows, int64_t cols, float factor, cudaStream_t s);
// y = x converted to t, a (rows, cols) view with leading dimensions (x f32; the left operand of a
// half-precision GEMM, the weights' half copies: cuda/half_weights.h).
void convert(const float* x, int64_t ldx, void* y, CType t, int64_t ldy, int64_t rows, int64_t cols, cudaStream_t s);

// --- cuda/kernels/attention.cu ----------------------------------------------------------------
// Multi-head attention of packed sequences, one warp per (query row, head). Query row r attends to
// key rows [k_begin[r], k_begin[r] + k_len[r]) of k and v; with rel_bias (H, 2 max_rel + 1) the
// bias of key j is rel_bias[h, (j - pos) + max_rel], pos = q_pos[r] (clamped to the keys). A row
// with k_len <= 0 is padding and is left untouched. No 1/sqrt(Dh) scaling (T5).
// q (R, H*Dh), k/v (Rk, H*Dh), out (R, H*Dh) f32 with leading dimensions. max_k bounds k_len.
void attention(const float* q, int64_t ldq, const float* k, int64_t ldk, const float* v, int64_t ldv,
               const int32_t* k_begin, const int32_t* k_len, const int32_t* q_pos, const float* rel_bias,
               int64_t max_rel, float* out, int64_t ldo, int64_t rows, int64_t heads, int64_t head_dim, int64_t max_k,
               cudaStream_t s);

// --- cuda/kernels/vocab.cu --------------------------------------------------------------------
// For each row of logits (rows, V) f32: logp = log_softmax(row); pred = first argmax of logp; conf = logp[pred].
void vocab_reduce(const float* logits, int64_t ld, int64_t rows, int64_t V, int32_t* pred, float* conf,
                  cudaStream_t s);

}  // namespace gmlm::cuda
