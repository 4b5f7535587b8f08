// The one place where ops choose an implementation by device (and, where an op supports more
// than float32, by dtype). GMLM_DISPATCH_DEVICE(device, compute, args...) calls
// compute<Device::cpu>(args...) or, in a build with GMLM_WITH_CUDA, compute<Device::cuda>(args...)
// (defined in cuda/ops_gpu.cu). Without CUDA a cuda operand is a ValueError naming the build.
#pragma once

#include "core/error.h"
#include "core/tensor.h"

#if defined(GMLM_WITH_CUDA) && GMLM_WITH_CUDA
#define GMLM_DISPATCH_CUDA_CASE(FN, ...) \
  case ::gmlm::Device::cuda: FN<::gmlm::Device::cuda>(__VA_ARGS__); break;
#else
#define GMLM_DISPATCH_CUDA_CASE(FN, ...)
#endif

#define GMLM_DISPATCH_DEVICE(device, FN, ...)                                                   \
  do {                                                                                          \
    switch (device) {                                                                           \
      case ::gmlm::Device::cpu: FN<::gmlm::Device::cpu>(__VA_ARGS__); break;                    \
      GMLM_DISPATCH_CUDA_CASE(FN, __VA_ARGS__)                                                  \
      default:                                                                                  \
        throw std::invalid_argument(::gmlm::str_cat("no implementation for device ",            \
                                                    ::gmlm::device_name(device), " in this build")); \
    }                                                                                           \
  } while (0)
