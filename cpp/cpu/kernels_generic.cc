// The portable instance of kernels_impl.inl (compiled with the baseline flags).
#define GMLM_KERNEL_NS generic
#include "cpu/kernels_impl.inl"
