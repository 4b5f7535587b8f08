// Per-thread scratch memory for kernels (a GEMM tile before its epilogue, attention scores):
// grow-only, 64-byte aligned, reused across calls (pool workers live as long as the pool).
#pragma once

#include <cstddef>

namespace gmlm {

// At least n floats for this thread; slot picks one of a few independent buffers.
float* thread_scratch(int slot, std::size_t n);

}  // namespace gmlm
