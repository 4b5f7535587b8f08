// One task per (segment, head); each runs cpu::attention_head (scores, softmax and the weighted
// sum of values for all its query rows, scores in a per-thread scratch row).
#include "core/scratch.h"
#include "cpu/kernels.h"
#include "ops/attention.h"

namespace gmlm::ops {

template <>
void MultiHeadAttention::compute<Device::cpu>(ConstMat q, const int32_t* q_pos, ConstMat k, ConstMat v,
                                              const std::vector<AttentionSegment>& segs, const float* rel_bias,
                                              int64_t max_rel, Mat out, ThreadPool& pool) const {
  const cpu::Kernels& kern = cpu::kernels();
  const int64_t H = num_heads, Dh = head_dim, n_seg = static_cast<int64_t>(segs.size());
  int64_t work = 0;
  for (const auto& s : segs) work += s.q_len * s.k_len;
  auto task = [&](int64_t t, int) {
    const AttentionSegment& s = segs[t / H];
    const int64_t h = t % H;
    if (s.q_len == 0) return;
    cpu::AttentionHeadArgs a;
    a.q = q.row(s.q_begin) + h * Dh;
    a.ldq = q.ld;
    a.q_pos = q_pos ? q_pos + s.q_begin : nullptr;
    a.k = k.row(s.k_begin) + h * Dh;
    a.v = v.row(s.k_begin) + h * Dh;
    a.ldk = k.ld;
    a.ldv = v.ld;
    a.rel_bias = rel_bias ? rel_bias + h * (2 * max_rel + 1) : nullptr;
    a.max_rel = max_rel;
    a.out = out.row(s.q_begin) + h * Dh;
    a.ldo = out.ld;
    a.nq = s.q_len;
    a.nk = s.k_len;
    a.dh = Dh;
    a.scratch = thread_scratch(1, static_cast<size_t>(cpu::attention_scratch_size(s.k_len, Dh)));
    kern.attention_head(a);
  };
  // tiny inputs (a few short segments): the pool's wake-up would cost more than the work
  if (work * Dh * H < 200000) {
    for (int64_t t = 0; t < n_seg * H; ++t) task(t, 0);
  } else {
    pool.parallel_for(n_seg * H, task);
  }
}

}  // namespace gmlm::ops
