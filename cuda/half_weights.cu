#include "cuda/half_weights.h"

#include "core/error.h"
#include "cuda/device.h"
#include "cuda/launch.h"

namespace gmlm::cuda {

namespace {
thread_local const HalfWeights* installed = nullptr;
}

HalfWeights::HalfWeights(ComputeType type) : type_(type) {
  GMLM_CHECK_ARG(type == ComputeType::float16 || type == ComputeType::bfloat16,
                 "half-precision weights are float16 or bfloat16, got ", compute_type_name(type));
}

HalfWeights::~HalfWeights() = default;

void HalfWeights::add(const float* w, int64_t N, int64_t K) {
  auto buf = std::make_unique<DeviceBuffer>(ctype_size(type_) * N * K);
  convert(w, K, buf->get(), type_, K, N, K, nullptr);
  synchronize_device();
  weights_[w] = Weight{N, K, std::move(buf)};
}

void HalfWeights::install(const HalfWeights* set) { installed = set; }
const HalfWeights* HalfWeights::current() { return installed; }

const void* HalfWeights::find(const float* b, int64_t ldb) const {
  auto it = weights_.upper_bound(b);
  if (it == weights_.begin()) return nullptr;
  --it;
  const Weight& w = it->second;
  const int64_t off = b - it->first;
  if (ldb != w.cols || off >= w.rows * w.cols || off % w.cols != 0) return nullptr;
  return static_cast<const char*>(w.copy->get()) + ctype_size(type_) * off;
}

}  // namespace gmlm::cuda
