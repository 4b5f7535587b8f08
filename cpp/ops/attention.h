// Multi-head attention core on packed (ragged) sequences, softmax fused:
//   out[i, h] = sum_j softmax_j(q[i, h] . k[j, h] + bias_h(pos_j - pos_i)) v[j, h]
// for the query rows and key rows of each segment (a sentence in the encoder, a length candidate in
// the decoder; no padding, so no key mask). T5: no 1/sqrt(d_kv) scaling. Heads are column blocks
// of head_dim in q, k, v, out. rel_bias: (H, 2 * max_rel + 1), bias_h(d) = rel_bias[h, d + max_rel],
// or null (cross-attention). q_pos gives each query row's position in its segment (null: the
// row's offset from q_begin), so a segment may have only some of its positions as queries.
//
// Shapes: q (Rq, H*Dh), k and v (Rk, H*Dh), out (Rq, H*Dh).
#pragma once

#include <cstdint>
#include <vector>

#include "core/matrix.h"
#include "core/thread_pool.h"

namespace gmlm::ops {

struct AttentionSegment {
  int64_t q_begin, q_len;  // query rows
  int64_t k_begin, k_len;  // key/value rows
};

struct MultiHeadAttention {
  int64_t num_heads, head_dim;
  MultiHeadAttention(int64_t num_heads, int64_t head_dim) : num_heads(num_heads), head_dim(head_dim) {}

  void operator()(ConstMat q, const int32_t* q_pos, ConstMat k, ConstMat v, const std::vector<AttentionSegment>& segs,
                  const float* rel_bias, int64_t max_rel, Mat out, ThreadPool& pool) const;

  template <Device D>
  void compute(ConstMat q, const int32_t* q_pos, ConstMat k, ConstMat v, const std::vector<AttentionSegment>& segs,
               const float* rel_bias, int64_t max_rel, Mat out, ThreadPool& pool) const;
};

}  // namespace gmlm::ops
