// GEMMs through cuBLAS: y(M, N) = alpha * a(M, K) . b(N, K)^T + beta * y on row-major operands.
// A row-major (M, K) matrix is a column-major (K, M) one, so the call is the column-major
// y^T(N, M) = op_T(b^T as (K, N)) . a^T(K, M): cublasGemmEx(T, N, m=N, n=M, k=K, b, a, y).
// a and b share the compute type (float32, float16 or bfloat16); y is float32; accumulation is
// float32 (CUBLAS_COMPUTE_32F: no TF32 for float32 operands, so the float32 engine stays exact
// enough for token parity with the CPU engine). The handle has a fixed workspace so that calls can
// be captured in CUDA graphs (cuBLAS then allocates nothing during capture).
#include <cublas_v2.h>

#include <stdexcept>
#include <string>

#include "cuda/launch.h"

namespace gmlm::cuda {

namespace {
void check_cublas(cublasStatus_t st, const char* what) {
  if (st == CUBLAS_STATUS_SUCCESS) return;
  throw std::runtime_error(std::string("cuBLAS error: ") + cublasGetStatusName(st) + " (" +
                           cublasGetStatusString(st) + ") in " + what);
}

cudaDataType_t data_type(CType t) {
  switch (t) {
    case CType::float32: return CUDA_R_32F;
    case CType::float16: return CUDA_R_16F;
    case CType::bfloat16: return CUDA_R_16BF;
    default: break;   // int8: the CPU's type, refused at load
  }
  return CUDA_R_32F;
}
}  // namespace

void gemm_nt(cublasHandle_t handle, CType t, const void* a, int64_t lda, const void* b, int64_t ldb, float* c,
             int64_t ldc, int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  if (M <= 0 || N <= 0) return;
  const cudaDataType_t dt = data_type(t);
  check_cublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, static_cast<int>(N), static_cast<int>(M),
                            static_cast<int>(K), &alpha, b, dt, static_cast<int>(ldb), a, dt, static_cast<int>(lda),
                            &beta, c, CUDA_R_32F, static_cast<int>(ldc), CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
               "cublasGemmEx");
}

cublasHandle_t create_cublas(cudaStream_t stream, void* workspace, std::size_t workspace_bytes) {
  cublasHandle_t h = nullptr;
  check_cublas(cublasCreate(&h), "cublasCreate");
  try {
    check_cublas(cublasSetStream(h, stream), "cublasSetStream");
    if (workspace) check_cublas(cublasSetWorkspace(h, workspace, workspace_bytes), "cublasSetWorkspace");
    check_cublas(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
  } catch (...) {
    cublasDestroy(h);
    throw;
  }
  return h;
}

void destroy_cublas(cublasHandle_t h) {
  if (h) cublasDestroy(h);
}

}  // namespace gmlm::cuda
