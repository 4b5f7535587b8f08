// The one place where ops choose an implementation by device (and, where an op supports more
// than float32, by dtype). This build has the CPU implementations; a CUDA build adds its cases.
#pragma once

#include "core/error.h"
#include "core/tensor.h"

#define GMLM_DISPATCH_DEVICE(device, CPU_CALL)                                                  \
  do {                                                                                          \
    switch (device) {                                                                           \
      case ::gmlm::Device::cpu: CPU_CALL; break;                                                \
      default:                                                                                  \
        throw std::invalid_argument(::gmlm::str_cat("no implementation for device ",            \
                                                    ::gmlm::device_name(device), " in this build")); \
    }                                                                                           \
  } while (0)
