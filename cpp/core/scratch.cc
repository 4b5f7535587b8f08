#include "core/scratch.h"

#include <memory>

#include "core/tensor.h"

namespace gmlm {

namespace {
constexpr int kSlots = 7;  // 0-2: the ops; 4-6: low-precision GEMM operands (cpu/lowp.cc)
struct Buffers {
  std::shared_ptr<void> mem[kSlots];
  std::size_t size[kSlots] = {};
};
thread_local Buffers t_buffers;
}  // namespace

float* thread_scratch(int slot, std::size_t n) {
  GMLM_CHECK(slot >= 0 && slot < kSlots, "scratch slot ", slot);
  Buffers& b = t_buffers;
  if (b.size[slot] < n) {
    std::size_t grown = n + n / 4;
    b.mem[slot] = aligned_alloc_shared(grown * sizeof(float));
    b.size[slot] = grown;
  }
  return static_cast<float*>(b.mem[slot].get());
}

}  // namespace gmlm
