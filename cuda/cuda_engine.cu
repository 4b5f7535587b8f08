// The CUDA engine (docs/cuda.md): the device model (weights in the compute type, converted once)
// and the device refinement loop.
//
// Per batch: the encoder and the cross-attention K/V of every decoder layer run once (float32 K/V,
// shared by all length candidates and iterations); the length candidates are chosen on the device
// and copied to the host once (the host needs them to lay out the candidates' rows). Then the
// loop: each iteration is one decoder pass over the rows of the live candidates (padded to a shape
// bucket), the vocabulary GEMM + fused log-softmax/argmax on those rows, and one update kernel per
// candidate (predictions into masked positions, early stop, re-masking, next input). An
// iteration's work is captured once per (rows bucket, candidates bucket) as a CUDA graph and
// replayed; the iteration counter and all options live in device memory, so one graph serves
// every t, seed and option set. The host never waits for the iteration it just launched: it reads
// the done flags of iteration t-2 (copied asynchronously to pinned memory) before launching t,
// while t-1 keeps the GPU busy; when candidates have finished, the live ones are re-packed (new
// row tables, possibly a smaller bucket) and the loop stops as soon as all are done. The tokens and
// confidences then come to the host, which scores and ranks the candidates with the CPU engine's functions.
//
// Differences from the CPU engine, by design: every row of a live candidate goes through all
// decoder layers and the vocabulary GEMM (the CPU engine restricts the last layer and the vocabulary
// step to masked rows; with fixed-shape graphs the GPU computes all rows and keeps the masked ones,
// which gives the same tokens); finished candidates keep their rows until the next re-pack.
#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <cstddef>
#include <map>
#include <tuple>
#include <stdexcept>
#include <utility>

#include "cuda/cuda_engine.h"
#include "cuda/device.h"
#include "cuda/launch.h"
#include "decoding/rules.h"
#include "layers/transformer.h"
#include "ops/select.h"

namespace gmlm::cuda {

namespace {

// Pinned host memory (for asynchronous copies), grow-only.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  ~PinnedBuffer() {
    if (ptr_) cudaFreeHost(ptr_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  void reserve(std::size_t bytes) {
    if (bytes <= bytes_ && ptr_) return;
    if (ptr_) cudaFreeHost(ptr_);
    ptr_ = nullptr;
    bytes_ = 0;
    GMLM_CUDA_CHECK(cudaHostAlloc(&ptr_, std::max<std::size_t>(bytes, 64), cudaHostAllocDefault));
    bytes_ = std::max<std::size_t>(bytes, 64);
  }
  template <typename T> T* as() const { return static_cast<T*>(ptr_); }

 private:
  void* ptr_ = nullptr;
  std::size_t bytes_ = 0;
};

// Shape buckets: 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, ... (powers of two and 1.5x between them), so
// that a handful of graphs covers every batch and at most a third of a bucket is padding.
int64_t bucket(int64_t n) {
  int64_t b = 1;
  while (b < n) b = b < 4 ? b + 1 : ((b & (b - 1)) == 0 ? b + b / 2 : b / 3 * 4);
  return b;
}


struct DevSelfAttn {
  DeviceBuffer ln, qkv, o;  // layer.0.layer_norm (f32, D); SelfAttention.{q,k,v} stacked (3I, D); .o (D, I)
};
struct DevCrossAttn {
  DeviceBuffer ln, q, o;    // layer.1.layer_norm (f32); EncDecAttention.q (I, D), .o (D, I)
};
struct DevFfn {
  DeviceBuffer ln, wi, wo;  // layer_norm (f32); wi (F, D) or [wi_0; wi_1] (2F, D); wo (D, F)
};
struct DevEncoderBlock {
  DevSelfAttn self_attn;
  DevFfn ffn;
};
struct DevDecoderBlock {
  DevSelfAttn self_attn;
  DevCrossAttn cross_attn;
  DevFfn ffn;
};

struct GraphEntry {
  cudaGraphExec_t exec = nullptr;
};

}  // namespace

struct CudaEngine::Impl {
  T5Config cfg;
  CType ct = CType::float32;
  int device = 0;
  std::vector<uint8_t> word_pieces;  // per vocabulary id (repeat_penalty); empty: not given
  int64_t D = 0, I = 0, F = 0, Fw = 0, V = 0, H = 0, Dh = 0, nl = 0, kv_ld = 0, maxS = 0, maxT = 0;
  bool use_graphs = true;
  EngineStats stats;

  // --- weights (compute type unless noted) ---
  DeviceBuffer shared, lm_head, length_head, embed_positions /* f32 */;
  std::vector<DevEncoderBlock> enc;
  std::vector<DevDecoderBlock> dec;
  DeviceBuffer enc_final, dec_final, enc_bias, dec_bias;  // f32
  DeviceBuffer cross_kv;                                   // (nl * 2I, D): per layer [k; v]

  // --- runtime ---
  cudaStream_t stream = nullptr;
  cublasHandle_t blas = nullptr;
  DeviceBuffer blas_ws;
  cudaEvent_t done_ev[2] = {nullptr, nullptr};
  cudaEvent_t stage_ev[2] = {nullptr, nullptr};
  int stage_slot = 0;

  // activations, sized for `act_rows` rows
  int64_t act_rows = 0;
  DeviceBuffer x, h, qkv, att, f, a, states, logits, pred, pconf;
  int64_t logit_chunk = 0;
  // encoder side
  DeviceBuffer enc_tab, ckv, enc_states, len_logits, lengths;
  // home state
  DeviceBuffer tokens, conf, masked, prev, in_ids, history, cand_tab, cand_hash, home_tab, done, passes, params;
  // work tables of the current bucket: work_home, self k_begin, self k_len, self q_pos, cross k_begin,
  // cross k_len (6 x rows_cap), work_cand, work_begin (2 x cands_cap)
  DeviceBuffer work_tab;
  int64_t work_rows_cap = 0, work_cands_cap = 0;
  PinnedBuffer stage[2], done_host[2];
  std::map<std::tuple<int64_t, int64_t, bool>, GraphEntry> graphs;  // (rows, candidates, history)

  ~Impl() {
    clear_graphs();
    if (blas) destroy_cublas(blas);
    for (cudaEvent_t e : done_ev)
      if (e) cudaEventDestroy(e);
    for (cudaEvent_t e : stage_ev)
      if (e) cudaEventDestroy(e);
    if (stream) cudaStreamDestroy(stream);
  }

  void clear_graphs() {
    for (auto& [key, g] : graphs)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    graphs.clear();
  }

  // A buffer that a captured graph may point to: growing it invalidates the graphs.
  void grow(DeviceBuffer& b, std::size_t bytes) {
    if (b.reserve(bytes)) clear_graphs();
  }

  // --- loading ---
  DeviceBuffer upload(const WeightRef& w, bool compute_type) const {
    int64_t n = 1;
    for (int64_t d : w.shape) n *= d;
    const CType t = compute_type ? ct : CType::float32;
    DeviceBuffer b(ctype_size(t) * n);
    upload_converted(w.data, b.get(), t, n);
    return b;
  }
  DeviceBuffer upload_stack(const WeightMap& wm, const std::vector<std::string>& names) const {
    std::vector<float> host;
    for (const auto& n : names) {
      const WeightRef& w = wm.at(n);
      int64_t cnt = 1;
      for (int64_t d : w.shape) cnt *= d;
      host.insert(host.end(), w.data, w.data + cnt);
    }
    DeviceBuffer b(ctype_size(ct) * host.size());
    upload_converted(host.data(), b.get(), ct, static_cast<int64_t>(host.size()));
    return b;
  }
  DeviceBuffer upload_host(const std::vector<float>& v) const {
    DeviceBuffer b(sizeof(float) * v.size());
    copy_to_device(b.get(), v.data(), sizeof(float) * v.size());
    return b;
  }

  void load_ffn(const WeightMap& w, const std::string& p, DevFfn& f) {
    f.ln = upload(w.at(p + ".layer_norm.weight"), false);
    f.wo = upload(w.at(p + ".DenseReluDense.wo.weight"), true);
    f.wi = cfg.gated_gelu ? upload_stack(w, {p + ".DenseReluDense.wi_0.weight", p + ".DenseReluDense.wi_1.weight"})
                          : upload(w.at(p + ".DenseReluDense.wi.weight"), true);
  }
  void load_self(const WeightMap& w, const std::string& p, DevSelfAttn& s) {
    s.ln = upload(w.at(p + ".layer_norm.weight"), false);
    s.qkv = upload_stack(w, {p + ".SelfAttention.q.weight", p + ".SelfAttention.k.weight", p + ".SelfAttention.v.weight"});
    s.o = upload(w.at(p + ".SelfAttention.o.weight"), true);
  }

  Impl(const T5Config& config, const WeightMap& w, const std::string& compute_type, int dev,
       std::vector<uint8_t> pieces)
      : cfg(config), ct(compute_type_from_name(compute_type, "cuda")), device(dev), word_pieces(std::move(pieces)) {
    cfg.validate();
    GMLM_CHECK_ARG(word_pieces.empty() || static_cast<int64_t>(word_pieces.size()) == cfg.vocab_size,
                   "word_pieces has ", word_pieces.size(), " flags for a vocabulary of ", cfg.vocab_size);
    GMLM_CHECK_ARG(cfg.gmlm && !cfg.ctc(), "the CUDA engine decodes gmlm models only (this is an ", cfg.ctc() ? "ctc" : "ar", " model)");
    cfg.check_weights(w);
    require_device(device);
    GMLM_CUDA_CHECK(cudaSetDevice(device));
    D = cfg.d_model;
    H = cfg.num_heads;
    Dh = cfg.d_kv;
    I = H * Dh;
    F = cfg.d_ff;
    Fw = cfg.gated_gelu ? 2 * F : F;
    V = cfg.vocab_size;
    nl = cfg.num_decoder_layers;
    kv_ld = 2 * I * nl;
    maxS = cfg.max_source_len;
    maxT = cfg.max_target_len;
    GMLM_CHECK_ARG(maxS <= 3072 && maxT <= 3072, "the CUDA engine supports sequences of at most 3072 tokens");
    if (const char* g = std::getenv("GMLM_CUDA_GRAPHS")) use_graphs = std::string(g) != "0";

    shared = upload(w.at("shared.weight"), true);
    if (!cfg.tie_word_embeddings) lm_head = upload(w.at("lm_head.weight"), true);
    length_head = upload(w.at("length_head.weight"), true);
    embed_positions = upload(w.at("decoder.embed_positions.weight"), false);
    enc.resize(cfg.num_encoder_layers);
    for (int64_t i = 0; i < cfg.num_encoder_layers; ++i) {
      const std::string b = "encoder.block." + std::to_string(i);
      load_self(w, b + ".layer.0", enc[i].self_attn);
      load_ffn(w, b + ".layer.1", enc[i].ffn);
    }
    enc_final = upload(w.at("encoder.final_layer_norm.weight"), false);
    dec.resize(nl);
    std::vector<std::string> kv_names;
    for (int64_t i = 0; i < nl; ++i) {
      const std::string b = "decoder.block." + std::to_string(i);
      load_self(w, b + ".layer.0", dec[i].self_attn);
      dec[i].cross_attn.ln = upload(w.at(b + ".layer.1.layer_norm.weight"), false);
      dec[i].cross_attn.q = upload(w.at(b + ".layer.1.EncDecAttention.q.weight"), true);
      dec[i].cross_attn.o = upload(w.at(b + ".layer.1.EncDecAttention.o.weight"), true);
      kv_names.push_back(b + ".layer.1.EncDecAttention.k.weight");
      kv_names.push_back(b + ".layer.1.EncDecAttention.v.weight");
      load_ffn(w, b + ".layer.2", dec[i].ffn);
    }
    cross_kv = upload_stack(w, kv_names);
    dec_final = upload(w.at("decoder.final_layer_norm.weight"), false);
    const int64_t nb = cfg.relative_attention_num_buckets, md = cfg.relative_attention_max_distance;
    const Tensor eb = expand_position_bias(w.at("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").data,
                                           nb, H, true, md, maxS - 1);
    const Tensor db = expand_position_bias(w.at("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").data,
                                           nb, H, true, md, maxT - 1);
    enc_bias = upload_host(std::vector<float>(eb.data<float>(), eb.data<float>() + eb.numel()));
    dec_bias = upload_host(std::vector<float>(db.data<float>(), db.data<float>() + db.numel()));

    GMLM_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    blas_ws.reserve(32u << 20);
    blas = create_cublas(stream, blas_ws.get(), blas_ws.bytes());
    for (auto& e : done_ev) GMLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    for (auto& e : stage_ev) GMLM_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
    // logits tile: at most 64 MiB of float32, at least 64 rows
    logit_chunk = std::max<int64_t>(64, (int64_t(64) << 20) / (4 * V));
    params.reserve(sizeof(LoopParams));
  }

  const void* out_embedding() const { return cfg.tie_word_embeddings ? shared.get() : lm_head.get(); }
  std::size_t cs() const { return ctype_size(ct); }
  char* ctp(const DeviceBuffer& b, int64_t elems_offset = 0) const {
    return b.as<char>() + elems_offset * static_cast<int64_t>(cs());
  }

  void ensure_activations(int64_t rows) {
    if (rows <= act_rows) return;
    rows = std::max(rows, act_rows + act_rows / 4);
    grow(x, sizeof(float) * rows * D);
    grow(h, cs() * rows * D);
    grow(qkv, sizeof(float) * rows * 3 * I);
    grow(att, cs() * rows * I);
    grow(f, sizeof(float) * rows * Fw);
    grow(a, cs() * rows * F);
    grow(states, cs() * rows * D);
    grow(pred, sizeof(int32_t) * rows);
    grow(pconf, sizeof(float) * rows);
    grow(logits, sizeof(float) * std::min(rows, logit_chunk) * V);
    act_rows = rows;
  }

  // x += o(attention(qkv(norm(x)))) on `rows` rows
  void self_attention(const DevSelfAttn& l, const DeviceBuffer& bias, int64_t max_rel, const int32_t* kb,
                      const int32_t* kl, const int32_t* qp, int64_t max_k, int64_t rows) {
    rms_norm(x.as<float>(), D, l.ln.as<float>(), h.get(), ct, D, rows, D, cfg.layer_norm_epsilon, 1.f, stream);
    gemm_nt(blas, ct, h.get(), D, l.qkv.get(), D, qkv.as<float>(), 3 * I, rows, 3 * I, D, 1.f, 0.f);
    const float* q = qkv.as<float>();
    attention(q, 3 * I, q + I, 3 * I, q + 2 * I, 3 * I, kb, kl, qp, bias.as<float>(), max_rel, att.get(), ct, I, rows,
              H, Dh, max_k, stream);
    gemm_nt(blas, ct, att.get(), I, l.o.get(), I, x.as<float>(), D, rows, D, I, 1.f, 1.f);
  }

  void feed_forward(const DevFfn& l, int64_t rows) {
    rms_norm(x.as<float>(), D, l.ln.as<float>(), h.get(), ct, D, rows, D, cfg.layer_norm_epsilon, 1.f, stream);
    gemm_nt(blas, ct, h.get(), D, l.wi.get(), D, f.as<float>(), Fw, rows, Fw, D, 1.f, 0.f);
    ffn_activation(f.as<float>(), Fw, a.get(), ct, F, rows, F, cfg.gated_gelu, F, stream);
    gemm_nt(blas, ct, a.get(), F, l.wo.get(), F, x.as<float>(), D, rows, D, F, 1.f, 1.f);
  }

  // --- one refinement iteration on the current work tables (rows Rb, candidates Nb) ---
  void enqueue_iteration(int64_t Rb, int64_t Nb) {
    const int32_t* wt = work_tab.as<int32_t>();
    const int64_t rc = work_rows_cap;
    const int32_t* work_home = wt;
    const int32_t *s_kb = wt + rc, *s_kl = wt + 2 * rc, *s_qp = wt + 3 * rc, *c_kb = wt + 4 * rc, *c_kl = wt + 5 * rc;
    const int32_t *work_cand = wt + 6 * rc, *work_begin = wt + 6 * rc + work_cands_cap;
    const int32_t* home = home_tab.as<int32_t>();
    const int64_t R_home_cap = static_cast<int64_t>(home_tab.bytes() / (2 * sizeof(int32_t)));
    const int32_t *home_cand = home, *home_pos = home + R_home_cap;
    // input: embedding of the next input ids + learned positions
    embed(shared.get(), ct, V, in_ids.as<int32_t>(), work_home, embed_positions.as<float>(), home_pos, x.as<float>(),
          Rb, D, stream);
    for (int64_t l = 0; l < nl; ++l) {
      const DevDecoderBlock& blk = dec[l];
      // self-attention (bidirectional, relative position bias)
      self_attention(blk.self_attn, dec_bias, maxT - 1, s_kb, s_kl, s_qp, maxT, Rb);
      // cross-attention on the encoder's K/V (computed once per batch)
      rms_norm(x.as<float>(), D, blk.cross_attn.ln.as<float>(), h.get(), ct, D, Rb, D, cfg.layer_norm_epsilon, 1.f,
               stream);
      gemm_nt(blas, ct, h.get(), D, blk.cross_attn.q.get(), D, qkv.as<float>(), I, Rb, I, D, 1.f, 0.f);
      const float* kv = ckv.as<float>() + 2 * I * l;
      attention(qkv.as<float>(), I, kv, kv_ld, kv + I, kv_ld, c_kb, c_kl, nullptr, nullptr, 0, att.get(), ct, I, Rb, H,
                Dh, maxS, stream);
      gemm_nt(blas, ct, att.get(), I, blk.cross_attn.o.get(), I, x.as<float>(), D, Rb, D, I, 1.f, 1.f);
      // feed-forward
      feed_forward(blk.ffn, Rb);
    }
    const float scale = cfg.tie_word_embeddings ? static_cast<float>(std::pow(static_cast<double>(D), -0.5)) : 1.f;
    rms_norm(x.as<float>(), D, dec_final.as<float>(), states.get(), ct, D, Rb, D, cfg.layer_norm_epsilon, scale,
             stream);
    // vocabulary: logits tile by tile, fused log-softmax + argmax (or Gumbel-max)
    const int32_t* cand = cand_tab.as<int32_t>();
    const int64_t C_cap = static_cast<int64_t>(cand_tab.bytes() / (3 * sizeof(int32_t)));
    NoiseKeys keys;
    LoopParams* p = params.as<LoopParams>();
    keys.seed = reinterpret_cast<const uint64_t*>(reinterpret_cast<const char*>(p) + offsetof(LoopParams, seed));
    keys.work_home = work_home;
    keys.home_cand = home_cand;
    keys.home_pos = home_pos;
    keys.cand_k = cand + 2 * C_cap;
    keys.cand_hash = cand_hash.as<uint64_t>();
    keys.t = reinterpret_cast<const int32_t*>(reinterpret_cast<const char*>(p) + offsetof(LoopParams, t));
    keys.sampling = reinterpret_cast<const int32_t*>(reinterpret_cast<const char*>(p) + offsetof(LoopParams, sampling));
    for (int64_t r0 = 0; r0 < Rb; r0 += logit_chunk) {
      const int64_t nr = std::min(logit_chunk, Rb - r0);
      gemm_nt(blas, ct, ctp(states, r0 * D), D, out_embedding(), D, logits.as<float>(), V, nr, V, D, 1.f, 0.f);
      keys.row_offset = r0;
      vocab_reduce(logits.as<float>(), V, nr, V, pred.as<int32_t>() + r0, pconf.as<float>() + r0, &keys, stream);
    }
    update_candidates(loop_state(), p, work_cand, work_begin, Nb, pred.as<int32_t>(), pconf.as<float>(), maxT, stream);
    advance_iteration(p, stream);
  }

  LoopState loop_state() const {
    LoopState st;
    st.tokens = tokens.as<int32_t>();
    st.conf = conf.as<float>();
    st.masked = masked.as<uint8_t>();
    st.prev = prev.as<int32_t>();
    st.in_ids = in_ids.as<int32_t>();
    st.history = history_on ? history.as<int32_t>() : nullptr;
    const int64_t C_cap = static_cast<int64_t>(cand_tab.bytes() / (3 * sizeof(int32_t)));
    st.cand_begin = cand_tab.as<int32_t>();
    st.cand_len = cand_tab.as<int32_t>() + C_cap;
    st.cand_k = cand_tab.as<int32_t>() + 2 * C_cap;
    st.cand_hash = cand_hash.as<uint64_t>();
    const int64_t R_cap = static_cast<int64_t>(home_tab.bytes() / (2 * sizeof(int32_t)));
    st.home_cand = home_tab.as<int32_t>();
    st.home_pos = home_tab.as<int32_t>() + R_cap;
    st.done = done.as<uint8_t>();
    st.passes = passes.as<int32_t>();
    return st;
  }
  bool history_on = false;

  void run_iteration(int64_t Rb, int64_t Nb) {
    stats.iterations += 1;
    if (!use_graphs) {
      enqueue_iteration(Rb, Nb);
      return;
    }
    const auto key = std::make_tuple(Rb, Nb, history_on);
    GraphEntry& g = graphs[key];
    if (!g.exec) {
      cudaGraph_t graph = nullptr;
      GMLM_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
      try {
        enqueue_iteration(Rb, Nb);
      } catch (...) {
        cudaStreamEndCapture(stream, &graph);
        if (graph) cudaGraphDestroy(graph);
        graphs.erase(key);
        throw;
      }
      GMLM_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
      const cudaError_t e = cudaGraphInstantiate(&g.exec, graph, 0);
      cudaGraphDestroy(graph);
      if (e != cudaSuccess) {
        graphs.erase(key);
        GMLM_CUDA_CHECK(e);
      }
      stats.graphs_captured += 1;
    }
    GMLM_CUDA_CHECK(cudaGraphLaunch(g.exec, stream));
    stats.graph_launches += 1;
  }

  // Upload host int32 tables through pinned staging memory (asynchronous, stream-ordered).
  void upload_async(void* dst, const std::vector<int32_t>& src) {
    const int s = stage_slot;
    stage_slot ^= 1;
    GMLM_CUDA_CHECK(cudaEventSynchronize(stage_ev[s]));  // the previous copy out of this slot is done
    stage[s].reserve(sizeof(int32_t) * src.size());
    std::memcpy(stage[s].as<int32_t>(), src.data(), sizeof(int32_t) * src.size());
    GMLM_CUDA_CHECK(cudaMemcpyAsync(dst, stage[s].as<int32_t>(), sizeof(int32_t) * src.size(), cudaMemcpyHostToDevice,
                                    stream));
    GMLM_CUDA_CHECK(cudaEventRecord(stage_ev[s], stream));
  }

  std::vector<RefineResult> translate(const std::vector<std::vector<int32_t>>& sources, const RefineOptions& o);
};

std::vector<RefineResult> CudaEngine::Impl::translate(const std::vector<std::vector<int32_t>>& sources,
                                                      const RefineOptions& o) {
  const auto t_start = std::chrono::steady_clock::now();
  const int64_t B = static_cast<int64_t>(sources.size()), K = o.length_beam, T = o.iterations;
  o.validate(cfg, Device::cuda);
  GMLM_CHECK_ARG(o.repeat_penalty == 0.0 || !word_pieces.empty(),
                 "repeat_penalty needs the model's word pieces (the engine was built without its tokenizer)");
  std::vector<RefineResult> results(B);
  if (B == 0) return results;
  GMLM_CUDA_CHECK(cudaSetDevice(device));
  stats.batches += 1;

  // 1. encoder input tables: ids, and per row its sentence's keys and its position
  std::vector<int64_t> enc_begin(B), enc_len(B);
  std::vector<int32_t> ids;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(sources[b].size());
    GMLM_CHECK_ARG(n >= 1 && n <= maxS, "source ", b, " has ", n, " tokens; the model takes 1 to ", maxS);
    for (int32_t id : sources[b]) GMLM_CHECK_ARG(id >= 0 && id < V, "source ", b, ": token id ", id, " is outside the vocabulary");
    enc_begin[b] = static_cast<int64_t>(ids.size());
    enc_len[b] = n;
    ids.insert(ids.end(), sources[b].begin(), sources[b].end());
  }
  const int64_t Re = static_cast<int64_t>(ids.size());
  std::vector<int32_t> et(4 * Re + B);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t i = 0; i < enc_len[b]; ++i) {
      const int64_t r = enc_begin[b] + i;
      et[r] = ids[r];
      et[Re + r] = static_cast<int32_t>(enc_begin[b]);
      et[2 * Re + r] = static_cast<int32_t>(enc_len[b]);
      et[3 * Re + r] = static_cast<int32_t>(i);
    }
    et[4 * Re + b] = static_cast<int32_t>(enc_begin[b]);
  }
  grow(enc_tab, sizeof(int32_t) * et.size());
  grow(ckv, sizeof(float) * Re * kv_ld);
  grow(enc_states, cs() * Re * D);
  grow(len_logits, sizeof(float) * Re * maxT);
  grow(lengths, sizeof(int32_t) * B * K);
  ensure_activations(Re);
  upload_async(enc_tab.get(), et);
  const int32_t* etp = enc_tab.as<int32_t>();

  // encoder (not captured: it runs once per batch)
  embed(shared.get(), ct, V, etp, nullptr, nullptr, nullptr, x.as<float>(), Re, D, stream);
  for (const DevEncoderBlock& blk : enc) {
    self_attention(blk.self_attn, enc_bias, maxS - 1, etp + Re, etp + 2 * Re, etp + 3 * Re, maxS, Re);
    feed_forward(blk.ffn, Re);
  }
  rms_norm(x.as<float>(), D, enc_final.as<float>(), enc_states.get(), ct, D, Re, D, cfg.layer_norm_epsilon, 1.f, stream);
  // cross-attention K/V of every decoder layer, once; length logits of every row (the <len> rows are read)
  gemm_nt(blas, ct, enc_states.get(), D, cross_kv.get(), D, ckv.as<float>(), kv_ld, Re, kv_ld, D, 1.f, 0.f);
  gemm_nt(blas, ct, enc_states.get(), D, length_head.get(), D, len_logits.as<float>(), maxT, Re, maxT, D, 1.f, 0.f);
  length_candidates(len_logits.as<float>(), maxT, etp + 4 * Re, B, maxT, K, lengths.as<int32_t>(), stream);
  std::vector<int32_t> lens(B * K);
  GMLM_CUDA_CHECK(cudaMemcpyAsync(lens.data(), lengths.get(), sizeof(int32_t) * B * K, cudaMemcpyDeviceToHost, stream));
  GMLM_CUDA_CHECK(cudaStreamSynchronize(stream));  // the host lays out the candidates' rows
  for (int32_t& len : lens) len = static_cast<int32_t>(std::clamp<int64_t>(len + o.length_offset, 1, maxT));

  // 2. home layout: candidate c = b * K + k, rows back to back
  const int64_t C = B * K;
  std::vector<int32_t> c_begin(C), c_len(C), c_src(C), c_k(C);
  std::vector<uint64_t> c_hash(C);
  int64_t R_home = 0;
  for (int64_t b = 0; b < B; ++b) {
    const uint64_t hsh = rules::source_hash(sources[b].data(), static_cast<int64_t>(sources[b].size()));
    results[b].length_candidates.assign(lens.begin() + b * K, lens.begin() + (b + 1) * K);
    for (int64_t k = 0; k < K; ++k) {
      const int64_t c = b * K + k;
      GMLM_CHECK(lens[c] >= 1 && lens[c] <= maxT, "length candidate ", lens[c]);
      c_begin[c] = static_cast<int32_t>(R_home);
      c_len[c] = lens[c];
      c_src[c] = static_cast<int32_t>(b);
      c_k[c] = static_cast<int32_t>(k);
      c_hash[c] = hsh;
      R_home += lens[c];
    }
  }
  const int64_t R_cap_needed = bucket(R_home), C_cap_needed = bucket(C);
  ensure_activations(R_cap_needed);
  grow(tokens, sizeof(int32_t) * R_home);
  grow(conf, sizeof(float) * R_home);
  grow(masked, R_home);
  grow(prev, sizeof(int32_t) * R_home);
  grow(in_ids, sizeof(int32_t) * R_home);
  history_on = o.return_history;
  if (history_on) grow(history, sizeof(int32_t) * T * R_home);
  grow(done, C);
  grow(passes, sizeof(int32_t) * C);
  grow(cand_hash, sizeof(uint64_t) * C);
  // tables whose capacity defines their layout: grow in steps so the layout (and graphs) survive
  if (cand_tab.bytes() < 3 * sizeof(int32_t) * C) grow(cand_tab, 3 * sizeof(int32_t) * C_cap_needed);
  if (home_tab.bytes() < 2 * sizeof(int32_t) * R_home) grow(home_tab, 2 * sizeof(int32_t) * R_cap_needed);
  if (work_rows_cap < R_cap_needed || work_cands_cap < C_cap_needed) {
    work_rows_cap = std::max(work_rows_cap, R_cap_needed);
    work_cands_cap = std::max(work_cands_cap, C_cap_needed);
    grow(work_tab, sizeof(int32_t) * (6 * work_rows_cap + 2 * work_cands_cap));
    clear_graphs();  // the layout of the work tables changed
  }
  const int64_t C_cap = static_cast<int64_t>(cand_tab.bytes() / (3 * sizeof(int32_t)));
  const int64_t R_cap = static_cast<int64_t>(home_tab.bytes() / (2 * sizeof(int32_t)));
  {
    std::vector<int32_t> ct_host(3 * C_cap, 0), ht_host(2 * R_cap, 0);
    for (int64_t c = 0; c < C; ++c) {
      ct_host[c] = c_begin[c];
      ct_host[C_cap + c] = c_len[c];
      ct_host[2 * C_cap + c] = c_k[c];
      for (int32_t i = 0; i < c_len[c]; ++i) {
        ht_host[c_begin[c] + i] = static_cast<int32_t>(c);
        ht_host[R_cap + c_begin[c] + i] = i;
      }
    }
    upload_async(cand_tab.get(), ct_host);
    upload_async(home_tab.get(), ht_host);
    std::vector<int32_t> hash_words(2 * C);
    std::memcpy(hash_words.data(), c_hash.data(), sizeof(uint64_t) * C);
    upload_async(cand_hash.get(), hash_words);
  }
  LoopParams hp;
  hp.t = 0;
  hp.T = static_cast<int32_t>(T);
  hp.threshold = o.threshold_remask;
  hp.stutter = o.stutter_remask;
  hp.update_all = o.update_all;
  hp.early_stop = o.early_stop;
  hp.sampling = o.sampling;
  hp.mask_id = cfg.mask_id;
  hp.init_random = o.init_random;
  hp.first_random_id = cfg.first_random_id();
  hp.vocab = static_cast<int32_t>(V);
  hp.R_home = static_cast<int32_t>(R_home);
  hp.num_cands = static_cast<int32_t>(C);
  hp.log_threshold = o.log_threshold;
  hp.seed = o.seed;
  {
    std::vector<int32_t> words((sizeof(LoopParams) + 3) / 4);
    std::memcpy(words.data(), &hp, sizeof(LoopParams));
    upload_async(params.get(), words);
  }
  const LoopState st = loop_state();
  init_state(st, params.as<LoopParams>(), R_home, C, stream);

  // 3. the loop
  std::vector<int32_t> live(C);
  for (int64_t c = 0; c < C; ++c) live[c] = static_cast<int32_t>(c);
  int64_t Rb = 0, Nb = 0;
  auto pack = [&]() {
    // work rows of the live candidates back to back, padded to the bucket
    int64_t R = 0;
    for (int32_t c : live) R += c_len[c];
    Rb = bucket(R);
    Nb = bucket(static_cast<int64_t>(live.size()));
    const int64_t rc = work_rows_cap, nc = work_cands_cap;
    std::vector<int32_t> wt(6 * rc + 2 * nc, 0);
    std::fill(wt.begin(), wt.begin() + rc, -1);               // work_home: padding
    std::fill(wt.begin() + 6 * rc, wt.begin() + 6 * rc + nc, -1);  // work_cand: padding
    int64_t r = 0;
    for (size_t j = 0; j < live.size(); ++j) {
      const int32_t c = live[j];
      const int64_t src = c_src[c];
      wt[6 * rc + j] = c;
      wt[6 * rc + nc + j] = static_cast<int32_t>(r);
      for (int32_t i = 0; i < c_len[c]; ++i, ++r) {
        wt[r] = c_begin[c] + i;
        wt[rc + r] = static_cast<int32_t>(r - i);
        wt[2 * rc + r] = c_len[c];
        wt[3 * rc + r] = i;
        wt[4 * rc + r] = static_cast<int32_t>(enc_begin[src]);
        wt[5 * rc + r] = static_cast<int32_t>(enc_len[src]);
      }
    }
    upload_async(work_tab.get(), wt);
  };
  pack();
  for (int64_t t = 0; t < T; ++t) {
    if (t >= 2) {
      // done flags after iteration t-2 (iteration t-1 is queued behind them)
      const int s = static_cast<int>(t % 2);
      GMLM_CUDA_CHECK(cudaEventSynchronize(done_ev[s]));
      const uint8_t* d = done_host[s].as<uint8_t>();
      std::vector<int32_t> still;
      for (int32_t c : live)
        if (!d[c]) still.push_back(c);
      if (still.empty()) break;
      if (still.size() < live.size()) {
        live.swap(still);
        pack();
        stats.compactions += 1;
      }
    }
    run_iteration(Rb, Nb);
    const int s = static_cast<int>(t % 2);
    done_host[s].reserve(C);
    GMLM_CUDA_CHECK(cudaMemcpyAsync(done_host[s].as<uint8_t>(), done.get(), C, cudaMemcpyDeviceToHost, stream));
    GMLM_CUDA_CHECK(cudaEventRecord(done_ev[s], stream));
  }

  // 4. the candidates to the host; scores and the best candidate per source there, by the CPU engine's own
  //    functions (ops::candidate_output, ops::candidate_rank: one home for step 4)
  std::vector<int32_t> h_tokens(R_home), h_passes(C), h_hist;
  std::vector<float> h_conf(R_home);
  GMLM_CUDA_CHECK(cudaMemcpyAsync(h_tokens.data(), tokens.get(), sizeof(int32_t) * R_home, cudaMemcpyDeviceToHost, stream));
  GMLM_CUDA_CHECK(cudaMemcpyAsync(h_conf.data(), conf.get(), sizeof(float) * R_home, cudaMemcpyDeviceToHost, stream));
  GMLM_CUDA_CHECK(cudaMemcpyAsync(h_passes.data(), passes.get(), sizeof(int32_t) * C, cudaMemcpyDeviceToHost, stream));
  if (history_on) {
    h_hist.resize(T * R_home);
    GMLM_CUDA_CHECK(cudaMemcpyAsync(h_hist.data(), history.get(), sizeof(int32_t) * T * R_home, cudaMemcpyDeviceToHost,
                                    stream));
  }
  GMLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<int32_t> out;
  for (int64_t b = 0; b < B; ++b) {
    RefineResult& r = results[b];
    int64_t c = -1;
    double best_rank = 0.0;
    for (int64_t k = 0; k < K; ++k) {   // ties: the lower k
      const int64_t ck = b * K + k;
      const double s = ops::candidate_output(h_tokens.data() + c_begin[ck], h_conf.data() + c_begin[ck], c_len[ck],
                                             o.stutter_remask, &out);
      const double rank = ops::candidate_rank(s, out, o.repeat_penalty, word_pieces.data());
      if (c < 0 || rank > best_rank) {
        c = ck;
        best_rank = rank;
        r.score = s;
        r.ids = out;
      }
    }
    const int64_t begin = c_begin[c], L = c_len[c];
    r.passes = h_passes[c];
    if (history_on)
      for (int64_t p = 0; p < r.passes; ++p)
        r.history.emplace_back(h_hist.begin() + p * R_home + begin, h_hist.begin() + p * R_home + begin + L);
  }
  stats.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  return results;
}

CudaEngine::CudaEngine(const T5Config& config, const WeightMap& weights, const std::string& compute_type, int device,
                       std::vector<uint8_t> word_pieces)
    : impl_(std::make_unique<Impl>(config, weights, compute_type, device, std::move(word_pieces))) {}
CudaEngine::~CudaEngine() = default;

std::vector<RefineResult> CudaEngine::translate(const std::vector<std::vector<int32_t>>& sources,
                                                const RefineOptions& opts) {
  return impl_->translate(sources, opts);
}
const T5Config& CudaEngine::config() const { return impl_->cfg; }
std::string CudaEngine::compute_type() const { return compute_type_name(impl_->ct); }
std::string CudaEngine::device_description() const { return cuda::device_description(impl_->device); }
EngineStats CudaEngine::stats() const { return impl_->stats; }
void CudaEngine::set_use_graphs(bool on) {
  impl_->use_graphs = on;
  if (!on) impl_->clear_graphs();
}

}  // namespace gmlm::cuda
