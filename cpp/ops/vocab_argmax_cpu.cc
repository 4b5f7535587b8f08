#include <atomic>
#include <chrono>
#include <cmath>
#include <vector>

#include "core/profiler.h"
#include "core/scratch.h"
#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "cpu/lowp.h"
#include "ops/gemm.h"
#include "ops/vocab_argmax.h"

namespace gmlm::ops {

namespace {
struct Partial {
  float max;
  int32_t argmax;
  float sumexp;
};

// Merge the column blocks of one row (in block order): global max, its first index, log-sum-exp.
inline void merge_row(const Partial* p, int64_t n_blocks, int64_t block, float* max, int32_t* argmax, float* lse) {
  float m = p[0].max;
  int32_t am = p[0].argmax;
  for (int64_t b = 1; b < n_blocks; ++b)
    if (p[b].max > m) {
      m = p[b].max;
      am = static_cast<int32_t>(b * block + p[b].argmax);
    }
  double s = 0;
  for (int64_t b = 0; b < n_blocks; ++b) s += static_cast<double>(p[b].sumexp) * std::exp(double(p[b].max) - double(m));
  *max = m;
  *argmax = am;
  *lse = std::log(static_cast<float>(s));
}
}  // namespace

void VocabArgmax::reduce_host(float* logits, int64_t ld, int64_t rows, int64_t V, int64_t row0, const Noise* noise,
                              int32_t* pred, float* conf) const {
  const int64_t CB = kVocabBlock, n_cb = (V + CB - 1) / CB;
  const cpu::Kernels& k = cpu::kernels();
  std::vector<Partial> part(static_cast<size_t>(n_cb));
  std::vector<float> g(noise ? static_cast<size_t>(V) : 0);
  const bool biased = row_bias != nullptr && bias_col >= 0 && bias_col < V;
  for (int64_t r = 0; r < rows; ++r) {
    float* x = logits + r * ld;
    if (biased) x[bias_col] -= row_bias[row0 + r];
    for (int64_t b = 0; b < n_cb; ++b)
      k.max_argmax_sumexp(x + b * CB, std::min(CB, V - b * CB), &part[b].max, &part[b].argmax, &part[b].sumexp);
    float m, lse;
    int32_t am;
    merge_row(part.data(), n_cb, CB, &m, &am, &lse);
    if (noise) {
      (*noise)(row0 + r, g.data());
      gumbel_argmax(x, V, m, lse, g.data(), &pred[r], &conf[r]);
    } else {
      pred[r] = am;
      conf[r] = (m - m) - lse;
    }
    if (biased && bias_lp) bias_lp[row0 + r] = (x[bias_col] - m) - lse;
  }
}

template <>
void VocabArgmax::compute<Device::cpu>(ConstMat h, ConstMat w, int32_t* pred, float* conf, ThreadPool& pool) const {
  const int64_t M = h.rows, V = w.rows, D = h.cols;
  if (M == 0) return;
  const int64_t RB = Gemm::kRowBlock, CB = kVocabBlock;
  const int64_t n_cb = (V + CB - 1) / CB;
  const cpu::Kernels& k = cpu::kernels();
  int64_t wrow = 0;  // the output embedding in its low-precision type, when one is installed (cpu/lowp.h)
  const cpu::LowpWeights* set = cpu::LowpWeights::current();
  const cpu::LowpWeights::Weight* lw = set ? set->find(w.data, w.ld, &wrow) : nullptr;
  const uint64_t call = lw ? cpu::next_call_id() : 0;
  std::vector<Partial> part(static_cast<size_t>(M * n_cb));
  Profiler* prof = Profiler::current();
  const bool biased = row_bias != nullptr && bias_col >= 0 && bias_col < V;
  std::vector<float> bias_logit(biased && bias_lp ? static_cast<size_t>(M) : 0);
  std::atomic<int64_t> gemm_ns{0}, reduce_ns{0};
  // low precision: one oneDNN call per chunk of kLowpChunk blocks (a call costs microseconds to
  // launch), then the same per-block reductions
  const int64_t per_task = lw ? kLowpChunk : 1;
  const int64_t n_tasks_c = (n_cb + per_task - 1) / per_task;
  const int64_t rb = lw ? Gemm::kLowpRowBlock : RB;
  const int64_t n_rbt = (M + rb - 1) / rb;
  pool.parallel_for(n_rbt * n_tasks_c, [&](int64_t task, int) {
    const int64_t r0 = (task / n_tasks_c) * rb, b0 = (task % n_tasks_c) * per_task, c0 = b0 * CB;
    const int64_t rows = std::min(rb, M - r0), cols = std::min(per_task * CB, V - c0);
    float* tile = thread_scratch(0, static_cast<size_t>(rows * cols));
    const auto t0 = prof ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    if (lw)
      cpu::lowp_gemm_nt(*lw, wrow + c0, rows, cols, h.row(r0), h.ld, 0.f, tile, cols, call);
    else
      cpu::sgemm_nt(rows, cols, D, 1.f, h.row(r0), h.ld, w.row(c0), w.ld, 0.f, tile, cols);
    if (biased && bias_col >= c0 && bias_col < c0 + cols)
      for (int64_t r = 0; r < rows; ++r) {
        float& x = tile[r * cols + (bias_col - c0)];
        x -= row_bias[r0 + r];
        if (bias_lp) bias_logit[r0 + r] = x;
      }
    const auto t1 = prof ? std::chrono::steady_clock::now() : t0;
    for (int64_t b = b0; b < std::min(b0 + per_task, n_cb); ++b) {
      const int64_t off = (b - b0) * CB, bw = std::min(CB, V - b * CB);
      for (int64_t r = 0; r < rows; ++r) {
        Partial& p = part[(r0 + r) * n_cb + b];
        k.max_argmax_sumexp(tile + r * cols + off, bw, &p.max, &p.argmax, &p.sumexp);
      }
    }
    if (prof) {
      const auto t2 = std::chrono::steady_clock::now();
      gemm_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
      reduce_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t1).count();
    }
  });
  if (prof) {
    prof->vocab_gemm_thread_seconds += gemm_ns.load() * 1e-9;
    prof->vocab_reduce_thread_seconds += reduce_ns.load() * 1e-9;
  }
  for (int64_t r = 0; r < M; ++r) {
    float m, lse;
    merge_row(&part[r * n_cb], n_cb, CB, &m, &pred[r], &lse);
    conf[r] = (m - m) - lse;  // logp at the argmax, as log_softmax computes it: (x - max) - lse
    if (!bias_logit.empty()) bias_lp[r] = (bias_logit[r] - m) - lse;
  }
}

template <>
void VocabArgmax::compute_sample<Device::cpu>(ConstMat h, ConstMat w, const Noise& noise, int32_t* pred, float* conf,
                                              ThreadPool& pool) const {
  const int64_t M = h.rows, V = w.rows, D = h.cols;
  if (M == 0) return;
  const int64_t RB = Gemm::kRowBlock, CB = kVocabBlock;
  const int64_t n_cb = (V + CB - 1) / CB;
  const cpu::Kernels& k = cpu::kernels();
  int64_t wrow = 0;  // the output embedding in its low-precision type, when one is installed (cpu/lowp.h)
  const cpu::LowpWeights* set = cpu::LowpWeights::current();
  const cpu::LowpWeights::Weight* lw = set ? set->find(w.data, w.ld, &wrow) : nullptr;
  const uint64_t call = lw ? cpu::next_call_id() : 0;
  std::vector<Partial> part(static_cast<size_t>(std::min(M, RB) * n_cb));
  std::vector<float> logits(static_cast<size_t>(std::min(M, RB) * V));
  const bool biased = row_bias != nullptr && bias_col >= 0 && bias_col < V;
  for (int64_t r0 = 0; r0 < M; r0 += RB) {
    const int64_t nr = std::min(RB, M - r0);
    // logits of this row block, whole, with the per-block reductions
    const int64_t per_task = lw ? kLowpChunk : 1;
    pool.parallel_for((n_cb + per_task - 1) / per_task, [&](int64_t task, int) {
      const int64_t b0 = task * per_task, c0 = b0 * CB, cols = std::min(per_task * CB, V - c0);
      float* tile = logits.data() + c0;
      if (lw)
        cpu::lowp_gemm_nt(*lw, wrow + c0, nr, cols, h.row(r0), h.ld, 0.f, tile, V, call);
      else
        cpu::sgemm_nt(nr, cols, D, 1.f, h.row(r0), h.ld, w.row(c0), w.ld, 0.f, tile, V);
      if (biased && bias_col >= c0 && bias_col < c0 + cols)
        for (int64_t r = 0; r < nr; ++r) tile[r * V + (bias_col - c0)] -= row_bias[r0 + r];
      for (int64_t b = b0; b < std::min(b0 + per_task, n_cb); ++b) {
        const int64_t bw = std::min(CB, V - b * CB);
        for (int64_t r = 0; r < nr; ++r) {
          Partial& p = part[r * n_cb + b];
          k.max_argmax_sumexp(logits.data() + r * V + b * CB, bw, &p.max, &p.argmax, &p.sumexp);
        }
      }
    });
    pool.parallel_for(nr, [&](int64_t r, int) {
      float m, lse;
      int32_t am;
      merge_row(&part[r * n_cb], n_cb, CB, &m, &am, &lse);
      float* g = thread_scratch(2, static_cast<size_t>(V));
      noise(r0 + r, g);
      gumbel_argmax(logits.data() + r * V, V, m, lse, g, &pred[r0 + r], &conf[r0 + r]);
      if (biased && bias_lp) bias_lp[r0 + r] = (logits[r * V + bias_col] - m) - lse;
    });
  }
}

}  // namespace gmlm::ops
