#include "models/t5_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/profiler.h"
#include "ops/attention.h"
#include "ops/embedding.h"
#include "ops/gemm.h"
#include "ops/rms_norm.h"
#include "ops/rows.h"

namespace gmlm {

// --- config ------------------------------------------------------------------------------------
void T5Config::validate() const {
  for (auto [name, v] : {std::pair<const char*, int64_t>{"vocab_size", vocab_size},
                         {"d_model", d_model},
                         {"d_kv", d_kv},
                         {"d_ff", d_ff},
                         {"num_heads", num_heads},
                         {"num_encoder_layers", num_encoder_layers},
                         {"num_decoder_layers", num_decoder_layers},
                         {"relative_attention_num_buckets", relative_attention_num_buckets},
                         {"relative_attention_max_distance", relative_attention_max_distance},
                         {"max_source_len", max_source_len},
                         {"max_target_len", max_target_len}})
    GMLM_CHECK_ARG(v >= 1 && v <= (int64_t(1) << 24), "config: ", name, " must be in [1, 2^24], got ", v);
  for (auto [name, v] : {std::pair<const char*, int32_t>{"pad_id", pad_id},
                         {"eos_id", eos_id},
                         {"unk_id", unk_id},
                         {"mask_id", mask_id},
                         {"len_id", len_id}})
    GMLM_CHECK_ARG(v >= 0 && v < vocab_size, "config: ", name, " must be a token id in [0, ", vocab_size, "), got ", v);
  GMLM_CHECK_ARG(first_random_id() < vocab_size, "config: vocab_size ", vocab_size,
                 " leaves no token after the special ids (random init draws from ", first_random_id(), ")");
  GMLM_CHECK_ARG(layer_norm_epsilon > 0.f, "config: layer_norm_epsilon must be > 0");
  GMLM_CHECK_ARG(relative_attention_num_buckets >= 4, "config: relative_attention_num_buckets must be >= 4");
  GMLM_CHECK_ARG(ctc_upsample == 0 || (ctc_upsample >= 1 && ctc_upsample <= 8 && gmlm),
                 "config: ctc_upsample must be in [1, 8] for a ctc model, got ", ctc_upsample);
}

void T5Config::check_weights(const WeightMap& w) const {
  const auto expected = weight_shapes();
  std::string missing;
  int n_missing = 0;
  for (const auto& [name, shape] : expected) {
    auto it = w.find(name);
    if (it == w.end()) {
      if (n_missing++ < 5) missing += (missing.empty() ? "" : ", ") + name;
      continue;
    }
    GMLM_CHECK_ARG(it->second.shape == shape, "weights: tensor ", name, " has shape ", shape_str(it->second.shape),
                   ", expected ", shape_str(shape), " from the config");
    GMLM_CHECK_ARG(it->second.data != nullptr, "weights: tensor ", name, " has no data");
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    for (int64_t i = 0; i < n; ++i)
      GMLM_CHECK_ARG(std::isfinite(it->second.data[i]), "weights: tensor ", name, " contains NaN or Inf values");
  }
  GMLM_CHECK_ARG(n_missing == 0, "weights: missing tensors [", missing, "]",
                 n_missing > 5 ? str_cat(" and ", n_missing - 5, " more") : std::string());
  for (const auto& [name, ref] : w) GMLM_CHECK_ARG(expected.count(name), "weights: unexpected tensor ", name);
}

std::map<std::string, Shape> T5Config::weight_shapes() const {
  const int64_t D = d_model, I = num_heads * d_kv, F = d_ff, V = vocab_size;
  std::map<std::string, Shape> s;
  s["shared.weight"] = {V, D};
  auto ffn = [&](const std::string& p) {
    if (gated_gelu) {
      s[p + ".DenseReluDense.wi_0.weight"] = {F, D};
      s[p + ".DenseReluDense.wi_1.weight"] = {F, D};
    } else {
      s[p + ".DenseReluDense.wi.weight"] = {F, D};
    }
    s[p + ".DenseReluDense.wo.weight"] = {D, F};
    s[p + ".layer_norm.weight"] = {D};
  };
  auto attn = [&](const std::string& p, const std::string& kind) {
    for (const char* w : {"q", "k", "v"}) s[p + "." + kind + "." + w + ".weight"] = {I, D};
    s[p + "." + kind + ".o.weight"] = {D, I};
    s[p + ".layer_norm.weight"] = {D};
  };
  for (auto [stack, n] : {std::pair<std::string, int64_t>{"encoder", num_encoder_layers}, {"decoder", num_decoder_layers}}) {
    for (int64_t i = 0; i < n; ++i) {
      const std::string b = stack + ".block." + std::to_string(i);
      attn(b + ".layer.0", "SelfAttention");
      if (stack == "decoder") {
        attn(b + ".layer.1", "EncDecAttention");
        ffn(b + ".layer.2");
      } else {
        ffn(b + ".layer.1");
      }
    }
    s[stack + ".block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = {relative_attention_num_buckets,
                                                                                 num_heads};
    s[stack + ".final_layer_norm.weight"] = {D};
  }
  if (!tie_word_embeddings) s["lm_head.weight"] = {V, D};
  if (gmlm && !ctc()) s["length_head.weight"] = {max_target_len, D};
  if (gmlm) s["decoder.embed_positions.weight"] = {max_target_len, D};
  return s;
}

// --- loading -------------------------------------------------------------------------------------
namespace {

class Loader {
 public:
  Loader(const T5Config& cfg, const WeightMap& w) : w_(w) { cfg.check_weights(w); }

  const WeightRef& get(const std::string& name) const { return w_.at(name); }

  Tensor copy(const std::string& name) const {
    const WeightRef& r = get(name);
    Tensor t(r.shape);
    std::memcpy(t.data<float>(), r.data, sizeof(float) * t.numel());
    return t;
  }

  // Row-stacked copy of several (n_i, D) tensors.
  Tensor stack(const std::vector<std::string>& names) const {
    int64_t rows = 0, cols = get(names[0]).shape[1];
    for (const auto& n : names) rows += get(n).shape[0];
    Tensor t({rows, cols});
    float* dst = t.data<float>();
    for (const auto& n : names) {
      const WeightRef& r = get(n);
      std::memcpy(dst, r.data, sizeof(float) * r.shape[0] * cols);
      dst += r.shape[0] * cols;
    }
    return t;
  }

 private:
  const WeightMap& w_;
};

void load_ffn(const Loader& ld, const std::string& p, bool gated, int64_t d_ff, FeedForwardLayer& f) {
  f.layer_norm = ld.copy(p + ".layer_norm.weight");
  f.wo = ld.copy(p + ".DenseReluDense.wo.weight");
  f.gated = gated;
  if (!gated) {
    f.wi = ld.copy(p + ".DenseReluDense.wi.weight");
    return;
  }
  const Tensor w = ld.stack({p + ".DenseReluDense.wi_0.weight", p + ".DenseReluDense.wi_1.weight"});
  const std::vector<int64_t> src = ops::Gemm::gated_layout(d_ff);
  const int64_t D = w.dim(1);
  f.wi = Tensor({2 * d_ff, D});
  for (int64_t r = 0; r < 2 * d_ff; ++r)
    std::memcpy(f.wi.data<float>() + r * D, w.data<float>() + src[r] * D, sizeof(float) * D);
}

void load_self_attn(const Loader& ld, const std::string& p, SelfAttentionLayer& a) {
  a.layer_norm = ld.copy(p + ".layer_norm.weight");
  a.qkv = ld.stack({p + ".SelfAttention.q.weight", p + ".SelfAttention.k.weight", p + ".SelfAttention.v.weight"});
  a.o = ld.copy(p + ".SelfAttention.o.weight");
}

}  // namespace

T5Model::T5Model(T5Config config, const WeightMap& weights, Device device) : cfg_(std::move(config)), device_(device) {
  cfg_.validate();
  const Loader ld(cfg_, weights);
  inner_ = cfg_.num_heads * cfg_.d_kv;
  shared_ = ld.copy("shared.weight");
  if (!cfg_.tie_word_embeddings) lm_head_ = ld.copy("lm_head.weight");
  if (cfg_.gmlm && !cfg_.ctc()) length_head_ = ld.copy("length_head.weight");
  if (cfg_.gmlm) embed_positions_ = ld.copy("decoder.embed_positions.weight");
  encoder_.resize(cfg_.num_encoder_layers);
  for (int64_t i = 0; i < cfg_.num_encoder_layers; ++i) {
    const std::string b = "encoder.block." + std::to_string(i);
    load_self_attn(ld, b + ".layer.0", encoder_[i].self_attn);
    load_ffn(ld, b + ".layer.1", cfg_.gated_gelu, cfg_.d_ff, encoder_[i].ffn);
  }
  encoder_final_norm_ = ld.copy("encoder.final_layer_norm.weight");
  decoder_.resize(cfg_.num_decoder_layers);
  std::vector<std::string> kv_names;
  for (int64_t i = 0; i < cfg_.num_decoder_layers; ++i) {
    const std::string b = "decoder.block." + std::to_string(i);
    load_self_attn(ld, b + ".layer.0", decoder_[i].self_attn);
    CrossAttentionLayer& c = decoder_[i].cross_attn;
    c.layer_norm = ld.copy(b + ".layer.1.layer_norm.weight");
    c.q = ld.copy(b + ".layer.1.EncDecAttention.q.weight");
    c.o = ld.copy(b + ".layer.1.EncDecAttention.o.weight");
    kv_names.push_back(b + ".layer.1.EncDecAttention.k.weight");
    kv_names.push_back(b + ".layer.1.EncDecAttention.v.weight");
    load_ffn(ld, b + ".layer.2", cfg_.gated_gelu, cfg_.d_ff, decoder_[i].ffn);
  }
  cross_kv_ = ld.stack(kv_names);
  decoder_final_norm_ = ld.copy("decoder.final_layer_norm.weight");
  const int64_t nb = cfg_.relative_attention_num_buckets, md = cfg_.relative_attention_max_distance;
  encoder_bias_ = expand_position_bias(ld.get("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").data,
                                       nb, cfg_.num_heads, true, md, cfg_.max_source_len - 1);
  decoder_bias_ = expand_position_bias(ld.get("decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight").data,
                                       nb, cfg_.num_heads, /*bidirectional=*/cfg_.gmlm, md, cfg_.max_target_len - 1);
  if (device_ != Device::cpu) {   // loaded on the host, then every tensor moves to the device
    std::vector<Tensor*> all = {&shared_, &lm_head_, &length_head_, &embed_positions_, &encoder_final_norm_,
                                &encoder_bias_, &cross_kv_, &decoder_final_norm_, &decoder_bias_};
    auto attn = [&](SelfAttentionLayer& a) { all.insert(all.end(), {&a.layer_norm, &a.qkv, &a.o}); };
    auto ffn = [&](FeedForwardLayer& f) { all.insert(all.end(), {&f.layer_norm, &f.wi, &f.wo}); };
    for (EncoderBlock& b : encoder_) {
      attn(b.self_attn);
      ffn(b.ffn);
    }
    for (DecoderBlock& b : decoder_) {
      attn(b.self_attn);
      all.insert(all.end(), {&b.cross_attn.layer_norm, &b.cross_attn.q, &b.cross_attn.o});
      ffn(b.ffn);
    }
    for (Tensor* t : all)
      if (t->numel() > 0) *t = t->to(device_);
  }
}

void T5Model::place(Tensor& t, Shape shape, DType dtype) const {
  if (t.device() == device_ && t.dtype() == dtype && t.capacity() > 0)
    t.resize(std::move(shape));
  else
    t = Tensor(std::move(shape), dtype, device_);
}

const int32_t* T5Model::indices(const std::vector<int32_t>& host, Tensor& slot) const {
  if (device_ == Device::cpu) return host.data();
  place(slot, {static_cast<int64_t>(host.size())}, DType::int32);
  slot.copy_from_host(host.data(), sizeof(int32_t) * host.size());
  return slot.data<int32_t>();
}

std::vector<ConstMat> T5Model::gemm_weights() const {
  std::vector<ConstMat> w;
  for (const EncoderBlock& b : encoder_)
    for (const Tensor* t : {&b.self_attn.qkv, &b.self_attn.o, &b.ffn.wi, &b.ffn.wo}) w.push_back(mat(*t));
  for (const DecoderBlock& b : decoder_)
    for (const Tensor* t : {&b.self_attn.qkv, &b.self_attn.o, &b.cross_attn.q, &b.cross_attn.o, &b.ffn.wi, &b.ffn.wo})
      w.push_back(mat(*t));
  w.push_back(mat(cross_kv_));
  w.push_back(output_embedding());
  return w;
}

ConstMat T5Model::output_embedding() const { return mat(cfg_.tie_word_embeddings ? shared_ : lm_head_); }

// --- forward -------------------------------------------------------------------------------------
// x += o(attention(q(h), k(h), v(h))) with h = norm(x), on all rows of x.
void T5Model::self_attention(const SelfAttentionLayer& l, const Tensor& bias, int64_t max_rel,
                             const std::vector<ops::AttentionSegment>& segs, Mat x, Workspace& ws,
                             ThreadPool& pool) const {
  const int64_t I = inner_, R = x.rows;
  ops::RMSNorm{cfg_.layer_norm_epsilon}(x, l.layer_norm.data<float>(), mat(ws.h, R), &pool);
  place(ws.qkv, {R, 3 * I});
  ops::Gemm()(mat(ws.h, R), mat(l.qkv), mat(ws.qkv), pool);
  place(ws.att, {R, I});
  Mat qkv = mat(ws.qkv);
  ops::MultiHeadAttention(cfg_.num_heads, cfg_.d_kv)(qkv.sub(0, R, 0, I), nullptr, qkv.sub(0, R, I, I),
                                                     qkv.sub(0, R, 2 * I, I), segs, bias.data<float>(), max_rel,
                                                     mat(ws.att), pool);
  ops::Gemm o;
  o.beta = 1.f;
  o(mat(ws.att), mat(l.o), x, pool);
}

void T5Model::encode(const std::vector<std::vector<int32_t>>& sources, EncoderOutput& out, Workspace& ws,
                     ThreadPool& pool) const {
  const int64_t B = static_cast<int64_t>(sources.size()), D = cfg_.d_model;
  out.begin.assign(B, 0);
  out.len.assign(B, 0);
  std::vector<int32_t> ids;
  std::vector<ops::AttentionSegment> segs;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(sources[b].size());
    GMLM_CHECK_ARG(n >= 1 && n <= cfg_.max_source_len, "source ", b, " has ", n, " tokens; the model takes 1 to ",
                   cfg_.max_source_len);
    out.begin[b] = static_cast<int64_t>(ids.size());
    out.len[b] = n;
    segs.push_back({out.begin[b], n, out.begin[b], n});
    ids.insert(ids.end(), sources[b].begin(), sources[b].end());
  }
  const int64_t R = static_cast<int64_t>(ids.size());
  out.rows = R;
  place(ws.x, {R, D});
  place(ws.h, {R, D});
  ops::Embedding()(mat(shared_), indices(ids, ws.ids), R, mat(ws.x));
  for (const EncoderBlock& blk : encoder_) {
    // self-attention
    self_attention(blk.self_attn, encoder_bias_, cfg_.max_source_len - 1, segs, mat(ws.x), ws, pool);
    // feed-forward
    ops::RMSNorm{cfg_.layer_norm_epsilon}(mat(ws.x), blk.ffn.layer_norm.data<float>(), mat(ws.h), &pool);
    place(ws.ffn, {R, cfg_.d_ff});
    blk.ffn.forward(mat(ws.h), mat(ws.x), mat(ws.ffn), pool);
  }
  place(out.states, {R, D});
  ops::RMSNorm{cfg_.layer_norm_epsilon}(mat(ws.x), encoder_final_norm_.data<float>(), mat(out.states), &pool);
  // cross-attention keys and values of every decoder layer, once for the whole decoding
  place(out.cross_kv, {R, cross_kv_.dim(0)});
  ops::Gemm()(mat(out.states), mat(cross_kv_), mat(out.cross_kv), pool);
}

void T5Model::length_logits(const EncoderOutput& enc, Tensor& logits, Workspace& ws, ThreadPool& pool) const {
  GMLM_CHECK_ARG(cfg_.gmlm && !cfg_.ctc(), "length_logits: only a gmlm model has a length head");
  const int64_t B = static_cast<int64_t>(enc.begin.size()), D = cfg_.d_model;
  place(ws.rows, {B, D});
  const std::vector<int32_t> first(enc.begin.begin(), enc.begin.end());   // each source's <len> row
  ops::CopyRows()(mat(enc.states), indices(first, ws.rows_at), mat(ws.rows), nullptr, B);
  place(logits, {B, cfg_.max_target_len});
  ops::Gemm()(mat(ws.rows), mat(length_head_), mat(logits), pool);
}

void T5Model::decode(const DecoderInput& in, const EncoderOutput& enc, Tensor* kv, Workspace& ws, ThreadPool& pool,
                     Tensor& states) const {
  GMLM_CHECK_ARG(cfg_.gmlm, "decode: refinement passes need a gmlm model (an ar model decodes with decode_step)");
  const int64_t D = cfg_.d_model, I = inner_, nl = cfg_.num_decoder_layers, kv_ld = 2 * I * nl;
  const int64_t R = static_cast<int64_t>(in.ids.size());
  const int64_t n_sel = static_cast<int64_t>(in.sel.size());
  const int64_t max_rel = cfg_.max_target_len - 1;
  const float eps = cfg_.layer_norm_epsilon;
  GMLM_CHECK(n_sel >= 1, "decode with no selected rows");
  GMLM_CHECK(static_cast<int64_t>(in.pos.size()) == R && (!kv || kv->dim(1) == kv_ld), "decoder input");

  // segments for the computed rows, and for the selected rows of the last layer; each row's cache row
  std::vector<ops::AttentionSegment> self_segs, cross_segs, sel_self, sel_cross;
  std::vector<int32_t> kv_row(R);
  ws.q_pos.assign(n_sel, 0);
  int64_t j = 0;
  for (const DecoderSegment& s : in.segs) {
    GMLM_CHECK(s.len >= 1 && s.len <= cfg_.max_target_len && s.rows >= 0 && s.begin + s.rows <= R &&
                   (kv ? s.kv >= 0 && s.kv + s.len <= kv->dim(0) : s.kv == s.begin && s.rows == s.len),
               "decoder segment");
    const int64_t sb = enc.begin.at(s.source), sl = enc.len.at(s.source);
    self_segs.push_back({s.begin, s.rows, s.kv, s.len});
    cross_segs.push_back({s.begin, s.rows, sb, sl});
    for (int64_t r = s.begin; r < s.begin + s.rows; ++r) {
      GMLM_CHECK(in.pos[r] >= 0 && in.pos[r] < s.len && (kv || in.pos[r] == r - s.begin), "decoder row position");
      kv_row[r] = static_cast<int32_t>(s.kv + in.pos[r]);
    }
    const int64_t j0 = j;
    while (j < n_sel && in.sel[j] < s.begin + s.rows) {
      GMLM_CHECK(in.sel[j] >= s.begin, "selected rows must be ascending and inside the segments");
      ws.q_pos[j] = in.pos[in.sel[j]];
      ++j;
    }
    sel_self.push_back({j0, j - j0, s.kv, s.len});
    sel_cross.push_back({j0, j - j0, sb, sl});
  }
  GMLM_CHECK(j == n_sel, "selected rows outside the segments");

  place(ws.x, {R, D});
  place(ws.h, {R, D});
  // the pass's index arrays where the ops run (copies on a device)
  const int32_t* ids = indices(in.ids, ws.ids);
  const int32_t* pos = indices(in.pos, ws.pos);
  const int32_t* sel = indices(in.sel, ws.sel);
  const int32_t* q_pos = indices(ws.q_pos, ws.qpos);
  const int32_t* cache_rows = kv ? indices(kv_row, ws.rows_at) : nullptr;
  ops::Embedding()(mat(shared_), ids, R, mat(ws.x));
  ops::CopyRows add_positions;   // + learned absolute positions: x[r] += embed_positions[pos[r]]
  add_positions.accumulate = true;
  add_positions(mat(embed_positions_), pos, mat(ws.x), nullptr, R);
  const ConstMat ckv = {enc.cross_kv.data<float>(), enc.cross_kv.dim(0), kv_ld, kv_ld};
  const Mat cache = kv ? mat(*kv) : Mat{};
  ops::MultiHeadAttention mha(cfg_.num_heads, cfg_.d_kv);
  ops::Gemm residual;
  residual.beta = 1.f;

  // Layer l's keys and values, [K | V] in columns [kv_col, kv_col + 2I) of `fresh` (the computed rows):
  // with a cache, stored there and read from there; without, read where they are.
  auto keys_values = [&](int64_t l, const Tensor& fresh, int64_t kv_col) -> std::pair<ConstMat, ConstMat> {
    const ConstMat f = mat(fresh);
    if (!kv) return {f.sub(0, R, kv_col, I), f.sub(0, R, kv_col + I, I)};
    ops::CopyRows()(f.sub(0, R, kv_col, 2 * I), nullptr, cache.sub(0, cache.rows, 2 * I * l, 2 * I), cache_rows, R,
                    &pool);
    return {cache.sub(0, cache.rows, 2 * I * l, I), cache.sub(0, cache.rows, 2 * I * l + I, I)};
  };
  // cross-attention and feed-forward of one block on the rows of x
  auto cross_and_ffn = [&](const DecoderBlock& blk, int64_t l, Mat x, const std::vector<ops::AttentionSegment>& segs) {
    const int64_t Xr = x.rows;
    ops::RMSNorm{eps}(x, blk.cross_attn.layer_norm.data<float>(), mat(ws.h, Xr), &pool);
    place(ws.q, {Xr, I});
    ops::Gemm()(mat(ws.h, Xr), mat(blk.cross_attn.q), mat(ws.q), pool);
    place(ws.att, {Xr, I});
    mha(mat(ws.q), nullptr, ckv.sub(0, ckv.rows, 2 * I * l, I), ckv.sub(0, ckv.rows, 2 * I * l + I, I), segs, nullptr,
        0, mat(ws.att), pool);
    residual(mat(ws.att), mat(blk.cross_attn.o), x, pool);
    ops::RMSNorm{eps}(x, blk.ffn.layer_norm.data<float>(), mat(ws.h, Xr), &pool);
    place(ws.ffn, {Xr, cfg_.d_ff});
    blk.ffn.forward(mat(ws.h, Xr), x, mat(ws.ffn), pool);
  };

  for (int64_t l = 0; l + 1 < nl; ++l) {
    const DecoderBlock& blk = decoder_[l];
    ops::RMSNorm{eps}(mat(ws.x), blk.self_attn.layer_norm.data<float>(), mat(ws.h), &pool);
    place(ws.qkv, {R, 3 * I});
    ops::Gemm()(mat(ws.h), mat(blk.self_attn.qkv), mat(ws.qkv), pool);
    const auto [k, v] = keys_values(l, ws.qkv, I);
    place(ws.att, {R, I});
    mha(mat(ws.qkv).sub(0, R, 0, I), pos, k, v, self_segs, decoder_bias_.data<float>(), max_rel,
        mat(ws.att), pool);
    residual(mat(ws.att), mat(blk.self_attn.o), mat(ws.x), pool);
    cross_and_ffn(blk, l, mat(ws.x), cross_segs);
  }

  // last block: keys and values of the computed rows, everything else on the selected rows only
  const int64_t ll = nl - 1;
  const DecoderBlock& last = decoder_[ll];
  const SelfAttentionLayer& sa = last.self_attn;
  ops::RMSNorm{eps}(mat(ws.x), sa.layer_norm.data<float>(), mat(ws.h), &pool);
  place(ws.qkv, {R, 2 * I});
  const ConstMat w_qkv = mat(sa.qkv);
  ops::Gemm()(mat(ws.h), w_qkv.sub(I, 2 * I, 0, D), mat(ws.qkv), pool);
  const auto [k, v] = keys_values(ll, ws.qkv, 0);
  place(ws.xs, {n_sel, D});
  place(ws.hs, {n_sel, D});
  ops::CopyRows()(mat(ws.x), sel, mat(ws.xs), nullptr, n_sel);
  ops::CopyRows()(mat(ws.h), sel, mat(ws.hs), nullptr, n_sel);
  place(ws.q, {n_sel, I});
  ops::Gemm()(mat(ws.hs), w_qkv.sub(0, I, 0, D), mat(ws.q), pool);
  place(ws.att, {n_sel, I});
  mha(mat(ws.q), q_pos, k, v, sel_self, decoder_bias_.data<float>(), max_rel, mat(ws.att), pool);
  residual(mat(ws.att), mat(sa.o), mat(ws.xs), pool);
  cross_and_ffn(last, ll, mat(ws.xs), sel_cross);

  place(states, {n_sel, D});
  ops::RMSNorm{eps}(mat(ws.xs), decoder_final_norm_.data<float>(), mat(states), &pool);
  if (cfg_.tie_word_embeddings) ops::Scale(static_cast<float>(std::pow(static_cast<double>(D), -0.5)))(mat(states));
}

// One causal decoder step of an ar model: row r is token in.ids[r] at position in.pos[r] of the
// hypothesis whose self-attention keys and values live in cache slot in.slot[r]. Each layer writes
// the row's key and value at that position, then attends over positions [0, pos] of its slot (the
// cache makes the step causal); cross-attention reads the source's K/V, shared by its beams.
void T5Model::decode_step(const StepInput& in, const EncoderOutput& enc, SelfCache& cache, Workspace& ws,
                          ThreadPool& pool, Tensor& states) const {
  GMLM_CHECK_ARG(!cfg_.gmlm, "decode_step: a gmlm model decodes with refinement passes");
  const int64_t D = cfg_.d_model, I = inner_, nl = cfg_.num_decoder_layers, kv_ld = 2 * I * nl;
  const int64_t n = static_cast<int64_t>(in.ids.size()), T = cfg_.max_target_len;
  const float eps = cfg_.layer_norm_epsilon;
  GMLM_CHECK(n >= 1 && in.pos.size() == in.ids.size() && in.slot.size() == in.ids.size() &&
                 in.source.size() == in.ids.size(), "decode_step input");
  GMLM_CHECK(cache.layers() == nl && cache.max_len == T, "decode_step cache");
  std::vector<ops::AttentionSegment> self_segs(n), cross_segs(n);
  std::vector<int32_t> cache_row(n);   // the row of the cache each step row writes: its slot's position
  ws.q_pos.assign(n, 0);
  for (int64_t r = 0; r < n; ++r) {
    GMLM_CHECK(in.pos[r] >= 0 && in.pos[r] < T && in.slot[r] >= 0 && in.slot[r] < cache.slots, "decode_step row");
    cache_row[r] = static_cast<int32_t>(int64_t(in.slot[r]) * T + in.pos[r]);
    self_segs[r] = {r, 1, int64_t(in.slot[r]) * T, int64_t(in.pos[r]) + 1};
    cross_segs[r] = {r, 1, enc.begin.at(in.source[r]), enc.len.at(in.source[r])};
    ws.q_pos[r] = in.pos[r];
  }
  place(ws.x, {n, D});
  place(ws.h, {n, D});
  ops::Embedding()(mat(shared_), indices(in.ids, ws.ids), n, mat(ws.x));
  const int32_t* rows_at = indices(cache_row, ws.rows_at);
  const int32_t* q_pos = indices(ws.q_pos, ws.qpos);
  const ConstMat ckv = mat(enc.cross_kv);
  GMLM_CHECK(ckv.cols == kv_ld, "decode_step: cross keys/values of width ", ckv.cols);
  ops::MultiHeadAttention mha(cfg_.num_heads, cfg_.d_kv);
  ops::Gemm residual;
  residual.beta = 1.f;
  for (int64_t l = 0; l < nl; ++l) {
    const DecoderBlock& blk = decoder_[l];
    // self-attention over the cache
    ops::RMSNorm{eps}(mat(ws.x), blk.self_attn.layer_norm.data<float>(), mat(ws.h), &pool);
    place(ws.qkv, {n, 3 * I});
    ops::Gemm()(mat(ws.h), mat(blk.self_attn.qkv), mat(ws.qkv), pool);
    Mat kv = cache.layer(l);   // (slots * T, 2I): [K | V]
    ops::CopyRows()(mat(ws.qkv).sub(0, n, I, 2 * I), nullptr, kv, rows_at, n);
    place(ws.att, {n, I});
    const Mat qkv = mat(ws.qkv);
    mha(qkv.sub(0, n, 0, I), q_pos, kv.sub(0, kv.rows, 0, I), kv.sub(0, kv.rows, I, I), self_segs,
        decoder_bias_.data<float>(), T - 1, mat(ws.att), pool);
    residual(mat(ws.att), mat(blk.self_attn.o), mat(ws.x), pool);
    // cross-attention
    ops::RMSNorm{eps}(mat(ws.x), blk.cross_attn.layer_norm.data<float>(), mat(ws.h), &pool);
    place(ws.q, {n, I});
    ops::Gemm()(mat(ws.h), mat(blk.cross_attn.q), mat(ws.q), pool);
    mha(mat(ws.q), nullptr, ckv.sub(0, ckv.rows, 2 * I * l, I), ckv.sub(0, ckv.rows, 2 * I * l + I, I), cross_segs,
        nullptr, 0, mat(ws.att), pool);
    residual(mat(ws.att), mat(blk.cross_attn.o), mat(ws.x), pool);
    // feed-forward
    ops::RMSNorm{eps}(mat(ws.x), blk.ffn.layer_norm.data<float>(), mat(ws.h), &pool);
    place(ws.ffn, {n, cfg_.d_ff});
    blk.ffn.forward(mat(ws.h), mat(ws.x), mat(ws.ffn), pool);
  }
  place(states, {n, D});
  ops::RMSNorm{eps}(mat(ws.x), decoder_final_norm_.data<float>(), mat(states), &pool);
  if (cfg_.tie_word_embeddings) ops::Scale(static_cast<float>(std::pow(static_cast<double>(D), -0.5)))(mat(states));
}

void SelfCache::reset(int64_t num_layers, int64_t width, int64_t max_len_, Device device) {
  max_len = max_len_;
  width_ = width;
  device_ = device;
  slots = 0;
  data_.clear();
  data_.resize(static_cast<size_t>(num_layers));
}

void SelfCache::release() {
  for (Tensor& d : data_) d = Tensor();
  slots = 0;
}

void SelfCache::reserve(int64_t n) {
  if (n <= slots) return;
  const int64_t grow = std::max<int64_t>(n, slots * 2), kept = slots * max_len;
  for (Tensor& d : data_) {
    Tensor bigger({grow * max_len, width_}, DType::float32, device_);   // not zeroed
    if (kept > 0) ops::CopyRows()(mat(d), nullptr, mat(bigger).sub(0, kept, 0, width_), nullptr, kept);
    d = std::move(bigger);
  }
  slots = grow;
}

Mat SelfCache::layer(int64_t l) {
  return {slots > 0 ? data_[l].data<float>() : nullptr, slots * max_len, width_, width_, device_};
}

void SelfCache::copy_slot(int64_t from, int64_t to, int64_t rows) {
  if (from == to || rows == 0) return;
  for (Tensor& d : data_) {
    const Mat m = mat(d);
    ops::CopyRows()(m.sub(from * max_len, rows, 0, width_), nullptr, m.sub(to * max_len, rows, 0, width_), nullptr,
                    rows);
  }
}

}  // namespace gmlm
