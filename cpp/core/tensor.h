// A small tensor: shape, dtype, device and 64-byte aligned owned storage. Row-major, contiguous. Enough for the engine's needs and no more: the ops take
// tensors (or raw pointers with explicit strides where rows are strided views).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"

namespace gmlm {

enum class DType { float32, int32 };
enum class Device { cpu, cuda };

std::size_t dtype_size(DType dtype);
const char* dtype_name(DType dtype);
const char* device_name(Device device);

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::float32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::int32; }

// How a device other than the host allocates and copies memory, registered by its backend when the build has it
// (cuda/device.cu). Copies are synchronous; `to_device` / `from_device` say which sides are device memory.
struct DeviceMemory {
  void* (*alloc)(std::size_t bytes);
  void (*release)(void* p);
  void (*copy)(void* dst, const void* src, std::size_t bytes, bool to_device, bool from_device);
};
void register_device_memory(Device device, const DeviceMemory* memory);
const DeviceMemory* device_memory(Device device);  // null for the host, and for a device this build lacks

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& shape);

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(Shape shape, DType dtype = DType::float32, Device device = Device::cpu);

  const Shape& shape() const { return shape_; }
  int rank() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;
  int64_t numel() const;
  DType dtype() const { return dtype_; }
  Device device() const { return device_; }
  bool empty() const { return numel() == 0; }
  std::size_t capacity() const { return capacity_; }  // bytes allocated (at least numel x the element size)

  template <typename T> T* data() {
    check_type(dtype_of<T>());
    return static_cast<T*>(data_);
  }
  template <typename T> const T* data() const {
    check_type(dtype_of<T>());
    return static_cast<const T*>(data_);
  }

  // Reshape in place, reallocating only when the capacity is too small (workspace buffers grow
  // to their high-water mark and are then reused). Contents are not preserved.
  void resize(Shape shape);
  // A copy on `device` (the same tensor's storage when it is there already).
  Tensor to(Device device) const;
  // The first `bytes` of this tensor from / to host memory (on any device).
  void copy_from_host(const void* src, std::size_t bytes);
  void copy_to_host(void* dst, std::size_t bytes) const;

 private:
  void check_type(DType t) const;
  Shape shape_;
  DType dtype_ = DType::float32;
  Device device_ = Device::cpu;
  std::shared_ptr<void> storage_;
  std::size_t capacity_ = 0;       // bytes available from data_
  void* data_ = nullptr;
};

// 64-byte aligned host allocation, freed by the deleter of the returned pointer.
std::shared_ptr<void> aligned_alloc_shared(std::size_t bytes);

}  // namespace gmlm
