// gmlm_engine._core.ops: the engine's ops on numpy arrays, for tests (each against a plain numpy
// reference) and micro-benchmarks (each next to the BLAS's own SGEMM on the same shapes).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <map>
#include <memory>
#include <mutex>

#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "layers/transformer.h"
#include "ops/attention.h"
#include "ops/gemm.h"
#include "ops/rms_norm.h"
#include "ops/select.h"
#include "ops/vocab_argmax.h"

namespace py = pybind11;

namespace gmlm {

namespace {

using FArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

ThreadPool& pool_for(int threads) {
  static std::mutex m;
  static std::map<int, std::unique_ptr<ThreadPool>> pools;
  std::lock_guard<std::mutex> lock(m);
  auto& p = pools[threads];
  if (!p) p = std::make_unique<ThreadPool>(threads);
  return *p;
}

ConstMat cmat(const FArray& a) {
  GMLM_CHECK_ARG(a.ndim() == 2, "expected a 2-D array, got ", a.ndim(), " dimensions");
  return {a.data(), a.shape(0), a.shape(1), a.shape(1)};
}

FArray gemm(const FArray& a, const FArray& b, int threads, const std::string& epilogue) {
  ConstMat A = cmat(a), B = cmat(b);
  ops::Gemm g;
  if (epilogue == "relu") g.epilogue = ops::Epilogue::relu;
  else if (epilogue == "gated_gelu") g.epilogue = ops::Epilogue::gated_gelu;
  else GMLM_CHECK_ARG(epilogue == "none", "epilogue must be none, relu or gated_gelu");
  GMLM_CHECK_ARG(A.cols == B.cols, "gemm: a is (", A.rows, ", ", A.cols, ") and b is (", B.rows, ", ", B.cols, ")");
  FArray y({A.rows, g.epilogue == ops::Epilogue::gated_gelu ? B.rows / 2 : B.rows});
  Mat Y{y.mutable_data(), y.shape(0), y.shape(1), y.shape(1)};
  ThreadPool& pool = pool_for(threads);
  py::gil_scoped_release release;
  g(A, B, Y, pool);
  return y;
}

FArray blas_sgemm(const FArray& a, const FArray& b, int threads) {
  ConstMat A = cmat(a), B = cmat(b);
  GMLM_CHECK_ARG(A.cols == B.cols, "sgemm: a is (", A.rows, ", ", A.cols, ") and b is (", B.rows, ", ", B.cols, ")");
  GMLM_CHECK_ARG(threads >= 1, "threads must be >= 1");
  FArray y({A.rows, B.rows});
  py::gil_scoped_release release;
  cpu::sgemm_nt_blas_threads(threads, A.rows, B.rows, A.cols, A.data, B.data, y.mutable_data());
  return y;
}

FArray rms_norm(const FArray& x, const FArray& gamma, float eps, int threads) {
  ConstMat X = cmat(x);
  GMLM_CHECK_ARG(gamma.ndim() == 1 && gamma.shape(0) == X.cols, "gamma must be (D,)");
  FArray y({X.rows, X.cols});
  Mat Y{y.mutable_data(), X.rows, X.cols, X.cols};
  ThreadPool& pool = pool_for(threads);
  py::gil_scoped_release release;
  ops::RMSNorm{eps}(X, gamma.data(), Y, &pool);
  return y;
}

// q (Rq, H*Dh), k/v (Rk, H*Dh); segments as (q_begin, q_len, k_begin, k_len); rel_bias (H, 2m+1)
FArray attention(const FArray& q, const FArray& k, const FArray& v, const std::vector<std::array<int64_t, 4>>& segs,
                 int64_t num_heads, std::optional<FArray> rel_bias, std::optional<std::vector<int32_t>> q_pos,
                 int threads) {
  ConstMat Q = cmat(q), Kc = cmat(k), Vc = cmat(v);
  GMLM_CHECK_ARG(num_heads >= 1 && Q.cols % num_heads == 0, "num_heads must divide the width");
  std::vector<ops::AttentionSegment> s;
  for (auto& a : segs) s.push_back({a[0], a[1], a[2], a[3]});
  int64_t max_rel = 0;
  const float* bias = nullptr;
  if (rel_bias) {
    GMLM_CHECK_ARG(rel_bias->ndim() == 2 && rel_bias->shape(0) == num_heads && rel_bias->shape(1) % 2 == 1,
                   "rel_bias must be (H, 2m+1)");
    max_rel = (rel_bias->shape(1) - 1) / 2;
    bias = rel_bias->data();
  }
  if (q_pos) GMLM_CHECK_ARG(static_cast<int64_t>(q_pos->size()) == Q.rows, "q_pos needs one entry per query row");
  FArray out({Q.rows, Q.cols});
  Mat O{out.mutable_data(), Q.rows, Q.cols, Q.cols};
  std::fill(out.mutable_data(), out.mutable_data() + Q.rows * Q.cols, 0.f);
  ThreadPool& pool = pool_for(threads);
  py::gil_scoped_release release;
  ops::MultiHeadAttention(num_heads, Q.cols / num_heads)(Q, q_pos ? q_pos->data() : nullptr, Kc, Vc, s, bias, max_rel,
                                                         O, pool);
  return out;
}

py::tuple vocab_argmax(const FArray& h, const FArray& w, int threads) {
  ConstMat H = cmat(h), W = cmat(w);
  py::array_t<int32_t> pred(H.rows);
  FArray conf(H.rows);
  ThreadPool& pool = pool_for(threads);
  {
    py::gil_scoped_release release;
    ops::VocabArgmax()(H, W, pred.mutable_data(), conf.mutable_data(), pool);
  }
  return py::make_tuple(pred, conf);
}

}  // namespace

void register_ops(py::module_& m) {
  py::module_ o = m.def_submodule("ops", "The engine's ops on numpy arrays (tests and benchmarks).");
  o.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("threads") = 1, py::arg("epilogue") = "none",
        "a (M, K) . b (N, K)^T through the engine's GEMM op (tiles on its pool, single-threaded BLAS per tile).");
  o.def("blas_sgemm", &blas_sgemm, py::arg("a"), py::arg("b"), py::arg("threads") = 1,
        "a (M, K) . b (N, K)^T in one call of the BLAS with its own threading (the baseline).");
  o.def("rms_norm", &rms_norm, py::arg("x"), py::arg("gamma"), py::arg("eps"), py::arg("threads") = 1, "RMSNorm rows.");
  o.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("segments"), py::arg("num_heads"),
        py::arg("rel_bias") = py::none(), py::arg("q_pos") = py::none(), py::arg("threads") = 1,
        "Fused multi-head attention over packed segments (q_begin, q_len, k_begin, k_len).");
  o.def("vocab_argmax", &vocab_argmax, py::arg("h"), py::arg("w"), py::arg("threads") = 1,
        "Fused h . w^T + log_softmax + argmax: (pred, conf) per row.");
  o.def("relative_position_bucket", &relative_position_bucket, py::arg("relative_position"), py::arg("bidirectional"),
        py::arg("num_buckets"), py::arg("max_distance"), "T5's bucket of key_pos - query_pos.");
  o.def("lowest_confidence", [](const std::vector<float>& conf, int64_t n) {
        std::vector<uint8_t> m(conf.size());
        ops::lowest_confidence(conf.data(), static_cast<int64_t>(conf.size()), n, m.data());
        return std::vector<bool>(m.begin(), m.end());
      }, py::arg("conf"), py::arg("n"), "Mask of the n lowest-confidence positions (ties: lower index).");
  o.def("mean_score", [](const std::vector<float>& conf) {
        return ops::mean_score(conf.data(), static_cast<int64_t>(conf.size()));
      }, py::arg("conf"), "Mean in float64 as numpy sums.");
  o.def("length_candidates", [](const std::vector<float>& logits, int64_t k) {
        std::vector<int32_t> l(k);
        ops::length_candidates(logits.data(), static_cast<int64_t>(logits.size()), k, l.data());
        return l;
      }, py::arg("logits"), py::arg("k"), "The k most probable lengths (ties: shorter first).");
  o.def("column_block", &ops::Gemm::column_block, py::arg("n"), "GEMM column block width for N columns.");
}

}  // namespace gmlm
