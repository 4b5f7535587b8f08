#include "core/tensor.h"

#include <cstdlib>
#include <cstring>
#include <new>

namespace gmlm {

std::size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::float32: return 4;
    case DType::int32: return 4;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::float32: return "float32";
    case DType::int32: return "int32";
  }
  return "?";
}

namespace {
const DeviceMemory* g_cuda_memory = nullptr;
}

void register_device_memory(Device device, const DeviceMemory* memory) {
  GMLM_CHECK(device == Device::cuda, "only a cuda device registers its memory");
  g_cuda_memory = memory;
}

const DeviceMemory* device_memory(Device device) { return device == Device::cuda ? g_cuda_memory : nullptr; }

const char* device_name(Device device) { return device == Device::cpu ? "cpu" : "cuda"; }

std::string shape_str(const Shape& shape) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + (shape.size() == 1 ? ",)" : ")");
}

std::shared_ptr<void> aligned_alloc_shared(std::size_t bytes) {
  constexpr std::size_t kAlign = 64;
  std::size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  void* p = std::aligned_alloc(kAlign, rounded ? rounded : kAlign);
  if (!p) throw std::bad_alloc();
  return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

static int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    GMLM_CHECK_ARG(d >= 0, "negative dimension in shape ", shape_str(shape));
    n *= d;
  }
  return n;
}

Tensor::Tensor(Shape shape, DType dtype, Device device) : dtype_(dtype), device_(device) {
  GMLM_CHECK_ARG(device == Device::cpu || device_memory(device), "this build has no ", device_name(device),
                 " device support");
  resize(std::move(shape));
}

Tensor Tensor::to(Device device) const {
  if (device == device_) return *this;
  Tensor t(shape_, dtype_, device);
  const std::size_t bytes = static_cast<std::size_t>(numel()) * dtype_size(dtype_);
  if (device_ == Device::cpu) {
    t.copy_from_host(data_, bytes);
  } else {
    GMLM_CHECK(device == Device::cpu, "copies between two devices go through the host");
    copy_to_host(t.data_, bytes);
  }
  return t;
}

void Tensor::copy_from_host(const void* src, std::size_t bytes) {
  GMLM_CHECK(bytes <= capacity_, "copy_from_host: ", bytes, " bytes into ", capacity_);
  if (bytes == 0) return;
  if (device_ == Device::cpu)
    std::memcpy(data_, src, bytes);
  else
    device_memory(device_)->copy(data_, src, bytes, true, false);
}

void Tensor::copy_to_host(void* dst, std::size_t bytes) const {
  GMLM_CHECK(bytes <= capacity_, "copy_to_host: ", bytes, " bytes from ", capacity_);
  if (bytes == 0) return;
  if (device_ == Device::cpu)
    std::memcpy(dst, data_, bytes);
  else
    device_memory(device_)->copy(dst, data_, bytes, false, true);
}

int64_t Tensor::dim(int i) const {
  if (i < 0) i += rank();
  GMLM_CHECK(i >= 0 && i < rank(), "dim ", i, " of a tensor of shape ", shape_str(shape_));
  return shape_[i];
}

int64_t Tensor::numel() const { return shape_.empty() && !data_ ? 0 : numel_of(shape_); }

void Tensor::resize(Shape shape) {
  std::size_t bytes = static_cast<std::size_t>(numel_of(shape)) * dtype_size(dtype_);
  if (bytes > capacity_ || !data_) {
    // Grow by 1.25x to avoid a reallocation per slightly larger batch.
    std::size_t cap = std::max(bytes, capacity_ + capacity_ / 4);
    if (device_ == Device::cpu) {
      storage_ = aligned_alloc_shared(cap);
    } else {
      const DeviceMemory* m = device_memory(device_);
      storage_ = std::shared_ptr<void>(m->alloc(std::max<std::size_t>(cap, 64)), m->release);
    }
    capacity_ = cap;
    data_ = storage_.get();
  }
  shape_ = std::move(shape);
}

void Tensor::check_type(DType t) const {
  GMLM_CHECK(t == dtype_, "tensor of dtype ", dtype_name(dtype_), " accessed as ", dtype_name(t));
}

}  // namespace gmlm
