// gmlm_engine._core.ops: the engine's ops on numpy arrays, for tests (each against a plain numpy
// reference) and micro-benchmarks (each next to the BLAS's own SGEMM on the same shapes).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "cpu/blas.h"
#include "cpu/kernels.h"
#include "cpu/lowp.h"
#include "decoding/rules.h"
#include "layers/transformer.h"
#include "ops/attention.h"
#include "ops/gemm.h"
#include "ops/rms_norm.h"
#include "ops/rows.h"
#include "ops/select.h"
#include "ops/vocab_argmax.h"
#if GMLM_WITH_CUDA
#include "cuda/device.h"
#include "cuda/half_weights.h"
#include "cuda/launch.h"
#include "ops/embedding.h"
#endif

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

// The GEMM op for a named epilogue, its operands' shapes checked (both devices' gemm below).
ops::Gemm gemm_op(const std::string& epilogue, ConstMat A, ConstMat B) {
  ops::Gemm g;
  if (epilogue == "relu") g.epilogue = ops::Epilogue::relu;
  else if (epilogue == "gated_gelu") g.epilogue = ops::Epilogue::gated_gelu;
  else GMLM_CHECK_ARG(epilogue == "none", "epilogue must be none, relu or gated_gelu");
  GMLM_CHECK_ARG(A.cols == B.cols, "gemm: a is (", A.rows, ", ", A.cols, ") and b is (", B.rows, ", ", B.cols, ")");
  return g;
}

FArray gemm(const FArray& a, const FArray& b, int threads, const std::string& epilogue) {
  ConstMat A = cmat(a), B = cmat(b);
  const ops::Gemm g = gemm_op(epilogue, A, B);
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

// The engine's GEMM op with b registered as a low-precision weight (as a model's weights are at
// load): every call converts or quantises a, runs oneDNN per tile, and writes fp32.
class LowpGemm {
 public:
  LowpGemm(FArray b, const std::string& compute_type)
      : b_(std::move(b)), set_(std::make_unique<cpu::LowpWeights>(cpu::compute_type_from_name(compute_type))) {
    ConstMat B = cmat(b_);
    set_->add(B.data, B.rows, B.cols);
  }
  FArray run(const FArray& a, int threads, int reps) {
    ConstMat A = cmat(a), B = cmat(b_);
    GMLM_CHECK_ARG(A.cols == B.cols, "gemm: a is (", A.rows, ", ", A.cols, ") and b is (", B.rows, ", ", B.cols, ")");
    GMLM_CHECK_ARG(reps >= 1, "reps must be >= 1");
    FArray y({A.rows, B.rows});
    Mat Y{y.mutable_data(), y.shape(0), y.shape(1), y.shape(1)};
    ThreadPool& pool = pool_for(threads);
    py::gil_scoped_release release;
    struct Installed {
      explicit Installed(const cpu::LowpWeights* s) { cpu::LowpWeights::install(s); }
      ~Installed() { cpu::LowpWeights::install(nullptr); }
    } installed(set_.get());
    for (int i = 0; i < reps; ++i) ops::Gemm{}(A, B, Y, pool);
    return y;
  }

 private:
  FArray b_;  // the registered weight is found by this array's address
  std::unique_ptr<cpu::LowpWeights> set_;
};

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

// The index arrays of copy_rows (None: the identity), checked against the rows they name.
std::vector<int32_t> row_index(const std::optional<std::vector<int32_t>>& idx, int64_t rows, int64_t n,
                               const char* what) {
  if (!idx) {
    GMLM_CHECK_ARG(n <= rows, "copy_rows: ", n, " rows but ", what, " has ", rows);
    return {};
  }
  GMLM_CHECK_ARG(static_cast<int64_t>(idx->size()) == n, "copy_rows: ", what, " index has ", idx->size(), " entries, not ", n);
  for (int32_t i : *idx) GMLM_CHECK_ARG(i >= 0 && i < rows, "copy_rows: ", what, " row ", i, " outside [0, ", rows, ")");
  return *idx;
}

// y' = y with y'[dst(i)] (+)= x[src(i)] (ops::CopyRows); returns y'
FArray copy_rows(const FArray& x, const std::optional<std::vector<int32_t>>& src, const FArray& y,
                 const std::optional<std::vector<int32_t>>& dst, int64_t n, bool accumulate, int threads) {
  ConstMat X = cmat(x), Y0 = cmat(y);
  GMLM_CHECK_ARG(X.cols == Y0.cols, "copy_rows: x and y differ in columns");
  const std::vector<int32_t> s = row_index(src, X.rows, n, "x"), d = row_index(dst, Y0.rows, n, "y");
  FArray out({Y0.rows, Y0.cols});
  std::copy(y.data(), y.data() + y.size(), out.mutable_data());
  ops::CopyRows op;
  op.accumulate = accumulate;
  ThreadPool& pool = pool_for(threads);
  py::gil_scoped_release release;
  op(X, src ? s.data() : nullptr, Mat{out.mutable_data(), Y0.rows, Y0.cols, Y0.cols}, dst ? d.data() : nullptr, n,
     &pool);
  return out;
}

FArray scale(const FArray& y, float s) {
  ConstMat Y0 = cmat(y);
  FArray out({Y0.rows, Y0.cols});
  std::copy(y.data(), y.data() + y.size(), out.mutable_data());
  const ops::Scale op(s);
  op(Mat{out.mutable_data(), Y0.rows, Y0.cols, Y0.cols});
  return out;
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

// The vocabulary op with its options from Python: row_bias (M) lowers column bias_col per row; noise (M, V)
// makes it sample (Gumbel-max with those values).
struct VocabCall {
  ops::VocabArgmax op;
  std::optional<FArray> noise;
  VocabCall(ConstMat H, int64_t V, int32_t bias_col, const std::optional<FArray>& row_bias,
            const std::optional<FArray>& g) : noise(g) {
    if (row_bias) {
      GMLM_CHECK_ARG(row_bias->size() == H.rows && bias_col >= 0 && bias_col < V,
                     "row_bias needs one value per row and bias_col a column");
      op.bias_col = bias_col;
      op.row_bias = row_bias->data();
    }
    GMLM_CHECK_ARG(!g || (g->ndim() == 2 && g->shape(0) == H.rows && g->shape(1) == V), "noise must be (M, V)");
  }
  void operator()(ConstMat H, ConstMat W, int32_t* pred, float* conf, ThreadPool& pool) const {
    if (!noise) return op(H, W, pred, conf, pool);
    const float* g = noise->data();
    const int64_t V = W.rows;
    op.sample(H, W, [&](int64_t r, float* out) { std::copy(g + r * V, g + (r + 1) * V, out); }, pred, conf, pool);
  }
};

py::tuple vocab_argmax(const FArray& h, const FArray& w, int threads, int32_t bias_col,
                       const std::optional<FArray>& row_bias, const std::optional<FArray>& noise) {
  ConstMat H = cmat(h), W = cmat(w);
  const VocabCall call(H, W.rows, bias_col, row_bias, noise);
  py::array_t<int32_t> pred(H.rows);
  FArray conf(H.rows);
  ThreadPool& pool = pool_for(threads);
  {
    py::gil_scoped_release release;
    call(H, W, pred.mutable_data(), conf.mutable_data(), pool);
  }
  return py::make_tuple(pred, conf);
}

#if GMLM_WITH_CUDA
// --- the same ops on a CUDA device: numpy in, device copies, the op through its dispatch, numpy out
namespace cu {

struct Dev {
  cuda::DeviceBuffer buf;
  template <typename T>
  explicit Dev(const T* host, size_t n) : buf(sizeof(T) * std::max<size_t>(n, 1)) {
    cuda::copy_to_device(buf.get(), host, sizeof(T) * n);
  }
  explicit Dev(size_t bytes) : buf(std::max<size_t>(bytes, 1)) {}
  float* f() const { return buf.as<float>(); }
};

ConstMat dmat(const Dev& d, const FArray& a) { return {d.f(), a.shape(0), a.shape(1), a.shape(1), Device::cuda}; }

FArray to_host(const Dev& d, int64_t rows, int64_t cols) {
  FArray y({rows, cols});
  cuda::copy_to_host(y.mutable_data(), d.f(), sizeof(float) * rows * cols);
  return y;
}

// b registered and installed as a half-precision weight (compute_type float16 / bfloat16) for a scope; float32:
// nothing.
struct HalfScope {
  std::unique_ptr<cuda::HalfWeights> set;
  HalfScope(const std::string& compute_type, ConstMat b) {
    const ComputeType t = compute_type_from_name(compute_type, "cuda");
    if (t == ComputeType::float32) return;
    set = std::make_unique<cuda::HalfWeights>(t);
    set->add(b.data, b.rows, b.cols);
    cuda::HalfWeights::install(set.get());
  }
  ~HalfScope() { cuda::HalfWeights::install(nullptr); }
};

FArray gemm(const FArray& a, const FArray& b, const std::string& epilogue, const std::string& compute_type) {
  ConstMat A = cmat(a), B = cmat(b);
  const ops::Gemm g = gemm_op(epilogue, A, B);
  const int64_t N = g.epilogue == ops::Epilogue::gated_gelu ? B.rows / 2 : B.rows;
  Dev da(a.data(), a.size()), db(b.data(), b.size()), dy(sizeof(float) * A.rows * N);
  py::gil_scoped_release release;
  const HalfScope half(compute_type, dmat(db, b));
  g(dmat(da, a), dmat(db, b), Mat{dy.f(), A.rows, N, N, Device::cuda}, pool_for(1));
  py::gil_scoped_acquire acquire;
  return to_host(dy, A.rows, N);
}

FArray rms_norm(const FArray& x, const FArray& gamma, float eps) {
  ConstMat X = cmat(x);
  GMLM_CHECK_ARG(gamma.ndim() == 1 && gamma.shape(0) == X.cols, "gamma must be (D,)");
  Dev dx(x.data(), x.size()), dg(gamma.data(), gamma.size()), dy(sizeof(float) * x.size());
  ops::RMSNorm{eps}(dmat(dx, x), dg.f(), Mat{dy.f(), X.rows, X.cols, X.cols, Device::cuda}, nullptr);
  return to_host(dy, X.rows, X.cols);
}

FArray copy_rows(const FArray& x, const std::optional<std::vector<int32_t>>& src, const FArray& y,
                 const std::optional<std::vector<int32_t>>& dst, int64_t n, bool accumulate) {
  ConstMat X = cmat(x), Y0 = cmat(y);
  GMLM_CHECK_ARG(X.cols == Y0.cols, "copy_rows: x and y differ in columns");
  const std::vector<int32_t> s = row_index(src, X.rows, n, "x"), d = row_index(dst, Y0.rows, n, "y");
  Dev dx(x.data(), x.size()), dy(y.data(), y.size()), ds(s.data(), s.size()), dd(d.data(), d.size());
  ops::CopyRows op;
  op.accumulate = accumulate;
  op(dmat(dx, x), src ? ds.buf.as<int32_t>() : nullptr, Mat{dy.f(), Y0.rows, Y0.cols, Y0.cols, Device::cuda},
     dst ? dd.buf.as<int32_t>() : nullptr, n);
  return to_host(dy, Y0.rows, Y0.cols);
}

FArray scale(const FArray& y, float s) {
  ConstMat Y0 = cmat(y);
  Dev dy(y.data(), y.size());
  const ops::Scale op(s);
  op(Mat{dy.f(), Y0.rows, Y0.cols, Y0.cols, Device::cuda});
  return to_host(dy, Y0.rows, Y0.cols);
}

FArray embedding(const FArray& table, const std::vector<int32_t>& ids) {
  ConstMat Tm = cmat(table);
  for (int32_t id : ids) GMLM_CHECK_ARG(id >= 0 && id < Tm.rows, "token id ", id, " outside the table");
  const int64_t n = static_cast<int64_t>(ids.size());
  Dev dt(table.data(), table.size()), di(ids.data(), ids.size()), dy(sizeof(float) * n * Tm.cols);
  ops::Embedding()(dmat(dt, table), di.buf.as<int32_t>(), n, Mat{dy.f(), n, Tm.cols, Tm.cols, Device::cuda});
  return to_host(dy, n, Tm.cols);
}

FArray attention(const FArray& q, const FArray& k, const FArray& v, const std::vector<std::array<int64_t, 4>>& segs,
                 int64_t num_heads, std::optional<FArray> rel_bias, std::optional<std::vector<int32_t>> q_pos) {
  ConstMat Q = cmat(q), Kc = cmat(k), Vc = cmat(v);
  GMLM_CHECK_ARG(num_heads >= 1 && Q.cols % num_heads == 0, "num_heads must divide the width");
  std::vector<ops::AttentionSegment> s;
  for (auto& a : segs) s.push_back({a[0], a[1], a[2], a[3]});
  int64_t max_rel = 0;
  std::unique_ptr<Dev> dbias, dpos;
  if (rel_bias) {
    GMLM_CHECK_ARG(rel_bias->ndim() == 2 && rel_bias->shape(0) == num_heads && rel_bias->shape(1) % 2 == 1,
                   "rel_bias must be (H, 2m+1)");
    max_rel = (rel_bias->shape(1) - 1) / 2;
    dbias = std::make_unique<Dev>(rel_bias->data(), rel_bias->size());
  }
  if (q_pos) {
    GMLM_CHECK_ARG(static_cast<int64_t>(q_pos->size()) == Q.rows, "q_pos needs one entry per query row");
    for (const auto& sg : s)
      for (int64_t i = 0; i < sg.q_len; ++i) {
        const int32_t p = (*q_pos)[sg.q_begin + i];
        GMLM_CHECK_ARG(p >= 0 && p < sg.k_len, "query position ", p, " outside its segment");
      }
    dpos = std::make_unique<Dev>(q_pos->data(), q_pos->size());
  }
  std::vector<float> zeros(static_cast<size_t>(Q.rows * Q.cols), 0.f);
  Dev dq(q.data(), q.size()), dk(k.data(), k.size()), dv(v.data(), v.size()), dout(zeros.data(), zeros.size());
  ops::MultiHeadAttention(num_heads, Q.cols / num_heads)(
      dmat(dq, q), dpos ? dpos->buf.as<int32_t>() : nullptr, dmat(dk, k), dmat(dv, v), s, dbias ? dbias->f() : nullptr,
      max_rel, Mat{dout.f(), Q.rows, Q.cols, Q.cols, Device::cuda}, pool_for(1));
  return to_host(dout, Q.rows, Q.cols);
}

py::tuple vocab_argmax(const FArray& h, const FArray& w, const std::string& compute_type, int32_t bias_col,
                       const std::optional<FArray>& row_bias, const std::optional<FArray>& noise) {
  ConstMat Hm = cmat(h);
  const VocabCall call(Hm, cmat(w).rows, bias_col, row_bias, noise);
  Dev dh(h.data(), h.size()), dw(w.data(), w.size()), dp(sizeof(int32_t) * Hm.rows), dc(sizeof(float) * Hm.rows);
  {
    py::gil_scoped_release release;
    const HalfScope half(compute_type, dmat(dw, w));
    call(dmat(dh, h), dmat(dw, w), dp.buf.as<int32_t>(), dc.f(), pool_for(1));
  }
  py::array_t<int32_t> pred(Hm.rows);
  FArray conf(Hm.rows);
  cuda::copy_to_host(pred.mutable_data(), dp.buf.get(), sizeof(int32_t) * Hm.rows);
  cuda::copy_to_host(conf.mutable_data(), dc.buf.get(), sizeof(float) * Hm.rows);
  return py::make_tuple(pred, conf);
}

}  // namespace cu
#endif

}  // namespace

void register_ops(py::module_& m) {
  py::module_ o = m.def_submodule("ops", "The engine's ops on numpy arrays (tests and benchmarks).");
  o.def("gemm", &gemm, py::arg("a"), py::arg("b"), py::arg("threads") = 1, py::arg("epilogue") = "none",
        "a (M, K) . b (N, K)^T through the engine's GEMM op (tiles on its pool, single-threaded BLAS per tile).");
  o.def("blas_sgemm", &blas_sgemm, py::arg("a"), py::arg("b"), py::arg("threads") = 1,
        "a (M, K) . b (N, K)^T in one call of the BLAS with its own threading (the baseline).");
  py::class_<LowpGemm>(o, "LowpGemm", "The engine's GEMM op with b (N, K) as a bfloat16 / int8 weight.")
      .def(py::init<FArray, const std::string&>(), py::arg("b"), py::arg("compute_type"))
      .def("run", &LowpGemm::run, py::arg("a"), py::arg("threads") = 1, py::arg("reps") = 1,
           "a (M, K) . b^T, reps times (the last result is returned).");
  py::class_<cpu::OnednnMatmul>(o, "OnednnMatmul", "oneDNN's own matmul on (M, K) x (K, N), inputs already in "
                                "the compute type, weights in oneDNN's layout (the ops benchmark's baseline).")
      .def(py::init([](const std::string& t, int64_t M, int64_t N, int64_t K, int threads, bool plain) {
             return std::make_unique<cpu::OnednnMatmul>(cpu::compute_type_from_name(t), M, N, K, threads, plain);
           }), py::arg("compute_type"), py::arg("M"), py::arg("N"), py::arg("K"), py::arg("threads") = 1,
           py::arg("plain_weights") = false)
      .def("run", [](cpu::OnednnMatmul& m, int reps) {
             py::gil_scoped_release release;
             m.run(reps);
           }, py::arg("reps") = 1);
  o.def("rms_norm", &rms_norm, py::arg("x"), py::arg("gamma"), py::arg("eps"), py::arg("threads") = 1, "RMSNorm rows.");
  o.def("copy_rows", &copy_rows, py::arg("x"), py::arg("src"), py::arg("y"), py::arg("dst"), py::arg("n"),
        py::arg("accumulate") = false, py::arg("threads") = 1,
        "A copy of y with y[dst[i]] = x[src[i]] (accumulate: +=) for i < n; None: the identity (ops::CopyRows).");
  o.def("scale", &scale, py::arg("y"), py::arg("s"), "A copy of y times s (ops::Scale).");
  o.def("attention", &attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("segments"), py::arg("num_heads"),
        py::arg("rel_bias") = py::none(), py::arg("q_pos") = py::none(), py::arg("threads") = 1,
        "Fused multi-head attention over packed segments (q_begin, q_len, k_begin, k_len).");
  o.def("vocab_argmax", &vocab_argmax, py::arg("h"), py::arg("w"), py::arg("threads") = 1, py::arg("bias_col") = -1,
        py::arg("row_bias") = py::none(), py::arg("noise") = py::none(),
        "Fused h . w^T + log_softmax + argmax: (pred, conf) per row; row_bias (M) lowers column bias_col's logit\n"
        "per row; noise (M, V): Gumbel-max sampling with those values.");
  o.def("relative_position_bucket", &relative_position_bucket, py::arg("relative_position"), py::arg("bidirectional"),
        py::arg("num_buckets"), py::arg("max_distance"), "T5's bucket of key_pos - query_pos.");
  o.def("lowest_confidence", [](const std::vector<float>& conf, int64_t n) {
        std::vector<uint8_t> m(conf.size());
        ops::lowest_confidence(conf.data(), static_cast<int64_t>(conf.size()), n, m.data());
        return std::vector<bool>(m.begin(), m.end());
      }, py::arg("conf"), py::arg("n"), "Mask of the n lowest-confidence positions (ties: lower index).");
  o.def("repeat_remask", [](const std::vector<int32_t>& tokens, const std::vector<float>& conf,
                            const std::vector<bool>& word_piece) {
        GMLM_CHECK_ARG(conf.size() == tokens.size(), "repeat_remask: ", tokens.size(), " tokens, ", conf.size(), " conf");
        for (int32_t t : tokens)
          GMLM_CHECK_ARG(t >= 0 && static_cast<size_t>(t) < word_piece.size(), "repeat_remask: token ", t, " out of range");
        std::vector<uint8_t> w(word_piece.begin(), word_piece.end()), m(tokens.size(), 0);
        ops::repeat_remask(tokens.data(), conf.data(), static_cast<int64_t>(tokens.size()), w.data(), m.data());
        return std::vector<bool>(m.begin(), m.end());
      }, py::arg("tokens"), py::arg("conf"), py::arg("word_piece"),
      "Repeat re-masking of one candidate: the mask of repeated word pieces and bigrams (lower conf).");
  o.def("ctc_repeat_blanks", [](std::vector<int32_t> tokens, std::vector<float> conf, const std::vector<float>& blank_lp,
                                int32_t blank, float penalty, const std::vector<bool>& word_piece) {
        GMLM_CHECK_ARG(conf.size() == tokens.size() && blank_lp.size() == tokens.size(), "ctc_repeat_blanks: ",
                       tokens.size(), " tokens, ", conf.size(), " conf, ", blank_lp.size(), " blank_lp");
        for (int32_t t : tokens)
          GMLM_CHECK_ARG(t >= 0 && static_cast<size_t>(t) < word_piece.size(), "ctc_repeat_blanks: token ", t,
                         " out of range");
        std::vector<uint8_t> w(word_piece.begin(), word_piece.end());
        ops::ctc_repeat_blanks(tokens.data(), conf.data(), blank_lp.data(), static_cast<int64_t>(tokens.size()), blank,
                               penalty, w.data());
        return py::make_tuple(tokens, conf);
      }, py::arg("tokens"), py::arg("conf"), py::arg("blank_lp"), py::arg("blank"), py::arg("penalty"),
      py::arg("word_piece"), "A ctc model's repeat_remask on one canvas: (tokens, conf) after it.");
  // decoding/rules.h, for the tests that hold it to its Python twin (common.py)
  o.def("hash_bits", [](uint64_t seed, uint64_t stream, uint64_t src_hash, uint64_t k, uint64_t t, uint64_t i,
                        uint64_t v) { return rules::draw(rules::prefix(seed, stream, src_hash, k, t, i), v); },
        py::arg("seed"), py::arg("stream"), py::arg("src_hash"), py::arg("k"), py::arg("t"), py::arg("i"), py::arg("v"),
        "The hash RNG's 64 bits of one draw (rules::prefix then rules::draw).");
  o.def("source_hash", [](const std::vector<int32_t>& ids) {
        return rules::source_hash(ids.data(), static_cast<int64_t>(ids.size()));
      }, py::arg("ids"), "FNV-1a 64 of the encoder input ids.");
  o.def("gumbel", &rules::gumbel, py::arg("h"), "Gumbel noise of one draw's bits (float32).");
  o.def("init_token", &rules::init_token, py::arg("seed"), py::arg("src_hash"), py::arg("k"), py::arg("i"),
        py::arg("vocab"), py::arg("first_id"), "The random-init token of one position.");
  o.def("conf_less", &rules::conf_less, py::arg("a"), py::arg("ia"), py::arg("b"), py::arg("ib"),
        "The re-masking order: (conf, index) ascending, NaN above +inf.");
  o.def("linear_remask_count", &rules::linear_remask_count, py::arg("L"), py::arg("T"), py::arg("t"),
        "Positions the linear schedule masks again after pass t of T.");
  o.def("repeats", [](const std::vector<int32_t>& tokens, const std::vector<bool>& word_piece) {
        for (int32_t t : tokens)
          GMLM_CHECK_ARG(t >= 0 && static_cast<size_t>(t) < word_piece.size(), "repeats: token ", t, " out of range");
        std::vector<uint8_t> w(word_piece.begin(), word_piece.end());
        return ops::repeats(tokens.data(), static_cast<int64_t>(tokens.size()), w.data());
      }, py::arg("tokens"), py::arg("word_piece"),
      "Whether tokens repeat a word piece or a bigram (repeat_penalty's test).");
  o.def("mean_score", [](const std::vector<float>& conf) {
        return ops::mean_score(conf.data(), static_cast<int64_t>(conf.size()));
      }, py::arg("conf"), "Mean in float64 as numpy sums.");
  o.def("length_candidates", [](const std::vector<float>& logits, int64_t k) {
        std::vector<int32_t> l(k);
        ops::length_candidates(logits.data(), static_cast<int64_t>(logits.size()), k, l.data());
        return l;
      }, py::arg("logits"), py::arg("k"), "The k most probable lengths (ties: shorter first).");
  o.def("column_block", &ops::Gemm::column_block, py::arg("n"), "GEMM column block width for N columns.");
#if GMLM_WITH_CUDA
  py::module_ c = m.def_submodule("cuda_ops", "The same ops on the CUDA device (numpy in and out), for tests.");
  c.def("gemm", &cu::gemm, py::arg("a"), py::arg("b"), py::arg("epilogue") = "none", py::arg("compute_type") = "float32",
        "a . b^T through cuBLAS; float16 / bfloat16: b as a half-precision weight (cuda/half_weights.h).");
  c.def("rms_norm", &cu::rms_norm, py::arg("x"), py::arg("gamma"), py::arg("eps"), "RMSNorm rows.");
  c.def("embedding", &cu::embedding, py::arg("table"), py::arg("ids"), "Rows of table.");
  c.def("copy_rows", &cu::copy_rows, py::arg("x"), py::arg("src"), py::arg("y"), py::arg("dst"), py::arg("n"),
        py::arg("accumulate") = false, "ops::CopyRows on the device.");
  c.def("scale", &cu::scale, py::arg("y"), py::arg("s"), "ops::Scale on the device.");
  c.def("attention", &cu::attention, py::arg("q"), py::arg("k"), py::arg("v"), py::arg("segments"),
        py::arg("num_heads"), py::arg("rel_bias") = py::none(), py::arg("q_pos") = py::none(),
        "Fused multi-head attention over packed segments (q_begin, q_len, k_begin, k_len).");
  c.def("vocab_argmax", &cu::vocab_argmax, py::arg("h"), py::arg("w"), py::arg("compute_type") = "float32",
        py::arg("bias_col") = -1, py::arg("row_bias") = py::none(), py::arg("noise") = py::none(),
        "(pred, conf) per row, as ops.vocab_argmax; compute_type as for gemm.");
#endif
}

}  // namespace gmlm
