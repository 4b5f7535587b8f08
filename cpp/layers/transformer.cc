#include "layers/transformer.h"

#include <cmath>

#include "ops/gemm.h"

namespace gmlm {

void FeedForwardLayer::forward(ConstMat h, Mat x, Mat tmp, ThreadPool& pool) const {
  ops::Gemm in;
  in.epilogue = gated ? ops::Epilogue::gated_gelu : ops::Epilogue::relu;
  in(h, mat(wi), tmp, pool);
  ops::Gemm out;
  out.beta = 1.f;  // residual
  out(tmp, mat(wo), x, pool);
}

int64_t relative_position_bucket(int64_t rp, bool bidirectional, int64_t num_buckets, int64_t max_distance) {
  int64_t bucket = 0;
  if (bidirectional) {
    num_buckets /= 2;
    if (rp > 0) bucket += num_buckets;
    rp = rp < 0 ? -rp : rp;
  } else {
    rp = rp < 0 ? -rp : 0;
  }
  const int64_t max_exact = num_buckets / 2;
  if (rp < max_exact) return bucket + rp;
  // float32 as in model.py: log(rp / max_exact) / log(max_distance / max_exact) * (nb - max_exact)
  const float ratio = static_cast<float>(rp) / static_cast<float>(max_exact);
  const float denom = static_cast<float>(std::log(static_cast<double>(max_distance) / max_exact));
  float v = std::log(ratio) / denom;
  v = v * static_cast<float>(num_buckets - max_exact);
  int64_t large = max_exact + static_cast<int64_t>(v);
  if (large > num_buckets - 1) large = num_buckets - 1;
  return bucket + large;
}

Tensor expand_position_bias(const float* table, int64_t num_buckets, int64_t num_heads, bool bidirectional,
                            int64_t max_distance, int64_t max_rel) {
  const int64_t width = 2 * max_rel + 1;
  Tensor bias({num_heads, width});
  float* b = bias.data<float>();
  for (int64_t d = -max_rel; d <= max_rel; ++d) {
    const int64_t bucket = relative_position_bucket(d, bidirectional, num_buckets, max_distance);
    GMLM_CHECK(bucket >= 0 && bucket < num_buckets, "bucket ", bucket);
    for (int64_t h = 0; h < num_heads; ++h) b[h * width + d + max_rel] = table[bucket * num_heads + h];
  }
  return bias;
}

}  // namespace gmlm
