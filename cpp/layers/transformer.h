// The T5 sub-layers, each owning its weights (copied once from the checkpoint into aligned
// buffers; every field names the tensor it holds). Their forward passes work on packed rows
// (R, D) and add their output to the residual x.
#pragma once

#include <cstdint>
#include <vector>

#include "core/matrix.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "ops/attention.h"

namespace gmlm {

// layer.0 of a block: SelfAttention (+ its layer_norm)
struct SelfAttentionLayer {
  Tensor layer_norm;  // layer.0.layer_norm.weight (D)
  Tensor qkv;         // layer.0.SelfAttention.{q,k,v}.weight stacked: (3I, D)
  Tensor o;           // layer.0.SelfAttention.o.weight (D, I)
};

// layer.1 of a decoder block: EncDecAttention. Its k and v weights live in T5Model::cross_kv,
// fused over all decoder layers, because the encoder output is projected once per batch.
struct CrossAttentionLayer {
  Tensor layer_norm;  // layer.1.layer_norm.weight (D)
  Tensor q;           // layer.1.EncDecAttention.q.weight (I, D)
  Tensor o;           // layer.1.EncDecAttention.o.weight (D, I)
};

// the last layer of a block: DenseReluDense (+ its layer_norm)
struct FeedForwardLayer {
  Tensor layer_norm;  // layer_norm.weight (D)
  Tensor wi;          // DenseReluDense.wi.weight (F, D), or wi_0 / wi_1 interleaved (2F, D), see ops::Gemm
  Tensor wo;          // DenseReluDense.wo.weight (D, F)
  bool gated = false;

  // x += wo(act(wi(h))); tmp: (R, F) scratch
  void forward(ConstMat h, Mat x, Mat tmp, ThreadPool& pool) const;
};

// T5's relative position buckets, expanded per head for every relative position in
// [-max_rel, max_rel]: bias (H, 2*max_rel + 1). The bucket function is model.py's, evaluated in
// float32 as PyTorch does.
int64_t relative_position_bucket(int64_t relative_position, bool bidirectional, int64_t num_buckets,
                                 int64_t max_distance);
Tensor expand_position_bias(const float* table /* (NB, H) */, int64_t num_buckets, int64_t num_heads,
                            bool bidirectional, int64_t max_distance, int64_t max_rel);

}  // namespace gmlm
