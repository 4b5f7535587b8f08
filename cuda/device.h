// Device memory and device queries for the rest of the engine, in plain C++ (no CUDA headers), so
// that the binding can use them. Everything throws std::runtime_error with the CUDA error name.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

namespace gmlm::cuda {

// The number of usable CUDA devices; 0 when there is none, with the reason in *why (no driver,
// no device, driver too old for this build's runtime).
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" for device i.
std::string device_description(int device);
// Throws std::runtime_error naming the reason when device `device` cannot be used.
void require_device(int device);
// require_device, then makes `device` the calling thread's current device (where Device::cuda tensors live).
void use_device(int device);

// Owned device memory (cudaMalloc); grows with reserve(), never shrinks. Contents are not kept
// across a growth.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes) { reserve(bytes); }
  ~DeviceBuffer();
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept;

  // At least `bytes` (grown 1.25x, zero-filled); true when the address changed.
  bool reserve(std::size_t bytes);
  void* get() const { return ptr_; }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }
  std::size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

void copy_to_device(void* dst, const void* src, std::size_t bytes);
void copy_to_host(void* dst, const void* src, std::size_t bytes);
void synchronize_device();
// Whether Device::cuda tensors can be made (their memory is registered with core/tensor.h when this file is linked).
bool tensor_memory_registered();

}  // namespace gmlm::cuda
