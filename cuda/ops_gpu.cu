// The ops' CUDA implementations (float32 operands in device memory), the `compute<Device::cuda>`
// cases that ops/dispatch.h selects: the engine's model (models/t5_model.h) and loop
// (decoding/refine.h) run on the GPU through these. They run on the legacy default stream with a
// per-thread cuBLAS handle and synchronise before returning, so that an op call behaves like its CPU
// twin (tests compare them on awkward shapes). A GEMM whose weight has a half-precision copy
// installed (cuda/half_weights.h) computes in that type.
#include <cuda_runtime.h>

#include <algorithm>
#include <vector>

#include "cuda/device.h"
#include "cuda/half_weights.h"
#include "cuda/launch.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/gemm.h"
#include "ops/rms_norm.h"
#include "ops/rows.h"
#include "ops/vocab_argmax.h"

namespace gmlm::ops {

namespace {

cublasHandle_t op_cublas() {
  struct Holder {
    cublasHandle_t h = nullptr;
    ~Holder() { cuda::destroy_cublas(h); }
  };
  thread_local Holder holder;
  if (!holder.h) holder.h = cuda::create_cublas(nullptr, nullptr, 0);
  return holder.h;
}

void finish() {
  GMLM_CUDA_CHECK(cudaGetLastError());
  GMLM_CUDA_CHECK(cudaStreamSynchronize(nullptr));
}

// Per-thread scratch device memory (slot 0: a converted left operand, 1: logits or a gated product).
void* scratch(int slot, std::size_t bytes) {
  thread_local cuda::DeviceBuffer buf[2];
  buf[slot].reserve(bytes);
  return buf[slot].get();
}

// The operands of y = a . b^T as cuBLAS takes them: b's half-precision copy when one is installed, and
// then a converted to its type (in scratch slot 0); else both as they are, float32.
struct Operands {
  cuda::CType type = cuda::CType::float32;
  const void* a;
  int64_t lda;
  const void* b;
  int64_t ldb;
  Operands(ConstMat am, ConstMat bm) : a(am.data), lda(am.ld), b(bm.data), ldb(bm.ld) {
    const cuda::HalfWeights* set = cuda::HalfWeights::current();
    const void* hb = set ? set->find(bm.data, bm.ld) : nullptr;
    if (!hb) return;
    type = set->type();
    b = hb;
    void* conv = scratch(0, cuda::ctype_size(type) * std::max<int64_t>(am.rows * am.cols, 1));
    cuda::convert(am.data, am.ld, conv, type, am.cols, am.rows, am.cols, nullptr);
    a = conv;
    lda = am.cols;
  }
};

}  // namespace

template <>
void Gemm::compute<Device::cuda>(ConstMat a, ConstMat b, Mat y, ThreadPool&) const {
  const int64_t M = a.rows, K = a.cols;
  if (M == 0 || y.cols == 0) return;
  const Operands op(a, b);
  if (epilogue != Epilogue::gated_gelu) {
    cuda::gemm_nt(op_cublas(), op.type, op.a, op.lda, op.b, op.ldb, y.data, y.ld, M, b.rows, K, alpha, beta);
    if (epilogue == Epilogue::relu)
      cuda::ffn_activation(y.data, y.ld, y.data, y.ld, M, y.cols, false, 0, nullptr);
  } else {
    // the fused gated weight interleaves wi_0 / wi_1 by column blocks (gated_layout)
    float* tmp = static_cast<float*>(scratch(1, sizeof(float) * M * b.rows));
    cuda::gemm_nt(op_cublas(), op.type, op.a, op.lda, op.b, op.ldb, tmp, b.rows, M, b.rows, K, alpha, 0.f);
    cuda::ffn_activation(tmp, b.rows, y.data, y.ld, M, y.cols, true, column_block(y.cols), nullptr);
  }
  finish();
}

template <>
void RMSNorm::compute<Device::cuda>(ConstMat x, const float* gamma, Mat y, ThreadPool*) const {
  cuda::rms_norm(x.data, x.ld, gamma, y.data, y.ld, x.rows, x.cols, eps, nullptr);
  finish();
}

template <>
void CopyRows::compute<Device::cuda>(ConstMat x, const int32_t* src_idx, Mat y, const int32_t* dst_idx, int64_t n,
                                     ThreadPool*) const {
  cuda::copy_rows(x.data, x.ld, src_idx, y.data, y.ld, dst_idx, n, x.cols, accumulate, nullptr);
  finish();
}

template <>
void Scale::compute<Device::cuda>(Mat y) const {
  cuda::scale(y.data, y.ld, y.rows, y.cols, s, nullptr);
  finish();
}

template <>
void Embedding::compute<Device::cuda>(ConstMat table, const int32_t* ids, int64_t n, Mat y) const {
  GMLM_CHECK(y.ld == y.cols && table.ld == table.cols, "embedding on cuda needs contiguous rows");
  cuda::embed(table.data, table.rows, ids, y.data, n, y.cols, nullptr);
  finish();
}

template <>
void MultiHeadAttention::compute<Device::cuda>(ConstMat q, const int32_t* q_pos, ConstMat k, ConstMat v,
                                               const std::vector<AttentionSegment>& segs, const float* rel_bias,
                                               int64_t max_rel, Mat out, ThreadPool&) const {
  // per query row: its keys and (without q_pos) its position in the segment; rows outside every
  // segment keep k_len 0 and are not written, as on the CPU
  const int64_t R = q.rows;
  if (R == 0) return;
  std::vector<int32_t> tab(3 * R, 0);
  int64_t max_k = 1;
  for (const AttentionSegment& s : segs) {
    for (int64_t i = 0; i < s.q_len; ++i) {
      tab[s.q_begin + i] = static_cast<int32_t>(s.k_begin);
      tab[R + s.q_begin + i] = static_cast<int32_t>(s.k_len);
      tab[2 * R + s.q_begin + i] = static_cast<int32_t>(i);
    }
    max_k = std::max(max_k, s.k_len);
  }
  cuda::DeviceBuffer d_tab(sizeof(int32_t) * tab.size());
  cuda::copy_to_device(d_tab.get(), tab.data(), sizeof(int32_t) * tab.size());
  const int32_t* t = d_tab.as<int32_t>();
  cuda::attention(q.data, q.ld, k.data, k.ld, v.data, v.ld, t, t + R, q_pos ? q_pos : t + 2 * R, rel_bias, max_rel,
                  out.data, out.ld, R, num_heads, head_dim, max_k, nullptr);
  finish();
}

namespace {
constexpr int64_t kLogitRows = 1024;  // rows of logits per cuBLAS call (a bounded float32 tile)

// The logits of rows [r0, r0 + nr) of h into scratch slot 1: (nr, V), leading dimension V.
float* vocab_logits(ConstMat h, ConstMat w, int64_t r0, int64_t nr) {
  const int64_t V = w.rows;
  float* logits = static_cast<float*>(scratch(1, sizeof(float) * std::min(h.rows, kLogitRows) * V));
  const Operands op(h.sub(r0, nr, 0, h.cols), w);
  cuda::gemm_nt(op_cublas(), op.type, op.a, op.lda, op.b, op.ldb, logits, V, nr, V, h.cols, 1.f, 0.f);
  return logits;
}

// The logits to the host, reduced there (VocabArgmax::reduce_host: the bias, the noise), pred / conf back.
void reduce_on_host(const VocabArgmax& op, ConstMat h, ConstMat w, const VocabArgmax::Noise* noise, int32_t* pred,
                    float* conf) {
  const int64_t M = h.rows, V = w.rows;
  std::vector<float> host(static_cast<size_t>(std::min(M, kLogitRows) * V));
  std::vector<int32_t> p(static_cast<size_t>(M));
  std::vector<float> c(static_cast<size_t>(M));
  for (int64_t r0 = 0; r0 < M; r0 += kLogitRows) {
    const int64_t nr = std::min(kLogitRows, M - r0);
    const float* logits = vocab_logits(h, w, r0, nr);
    finish();
    cuda::copy_to_host(host.data(), logits, sizeof(float) * nr * V);
    op.reduce_host(host.data(), V, nr, V, r0, noise, p.data() + r0, c.data() + r0);
  }
  cuda::copy_to_device(pred, p.data(), sizeof(int32_t) * M);
  cuda::copy_to_device(conf, c.data(), sizeof(float) * M);
}
}  // namespace

template <>
void VocabArgmax::compute<Device::cuda>(ConstMat h, ConstMat w, int32_t* pred, float* conf, ThreadPool&) const {
  const int64_t M = h.rows, V = w.rows;
  if (M == 0) return;
  if (row_bias) {
    reduce_on_host(*this, h, w, nullptr, pred, conf);
    return;
  }
  for (int64_t r0 = 0; r0 < M; r0 += kLogitRows) {
    const int64_t nr = std::min(kLogitRows, M - r0);
    cuda::vocab_reduce(vocab_logits(h, w, r0, nr), V, nr, V, pred + r0, conf + r0, nullptr);
  }
  finish();
}

template <>
void VocabArgmax::compute_sample<Device::cuda>(ConstMat h, ConstMat w, const Noise& noise, int32_t* pred, float* conf,
                                               ThreadPool&) const {
  if (h.rows > 0) reduce_on_host(*this, h, w, &noise, pred, conf);
}

}  // namespace gmlm::ops
