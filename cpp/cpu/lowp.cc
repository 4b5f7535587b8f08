#include "cpu/lowp.h"

#include "cpu/gemm_s8_avx2.h"
#include "cpu/gemv_s8.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <mutex>
#include <tuple>
#include <unordered_map>

#include "core/error.h"
#include "core/scratch.h"
#include "cpu/kernels.h"

#if GMLM_WITH_ONEDNN
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace gmlm::cpu {

namespace {
thread_local const LowpWeights* t_current = nullptr;
std::atomic<uint64_t> g_calls{0};
}  // namespace

uint64_t next_call_id() { return ++g_calls; }

void LowpWeights::install(const LowpWeights* set) { t_current = set; }
const LowpWeights* LowpWeights::current() { return t_current; }

#if GMLM_WITH_ONEDNN

// A weight (or a range of its rows) in the layout oneDNN's matmul picks for it ("any": blocked for
// AMX / VNNI), reordered once on first use. Plain (N, K) weights cost the matmul a repacking on
// every call (2-3x slower than its own layout at the decoder's shapes).
struct Packed {
  dnnl::memory::desc desc;
  dnnl::memory mem;
  // unique over the process: a new Packed may reuse a freed one's address (another Translator), so
  // the per-thread bindings of execute() recognise their weights by this id, never by the address
  uint64_t id = 0;
};

static uint64_t next_packed_id() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

struct LowpWeights::Weight {
  ComputeType type;
  int64_t N = 0, K = 0;
  std::vector<uint16_t> bf16;     // (N, K) bfloat16
  std::vector<int8_t> s8;         // (N, K) int8
  std::vector<float> scale;       // (N) int8 dequantisation scale per output channel
  GemvWeight gemv;                // int8, the few-rows path (cpu/gemv_s8.h); empty where unavailable
  GemmS8Avx2Weight avx2;          // int8 on AVX2 (cpu/gemm_s8_avx2.h); empty where oneDNN and gemv cover it
  mutable std::mutex mutex;       // guards packed
  mutable std::map<std::pair<int64_t, int64_t>, std::unique_ptr<Packed>> packed;  // by (first row, rows)
};

namespace {

using dnnl::memory;

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

uint16_t to_bf16(float x) {  // round to nearest even (NaN stays NaN)
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

memory::data_type in_type(ComputeType t) {
  return t == ComputeType::int8 ? memory::data_type::s8 : memory::data_type::bf16;
}
memory::data_type acc_type(ComputeType t) {
  return t == ComputeType::int8 ? memory::data_type::s32 : memory::data_type::f32;
}

const Packed& packed(const LowpWeights::Weight& w, int64_t row, int64_t n) {
  std::lock_guard<std::mutex> lock(w.mutex);
  auto it = w.packed.find({row, n});
  if (it != w.packed.end()) return *it->second;
  const int64_t K = w.K;
  const memory::data_type in = in_type(w.type);
  // the layout oneDNN wants for these weights (it does not depend on the rows of the source)
  memory::desc src({32, K}, in, memory::format_tag::ab), any({K, n}, in, memory::format_tag::any),
      dst({32, n}, acc_type(w.type), memory::format_tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(cpu_engine(), src, any, dst, attr);
  } catch (const dnnl::error& e) {
    throw std::runtime_error(str_cat("oneDNN has no ", compute_type_name(w.type), " matmul for N=", n, " K=", K,
                                     " on this CPU (", onednn_info(), "): ", e.what()));
  }
  auto p = std::make_unique<Packed>();
  p->id = next_packed_id();
  p->desc = pd.weights_desc();
  p->mem = memory(p->desc, cpu_engine());
  const void* plain = w.type == ComputeType::int8 ? static_cast<const void*>(w.s8.data() + row * K)
                                                  : static_cast<const void*>(w.bf16.data() + row * K);
  memory from(memory::desc({K, n}, in, memory::dims{1, K}), cpu_engine(), const_cast<void*>(plain));
  dnnl::stream stream(cpu_engine());
  dnnl::reorder(from, p->mem).execute(stream, from, p->mem);
  stream.wait();
  return *w.packed.emplace(std::make_pair(row, n), std::move(p)).first->second;
}

// One matmul primitive per shape and layout, created on first use and kept.
struct Key {
  int64_t M, N, K;
  int type;
  bool operator==(const Key& o) const { return std::tie(M, N, K, type) == std::tie(o.M, o.N, o.K, o.type); }
};
struct KeyHash {
  size_t operator()(const Key& k) const {
    size_t h = 1469598103934665603ull;
    for (int64_t v : {k.M, k.N, k.K, static_cast<int64_t>(k.type)}) h = (h ^ static_cast<size_t>(v)) * 1099511628211ull;
    return h;
  }
};

struct Prim {
  dnnl::matmul prim;
  memory::desc src, dst;
  size_t scratch_bytes = 0;
};

// M rows of plain source, the packed weights' layout, M x N plain accumulators (s32 or f32)
const Prim& primitive(const Key& k, const memory::desc& wei) {
  static std::mutex mutex;
  static std::unordered_map<Key, std::unique_ptr<Prim>, KeyHash> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(k);
  if (it != cache.end()) return *it->second;
  const ComputeType t = static_cast<ComputeType>(k.type);
  auto p = std::make_unique<Prim>();
  p->src = memory::desc({k.M, k.K}, in_type(t), memory::format_tag::ab);
  p->dst = memory::desc({k.M, k.N}, acc_type(t), memory::format_tag::ab);
  dnnl::primitive_attr attr;
  // the engine's pool threads execute primitives concurrently: each brings its own scratchpad
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  dnnl::matmul::primitive_desc pd;
  try {
    pd = dnnl::matmul::primitive_desc(cpu_engine(), p->src, wei, p->dst, attr);
  } catch (const dnnl::error& e) {
    throw std::runtime_error(str_cat("oneDNN has no ", compute_type_name(t), " matmul for M=", k.M, " N=", k.N,
                                     " K=", k.K, " on this CPU (", onednn_info(), "): ", e.what()));
  }
  p->scratch_bytes = pd.scratchpad_desc().get_size();
  p->prim = dnnl::matmul(pd);
  return *cache.emplace(k, std::move(p)).first->second;
}

void execute(const Prim& p, void* src, const Packed& wei, void* dst) {
  // per thread and primitive: the memory objects and the argument map, made once (creating them
  // on every call cost about as much as a small matmul); only the data pointers change
  struct Bound {
    memory src, dst, pad;
    uint64_t wei_id = 0;  // Packed::id of the weights in args
    std::unordered_map<int, memory> args;
  };
  thread_local dnnl::stream stream(cpu_engine());
  thread_local std::vector<uint8_t> scratch;
  thread_local std::unordered_map<const Prim*, Bound> bound;
  if (scratch.size() < p.scratch_bytes) {
    scratch.resize(p.scratch_bytes);
    bound.clear();  // the scratchpad moved
  }
  auto it = bound.find(&p);
  if (it == bound.end()) {
    Bound b;
    b.src = memory(p.src, cpu_engine(), src);
    b.dst = memory(p.dst, cpu_engine(), dst);
    b.pad = memory(memory::desc({static_cast<memory::dim>(scratch.size())}, memory::data_type::u8, memory::dims{1}),
                   cpu_engine(), scratch.data());
    b.args = {{DNNL_ARG_SRC, b.src}, {DNNL_ARG_DST, b.dst}, {DNNL_ARG_SCRATCHPAD, b.pad}};
    it = bound.emplace(&p, std::move(b)).first;
  }
  Bound& b = it->second;
  b.src.set_data_handle(src);
  b.dst.set_data_handle(dst);
  if (b.wei_id != wei.id) {
    b.args[DNNL_ARG_WEIGHTS] = wei.mem;
    b.wei_id = wei.id;
  }
  p.prim.execute(stream, b.args);
  stream.wait();
}

void single_threaded_openmp() {
  thread_local bool done = false;  // oneDNN runs inside the engine's pool tasks: no nested teams
  if (!done) {
    omp_set_num_threads(1);
    done = true;
  }
}

}  // namespace

bool onednn_built() { return true; }

static bool onednn_has(dnnl::cpu_isa want) {
  const dnnl::cpu_isa isa = dnnl::get_effective_cpu_isa();
  return (static_cast<unsigned>(isa) & static_cast<unsigned>(want)) == static_cast<unsigned>(want);
}

// oneDNN's s8 x s8 -> s32 sums are exact where it multiplies with VNNI (vpdpbusd) or AMX; on plain
// AVX2 / AVX-512 its kernels use vpmaddubsw, whose int16 pair sums saturate (cpu/gemm_s8_avx2.h).
static bool onednn_int8_exact() {
  static const bool exact = onednn_has(dnnl::cpu_isa::avx512_core_vnni) || onednn_has(dnnl::cpu_isa::avx2_vnni);
  return exact;
}

bool native_support(ComputeType t) {
  switch (t) {
    case ComputeType::int8:
      return onednn_int8_exact() || gemm_s8_avx2_available();
    case ComputeType::bfloat16:
      return onednn_has(dnnl::cpu_isa::avx512_core_bf16);
    default:
      return true;
  }
}

std::string onednn_info() {
  const dnnl_version_t* v = dnnl_version();
  std::string isa = "?";
  switch (dnnl::get_effective_cpu_isa()) {
    case dnnl::cpu_isa::avx512_core_amx: isa = "avx512_core_amx"; break;
    case dnnl::cpu_isa::avx512_core_bf16: isa = "avx512_core_bf16"; break;
    case dnnl::cpu_isa::avx512_core_vnni: isa = "avx512_core_vnni"; break;
    case dnnl::cpu_isa::avx512_core: isa = "avx512_core"; break;
    case dnnl::cpu_isa::avx2_vnni: isa = "avx2_vnni"; break;
    case dnnl::cpu_isa::avx2: isa = "avx2"; break;
    default: isa = "other"; break;
  }
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch) +
         " (ISA " + isa + ")";
}

LowpWeights::LowpWeights(ComputeType type) : type_(type) {}
LowpWeights::~LowpWeights() = default;

void LowpWeights::add(const float* w, int64_t N, int64_t K) {
  auto lw = std::make_unique<Weight>();
  lw->type = type_;
  lw->N = N;
  lw->K = K;
  if (type_ == ComputeType::bfloat16) {
    lw->bf16.resize(static_cast<size_t>(N * K));
    for (int64_t i = 0; i < N * K; ++i) lw->bf16[i] = to_bf16(w[i]);
  } else if (type_ == ComputeType::int8) {
    lw->s8.resize(static_cast<size_t>(N * K));
    lw->scale.resize(static_cast<size_t>(N));
    for (int64_t n = 0; n < N; ++n) {
      float m = 0.f;
      for (int64_t k = 0; k < K; ++k) m = std::max(m, std::fabs(w[n * K + k]));
      const float s = m > 0.f ? m / 127.f : 1.f;
      lw->scale[n] = s;
      for (int64_t k = 0; k < K; ++k)
        lw->s8[n * K + k] = static_cast<int8_t>(std::lrint(std::clamp(w[n * K + k] / s, -127.f, 127.f)));
    }
    lw->gemv = pack_gemv_s8(lw->s8.data(), N, K);
    // the AVX2 kernel takes the products neither oneDNN (where inexact) nor the VNNI few-rows kernel does
    if (!onednn_int8_exact() || lw->gemv.packed.empty()) lw->avx2 = pack_gemm_s8_avx2(lw->s8.data(), N, K);
  } else {
    return;  // float32: nothing to prepare
  }
  weights_[w] = std::move(lw);
}

const LowpWeights::Weight* LowpWeights::find(const float* b, int64_t ldb, int64_t* row) const {
  auto it = weights_.upper_bound(b);
  if (it == weights_.begin()) return nullptr;
  --it;
  const Weight& w = *it->second;
  const int64_t off = b - it->first;
  if (ldb != w.K || off % w.K != 0 || off / w.K >= w.N) return nullptr;
  *row = off / w.K;
  return &w;
}

bool lowp_on_avx2_kernel(const LowpWeights::Weight& w, int64_t M) {
  return w.type == ComputeType::int8 && !w.avx2.packed.empty() && (M <= kGemvMaxRows || !onednn_int8_exact());
}

// Rows of a primitive: M rounded up to a few buckets, so that the number of primitives (each a JIT
// compilation) stays small whatever the batch; the padding rows are zeros and their results dropped.
static int64_t padded_rows(int64_t M) { return M <= 16 ? 16 : (M + 31) / 32 * 32; }

void lowp_gemm_nt(const LowpWeights::Weight& w, int64_t row, int64_t M, int64_t N, const float* A, int64_t lda,
                  float beta, float* C, int64_t ldc, uint64_t call) {
  GMLM_CHECK(row >= 0 && row + N <= w.N, "lowp gemm: rows [", row, ", ", row + N, ") of a weight with ", w.N);
  GMLM_CHECK(beta == 0.f || beta == 1.f, "lowp gemm: beta must be 0 or 1");
  single_threaded_openmp();
  const int64_t K = w.K, Mp = padded_rows(M);
  // the converted A of this thread's previous tile, reused when the tile shares its rows
  thread_local struct { uint64_t call; const float* A; int64_t M, K, lda; int type; } last{};
  const bool reuse = call != 0 && last.call == call && last.A == A && last.M == M && last.K == K && last.lda == lda &&
                     last.type == static_cast<int>(w.type);
  last = {call, A, M, K, lda, static_cast<int>(w.type)};
  const bool bf16 = w.type == ComputeType::bfloat16;
  const Kernels& kern = kernels();
  float* a_scale = thread_scratch(5, static_cast<size_t>(M));
  void* a = thread_scratch(4, static_cast<size_t>(Mp * K) / (bf16 ? 2 : 4) + 16);
  if (!reuse) {
    if (bf16) {
      auto* ab = static_cast<uint16_t*>(a);
      for (int64_t m = 0; m < M; ++m) kern.to_bf16(A + m * lda, K, ab + m * K);
      std::memset(ab + M * K, 0, sizeof(uint16_t) * (Mp - M) * K);
    } else {  // int8: activations per row
      auto* aq = static_cast<int8_t*>(a);
      for (int64_t m = 0; m < M; ++m) a_scale[m] = kern.quantize_s8(A + m * lda, K, aq + m * K);
      std::memset(aq + M * K, 0, static_cast<size_t>((Mp - M) * K));
    }
  }
  // the product of the padded rows into scratch (f32 or s32, both 4 bytes), then the real rows into C.
  // int8, all with the same exact int32 sums: a few rows on AVX512-VNNI, the GEMV kernel (without
  // oneDNN's fixed costs); on AVX2, the AVX2 kernel for a few rows, and for all rows where oneDNN's
  // sums are not exact; else oneDNN
  float* acc = thread_scratch(6, static_cast<size_t>(Mp * N));
  if (!bf16 && M <= kGemvMaxRows && !w.gemv.packed.empty() && row % 64 == 0 && N % 64 == 0) {
    gemv_s8(w.gemv, static_cast<const int8_t*>(a), K, M, K, row, N, reinterpret_cast<int32_t*>(acc), N);
  } else if (lowp_on_avx2_kernel(w, M)) {
    gemm_s8_avx2(w.avx2, static_cast<const int8_t*>(a), K, M, row, N, reinterpret_cast<int32_t*>(acc), N);
  } else {
    const Packed& wp = packed(w, row, N);
    execute(primitive({Mp, N, K, static_cast<int>(w.type)}, wp.desc), a, wp, acc);
  }
  const float* ws = w.scale.data() + row;
  for (int64_t m = 0; m < M; ++m) {
    float* c = C + m * ldc;
    if (bf16) {
      const float* r = acc + m * N;
      if (beta == 0.f)
        std::memcpy(c, r, sizeof(float) * N);
      else
        for (int64_t n = 0; n < N; ++n) c[n] += r[n];
      continue;
    }
    kern.dequant_s32(reinterpret_cast<const int32_t*>(acc) + m * N, a_scale[m], ws, c, N, beta != 0.f);
  }
}

struct OnednnMatmul::Impl {
  dnnl::matmul prim;
  std::unordered_map<int, memory> args;
  int threads = 1;
};

OnednnMatmul::OnednnMatmul(ComputeType type, int64_t M, int64_t N, int64_t K, int threads, bool plain_weights)
    : impl_(std::make_unique<Impl>()) {
  GMLM_CHECK_ARG(type != ComputeType::float32, "OnednnMatmul: bfloat16 or int8");
  GMLM_CHECK_ARG(M > 0 && N > 0 && K > 0 && threads >= 1, "OnednnMatmul: M, N, K and threads must be positive");
  impl_->threads = threads;
  const bool int8 = type == ComputeType::int8;
  const memory::data_type in = in_type(type);
  memory::desc src({M, K}, in, memory::format_tag::ab), wei_any({K, N}, in, memory::format_tag::any),
      wei_plain({K, N}, in, memory::format_tag::ba), dst({M, N}, memory::data_type::f32, memory::format_tag::ab);
  dnnl::primitive_attr attr;
  if (int8) {
    attr.set_scales_mask(DNNL_ARG_SRC, 0);
    attr.set_scales_mask(DNNL_ARG_WEIGHTS, 1 << 1);
  }
  dnnl::matmul::primitive_desc pd(cpu_engine(), src, plain_weights ? wei_plain : wei_any, dst, attr);
  impl_->prim = dnnl::matmul(pd);
  dnnl::stream stream(cpu_engine());
  memory s(pd.src_desc(), cpu_engine()), wp(wei_plain, cpu_engine()), w(pd.weights_desc(), cpu_engine()),
      d(pd.dst_desc(), cpu_engine());
  // deterministic small values (the timing does not depend on them)
  const size_t es = int8 ? 1 : 2;
  auto fill = [&](memory& m, size_t n) {
    auto* p = static_cast<uint8_t*>(m.get_data_handle());
    for (size_t i = 0; i < n * es; ++i) p[i] = static_cast<uint8_t>((i * 2654435761u >> 13) & (int8 ? 0x3f : 0x3e));
  };
  fill(s, static_cast<size_t>(M * K));
  fill(wp, static_cast<size_t>(K * N));
  dnnl::reorder(wp, w).execute(stream, wp, w);  // the weights in the primitive's layout, once
  stream.wait();
  impl_->args = {{DNNL_ARG_SRC, s}, {DNNL_ARG_WEIGHTS, w}, {DNNL_ARG_DST, d}};
  if (int8) {
    memory ss({{1}, memory::data_type::f32, memory::format_tag::a}, cpu_engine()),
        ws({{N}, memory::data_type::f32, memory::format_tag::a}, cpu_engine());
    std::fill_n(static_cast<float*>(ss.get_data_handle()), 1, 0.01f);
    std::fill_n(static_cast<float*>(ws.get_data_handle()), N, 0.02f);
    impl_->args[DNNL_ARG_ATTR_SCALES | DNNL_ARG_SRC] = ss;
    impl_->args[DNNL_ARG_ATTR_SCALES | DNNL_ARG_WEIGHTS] = ws;
  }
}

OnednnMatmul::~OnednnMatmul() = default;

void OnednnMatmul::run(int reps) {
  const int before = omp_get_max_threads();  // this thread may also run the engine's tiles (1 thread each)
  omp_set_num_threads(impl_->threads);
  dnnl::stream stream(cpu_engine());
  for (int i = 0; i < reps; ++i) impl_->prim.execute(stream, impl_->args);
  stream.wait();
  omp_set_num_threads(before);
}

#else  // no oneDNN in this build

struct LowpWeights::Weight {};

bool onednn_built() { return false; }
bool native_support(ComputeType t) { return t == ComputeType::float32; }
std::string onednn_info() { return "not built"; }
LowpWeights::LowpWeights(ComputeType type) : type_(type) {}
LowpWeights::~LowpWeights() = default;
void LowpWeights::add(const float*, int64_t, int64_t) {
  if (type_ != ComputeType::float32)
    throw std::invalid_argument(std::string("compute_type ") + compute_type_name(type_) +
                                " needs an engine built with oneDNN (this one is not)");
}
const LowpWeights::Weight* LowpWeights::find(const float*, int64_t, int64_t*) const { return nullptr; }
bool lowp_on_avx2_kernel(const LowpWeights::Weight&, int64_t) { return false; }
void lowp_gemm_nt(const LowpWeights::Weight&, int64_t, int64_t, int64_t, const float*, int64_t, float, float*,
                  int64_t, uint64_t) {
  throw std::runtime_error("lowp_gemm_nt: built without oneDNN");
}
struct OnednnMatmul::Impl {};
OnednnMatmul::OnednnMatmul(ComputeType, int64_t, int64_t, int64_t, int, bool) {
  throw std::invalid_argument("OnednnMatmul: built without oneDNN");
}
OnednnMatmul::~OnednnMatmul() = default;
void OnednnMatmul::run(int) {}

#endif

}  // namespace gmlm::cpu
