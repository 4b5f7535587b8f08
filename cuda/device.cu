// Device memory and device queries (cuda/device.h).
#include "cuda/device.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <stdexcept>

#include "core/tensor.h"
#include "cuda/launch.h"

namespace gmlm::cuda {

int device_count(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error so later calls start clean
    if (why) *why = std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
    return 0;
  }
  if (n == 0 && why) *why = "no CUDA device found";
  return n;
}

std::string device_description(int device) {
  cudaDeviceProp p{};
  GMLM_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  char buf[512];
  std::snprintf(buf, sizeof(buf), "%s (sm_%d%d, %.1f GiB)", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

void require_device(int device) {
  std::string why;
  const int n = device_count(&why);
  if (n == 0) throw std::runtime_error("CUDA is not available: " + why);
  if (device < 0 || device >= n)
    throw std::invalid_argument("CUDA device " + std::to_string(device) + " does not exist (" + std::to_string(n) +
                                " device(s))");
}

void use_device(int device) {
  require_device(device);
  GMLM_CUDA_CHECK(cudaSetDevice(device));
}

DeviceBuffer::~DeviceBuffer() {
  if (ptr_) cudaFree(ptr_);
}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& o) noexcept {
  if (this != &o) {
    if (ptr_) cudaFree(ptr_);
    ptr_ = std::exchange(o.ptr_, nullptr);
    bytes_ = std::exchange(o.bytes_, 0);
  }
  return *this;
}

bool DeviceBuffer::reserve(std::size_t bytes) {
  if (bytes <= bytes_ && ptr_) return false;
  const std::size_t cap = std::max<std::size_t>({bytes, bytes_ + bytes_ / 4, 256});
  if (ptr_) {
    cudaFree(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
  }
  GMLM_CUDA_CHECK(cudaMalloc(&ptr_, cap));
  bytes_ = cap;
  GMLM_CUDA_CHECK(cudaMemset(ptr_, 0, cap));
  return true;
}

void copy_to_device(void* dst, const void* src, std::size_t bytes) {
  if (bytes) GMLM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}
void copy_to_host(void* dst, const void* src, std::size_t bytes) {
  if (bytes) GMLM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}
void synchronize_device() { GMLM_CUDA_CHECK(cudaDeviceSynchronize()); }

namespace {

// Tensors on Device::cuda (core/tensor.h): cudaMalloc'd storage on the current device, synchronous copies.
void* tensor_alloc(std::size_t bytes) {
  void* p = nullptr;
  GMLM_CUDA_CHECK(cudaMalloc(&p, bytes));
  return p;
}
void tensor_release(void* p) { cudaFree(p); }
void tensor_copy(void* dst, const void* src, std::size_t bytes, bool to_device, bool from_device) {
  const cudaMemcpyKind kind = to_device ? (from_device ? cudaMemcpyDeviceToDevice : cudaMemcpyHostToDevice)
                                        : (from_device ? cudaMemcpyDeviceToHost : cudaMemcpyHostToHost);
  GMLM_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}
const DeviceMemory kTensorMemory{&tensor_alloc, &tensor_release, &tensor_copy};
const bool kRegistered = (register_device_memory(Device::cuda, &kTensorMemory), true);

}  // namespace

bool tensor_memory_registered() { return kRegistered; }

}  // namespace gmlm::cuda
