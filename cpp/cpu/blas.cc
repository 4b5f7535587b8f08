#include "cpu/blas.h"

#include <cblas.h>

#include <mutex>

#include "core/error.h"

extern "C" {
void scipy_openblas_set_num_threads(int num_threads);
int scipy_openblas_get_num_threads(void);
char* scipy_openblas_get_config(void);
char* scipy_openblas_get_corename(void);
}

namespace gmlm::cpu {

namespace {
std::once_flag g_init;
std::mutex g_threads_mutex;  // serialises the benchmark's threaded calls

void init_blas() {
  // The engine's pool provides the parallelism; OpenBLAS's own threads stay idle.
  std::call_once(g_init, [] { scipy_openblas_set_num_threads(1); });
}

void check_dims(int64_t M, int64_t N, int64_t K) {
  GMLM_CHECK(M >= 0 && N >= 0 && K >= 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 31) &&
                 K < (int64_t(1) << 31),
             "sgemm dimensions out of range: M=", M, " N=", N, " K=", K);
}
}  // namespace

void sgemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
              float beta, float* C, int64_t ldc) {
  init_blas();
  check_dims(M, N, K);
  if (M == 0 || N == 0) return;
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
                    static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta,
                    C, static_cast<blasint>(ldc));
}

void sgemm_nt_blas_threads(int threads, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  init_blas();
  check_dims(M, N, K);
  std::lock_guard<std::mutex> lock(g_threads_mutex);
  scipy_openblas_set_num_threads(threads);
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
                    static_cast<blasint>(K), 1.f, A, static_cast<blasint>(K), B, static_cast<blasint>(K), 0.f, C,
                    static_cast<blasint>(N));
  scipy_openblas_set_num_threads(1);
}

std::string blas_info() {
  init_blas();
  std::string cfg = scipy_openblas_get_config();
  return cfg + " (core " + scipy_openblas_get_corename() + ")";
}

}  // namespace gmlm::cpu
