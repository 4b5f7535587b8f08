#include "ops/attention.h"

#include "core/profiler.h"
#include "ops/dispatch.h"

namespace gmlm::ops {

void MultiHeadAttention::operator()(ConstMat q, const int32_t* q_pos, ConstMat k, ConstMat v,
                                    const std::vector<AttentionSegment>& segs, const float* rel_bias,
                                    int64_t max_rel, Mat out, ThreadPool& pool) const {
  const int64_t inner = num_heads * head_dim;
  GMLM_CHECK(q.cols == inner && k.cols == inner && v.cols == inner && out.cols == inner && out.rows == q.rows &&
                 k.rows == v.rows,
             "attention: q (", q.rows, ", ", q.cols, ") k (", k.rows, ", ", k.cols, ") v (", v.rows, ", ", v.cols,
             ") out (", out.rows, ", ", out.cols, ") for ", num_heads, " heads of ", head_dim);
  for (const AttentionSegment& s : segs) {
    GMLM_CHECK(s.q_begin >= 0 && s.q_len >= 0 && s.q_begin + s.q_len <= q.rows && s.k_begin >= 0 && s.k_len >= 1 &&
                   s.k_begin + s.k_len <= k.rows,
               "attention: segment q [", s.q_begin, ", +", s.q_len, ") k [", s.k_begin, ", +", s.k_len, ")");
    if (rel_bias) {
      GMLM_CHECK(s.k_len - 1 <= max_rel, "attention: ", s.k_len, " keys exceed the bias table (", max_rel, ")");
      // q_pos is device memory for cuda operands (the CUDA kernel clamps positions instead)
      for (int64_t i = 0; q.device == Device::cpu && i < s.q_len; ++i) {
        const int64_t p = q_pos ? q_pos[s.q_begin + i] : i;
        GMLM_CHECK(p >= 0 && p < s.k_len, "attention: query position ", p, " outside its segment of ", s.k_len);
      }
    }
  }
  Profiler::Scope scope(Phase::attention);
  GMLM_DISPATCH_DEVICE(q.device, compute, q, q_pos, k, v, segs, rel_bias, max_rel, out, pool);
}

}  // namespace gmlm::ops
