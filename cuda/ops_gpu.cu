// The ops' CUDA implementations (float32 operands in device memory), the `compute<Device::cuda>`
// cases that ops/dispatch.h selects. They run on the legacy default stream with a per-thread
// cuBLAS handle and synchronise before returning, so that an op call behaves like its CPU twin
// (tests compare them on awkward shapes). The device refinement loop does not go through these:
// it calls the same launchers (cuda/launch.h) on its own stream, with compute types other than
// float32 and with its tables already in device memory, inside CUDA graphs.
#include <cuda_runtime.h>

#include <vector>

#include "cuda/device.h"
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

}  // namespace

template <>
void Gemm::compute<Device::cuda>(ConstMat a, ConstMat b, Mat y, ThreadPool&) const {
  const int64_t M = a.rows, K = a.cols;
  if (M == 0 || y.cols == 0) return;
  if (epilogue != Epilogue::gated_gelu) {
    cuda::gemm_nt(op_cublas(), cuda::CType::float32, a.data, a.ld, b.data, b.ld, y.data, y.ld, M, b.rows, K, alpha, beta);
    if (epilogue == Epilogue::relu)
      cuda::ffn_activation(y.data, y.ld, y.data, cuda::CType::float32, y.ld, M, y.cols, false, 0, nullptr);
  } else {
    // the fused gated weight interleaves wi_0 / wi_1 by column blocks (gated_layout)
    cuda::DeviceBuffer tmp(sizeof(float) * M * b.rows);
    cuda::gemm_nt(op_cublas(), cuda::CType::float32, a.data, a.ld, b.data, b.ld, tmp.as<float>(), b.rows, M, b.rows, K,
                  alpha, 0.f);
    cuda::ffn_activation(tmp.as<float>(), b.rows, y.data, cuda::CType::float32, y.ld, M, y.cols, true,
                         column_block(y.cols), nullptr);
    finish();
    return;
  }
  finish();
}

template <>
void RMSNorm::compute<Device::cuda>(ConstMat x, const float* gamma, Mat y, ThreadPool*) const {
  cuda::rms_norm(x.data, x.ld, gamma, y.data, cuda::CType::float32, y.ld, x.rows, x.cols, eps, 1.f, nullptr);
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
  cuda::embed(table.data, cuda::CType::float32, table.rows, ids, nullptr, nullptr, nullptr, y.data, n, y.cols, nullptr);
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
                  out.data, cuda::CType::float32, out.ld, R, num_heads, head_dim, max_k, nullptr);
  finish();
}

template <>
void VocabArgmax::compute<Device::cuda>(ConstMat h, ConstMat w, int32_t* pred, float* conf, ThreadPool&) const {
  GMLM_CHECK_ARG(row_bias == nullptr, "the vocabulary step's logit bias (blank_penalty) runs on the CPU only");
  const int64_t M = h.rows, V = w.rows, D = h.cols;
  if (M == 0) return;
  constexpr int64_t kChunk = 1024;  // rows of logits per cuBLAS call (a bounded float32 tile)
  const int64_t rows = std::min(M, kChunk);
  cuda::DeviceBuffer logits(sizeof(float) * rows * V);
  for (int64_t r0 = 0; r0 < M; r0 += kChunk) {
    const int64_t nr = std::min(kChunk, M - r0);
    cuda::gemm_nt(op_cublas(), cuda::CType::float32, h.data + r0 * h.ld, h.ld, w.data, w.ld, logits.as<float>(), V, nr, V,
                  D, 1.f, 0.f);
    cuda::vocab_reduce(logits.as<float>(), V, nr, V, pred + r0, conf + r0, nullptr, nullptr);
  }
  finish();
}

}  // namespace gmlm::ops
