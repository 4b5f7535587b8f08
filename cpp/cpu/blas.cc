#include "cpu/blas.h"

#include <cblas.h>

#include <atomic>
#include <mutex>

#include "core/error.h"
#include "cpu/gemv_f32.h"

extern "C" {
void scipy_openblas_set_num_threads(int num_threads);
int scipy_openblas_get_num_threads(void);
char* scipy_openblas_get_config(void);
char* scipy_openblas_get_corename(void);
}

namespace gmlm::cpu {

namespace {
std::mutex g_threads_mutex;     // serialises changes of OpenBLAS's (process-wide) thread count
std::atomic<int> g_threads{0};  // the thread count OpenBLAS is set to (0: not set yet)

void set_threads(int n) {
  if (g_threads.load(std::memory_order_acquire) == n) return;
  std::lock_guard<std::mutex> lock(g_threads_mutex);
  if (g_threads.load(std::memory_order_relaxed) != n) {
    scipy_openblas_set_num_threads(n);
    g_threads.store(n, std::memory_order_release);
  }
}

// The engine's pool provides the parallelism; OpenBLAS's own threads stay idle. (Only the
// benchmarks' baseline calls change this, and the next engine call sets it back.)
void init_blas() { set_threads(1); }

void check_dims(int64_t M, int64_t N, int64_t K) {
  GMLM_CHECK(M >= 0 && N >= 0 && K >= 0 && M < (int64_t(1) << 31) && N < (int64_t(1) << 31) &&
                 K < (int64_t(1) << 31),
             "sgemm dimensions out of range: M=", M, " N=", N, " K=", K);
}
}  // namespace

void sgemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
              float beta, float* C, int64_t ldc) {
  check_dims(M, N, K);
  if (M == 0 || N == 0) return;
  if (M <= kGemvF32MaxRows && gemv_f32_available()) return gemv_f32(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  init_blas();
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
                    static_cast<blasint>(K), alpha, A, static_cast<blasint>(lda), B, static_cast<blasint>(ldb), beta,
                    C, static_cast<blasint>(ldc));
}

void sgemm_nt_blas_threads(int threads, int64_t M, int64_t N, int64_t K, const float* A, const float* B, float* C) {
  check_dims(M, N, K);
  set_threads(threads);  // left there until the engine's next call: switching costs
  scipy_cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<blasint>(M), static_cast<blasint>(N),
                    static_cast<blasint>(K), 1.f, A, static_cast<blasint>(K), B, static_cast<blasint>(K), 0.f, C,
                    static_cast<blasint>(N));
}

std::string blas_info() {
  init_blas();
  std::string cfg = scipy_openblas_get_config();
  return cfg + " (core " + scipy_openblas_get_corename() + ")";
}

}  // namespace gmlm::cpu
