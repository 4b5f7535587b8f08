// The vocabulary step, fused: for each selected decoder state h[r] (already normed and scaled),
//   logits = h[r] . W^T (W: (V, D)),  logp = log_softmax(logits),
//   pred[r] = argmax_v logp[v] (+ g[r, v] when sampling: Gumbel-max), first maximum on ties,
//   conf[r] = logp[pred[r]].
// The logits are never stored whole: tiles of (row block x kVocabBlock columns) go through one
// BLAS call each and are reduced to (max, first argmax, sum exp) while in cache; the blocks are
// then merged per row in column order (so the result does not depend on the thread count).
//
// sample(): Gumbel-max sampling, pred[r] = argmax_v float32(logp[r, v] + g_r[v]); it keeps the
// logits of one row block at a time (logp is needed for every v). The noise comes from a host callback;
// on cuda the logits come to the host for it (reduce_host), as they do for a logit bias.
//
// Shapes: h (M, D), W (V, D) -> pred (M), conf (M).
#pragma once

#include <cstdint>
#include <functional>

#include "core/matrix.h"
#include "core/thread_pool.h"

namespace gmlm::ops {

struct VocabArgmax {
  static constexpr int64_t kVocabBlock = 256;
  // Optional: row r's logit of column bias_col is lowered by row_bias[r] before everything else (a ctc
  // model's blank_penalty, docs/decoding.md). pred and conf are where h is (host or device memory).
  int32_t bias_col = -1;
  const float* row_bias = nullptr;
  // Optional, with row_bias (host memory): each row's log-probability of column bias_col, its bias included,
  // as log_softmax computes it ((x - max) - lse).
  float* bias_lp = nullptr;
  static constexpr int64_t kLowpChunk = 8;  // low precision: vocabulary blocks per oneDNN call
  // noise(r, g): writes the V Gumbel values of row r into g
  using Noise = std::function<void(int64_t row, float* g)>;

  void operator()(ConstMat h, ConstMat w, int32_t* pred, float* conf, ThreadPool& pool) const;
  void sample(ConstMat h, ConstMat w, const Noise& noise, int32_t* pred, float* conf, ThreadPool& pool) const;

  // The reduction of logits already computed and stored on the host (rows, V) with leading dimension ld: the
  // bias applied in place, then pred / conf of each row as above (noise: Gumbel-max; null: argmax). Row r is
  // row row0 + r of the op's rows (for row_bias and noise). The device ops' path for a logit bias and for sampling.
  void reduce_host(float* logits, int64_t ld, int64_t rows, int64_t V, int64_t row0, const Noise* noise,
                   int32_t* pred, float* conf) const;

  template <Device D>
  void compute(ConstMat h, ConstMat w, int32_t* pred, float* conf, ThreadPool& pool) const;
  template <Device D>
  void compute_sample(ConstMat h, ConstMat w, const Noise& noise, int32_t* pred, float* conf, ThreadPool& pool) const;
};

// Gumbel-max over one row: pred = first argmax_v of float32(((x[v] - max) - lse) + g[v]),
// conf = (x[pred] - max) - lse (logp as log_softmax computes it).
inline void gumbel_argmax(const float* x, int64_t V, float max, float lse, const float* g, int32_t* pred,
                          float* conf) {
  int32_t best = 0;
  float best_val = ((x[0] - max) - lse) + g[0];
  for (int64_t v = 1; v < V; ++v) {
    const float val = ((x[v] - max) - lse) + g[v];
    if (val > best_val) {
      best_val = val;
      best = static_cast<int32_t>(v);
    }
  }
  *pred = best;
  *conf = (x[best] - max) - lse;
}

}  // namespace gmlm::ops
