// The T5 encoder-decoder of docs/decoding.md for inference on packed (unpadded) batches.
//
// Shapes: B sources, S_b source lengths, Rs = sum S_b rows of encoder states; the decoder runs on
// segments (length candidates; see decoding/refine.h) of R = sum L rows, of which `sel` rows
// (the masked positions) go on to the vocabulary. D d_model, I = H * Dh, F d_ff, V vocab.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/matrix.h"
#include "core/tensor.h"
#include "core/thread_pool.h"
#include "layers/transformer.h"

namespace gmlm {

// A borrowed float32, C-contiguous array (the binding hands over numpy arrays).
struct WeightRef {
  const float* data = nullptr;
  Shape shape;
};
using WeightMap = std::map<std::string, WeightRef>;

struct T5Config {
  int64_t vocab_size = 0, d_model = 0, d_kv = 0, d_ff = 0, num_heads = 0;
  int64_t num_encoder_layers = 0, num_decoder_layers = 0;
  int64_t relative_attention_num_buckets = 0, relative_attention_max_distance = 0;
  bool gated_gelu = false;  // feed_forward_proj == "gated-gelu" (else relu)
  float layer_norm_epsilon = 1e-6f;
  bool tie_word_embeddings = true;
  int64_t max_source_len = 0, max_target_len = 0;
  int32_t pad_id = 0, eos_id = 1, unk_id = 2, mask_id = 3, len_id = 4;
  int32_t decoder_start_token_id = 0;  // ar models: the first decoder input
  bool gmlm = true;  // refinement decoding: objective "gmlm" or "ctc" (else "ar")
  // objective "ctc": a canvas of ctc_canvas(encoder tokens) positions, no length head; 0 otherwise
  double ctc_upsample = 0;
  bool ctc() const { return ctc_upsample > 0; }
  // min(max_target_len, ceil(ctc_upsample x S)), the product in double (config.py, ctc_canvas_length)
  int64_t ctc_canvas(int64_t S) const {
    return std::min<int64_t>(max_target_len, static_cast<int64_t>(std::ceil(ctc_upsample * static_cast<double>(S))));
  }
  // The token a ctc canvas drops in its collapse (pad_id), or -1 for the other objectives.
  int32_t ctc_blank() const { return ctc() ? pad_id : -1; }

  // The first id random init may draw (docs/decoding.md, hash RNG): the ids below it are the special tokens.
  int32_t first_random_id() const { return std::max({pad_id, eos_id, unk_id, mask_id, len_id}) + 1; }

  void validate() const;  // ValueError on an inconsistent config
  // Every tensor of model.safetensors and its shape (config.py's weight_shapes()).
  std::map<std::string, Shape> weight_shapes() const;
  // The model check every loader runs (T5Model on any device): each tensor of weight_shapes()
  // present with its shape, data and finite values, no other tensor. ValueError naming the tensor.
  void check_weights(const WeightMap& w) const;
};

// The encoder side of a batch, computed once and shared by every length candidate and iteration.
struct EncoderOutput {
  std::vector<int64_t> begin, len;  // rows of source b: [begin[b], begin[b] + len[b])
  int64_t rows = 0;                 // sum of len
  Tensor states;                    // (rows, D) after the final norm
  Tensor cross_kv;                  // (rows, num_decoder_layers * 2I): per layer [K | V]
};

// A length candidate in one decoder pass.
struct DecoderSegment {
  int64_t begin, rows;  // its computed rows in the decoder input
  int64_t len;          // its positions (the keys and values its rows attend over)
  int64_t kv;           // the row of its position 0 in the key/value cache
  int64_t source;       // index into EncoderOutput
};

// One decoder pass: the computed rows of all segments back to back (every position of a candidate in an
// exact pass; with cached refinement only its fresh positions, docs/decoding.md), their positions, and
// the rows to predict.
struct DecoderInput {
  std::vector<int32_t> ids;
  std::vector<int32_t> pos;  // each row's position in its candidate
  std::vector<DecoderSegment> segs;
  std::vector<int32_t> sel;  // ascending
};

// One ar decoder step: row r is token ids[r] at position pos[r] of the hypothesis in cache slot
// slot[r], translating source `source[r]` (an index into EncoderOutput).
struct StepInput {
  std::vector<int32_t> ids, pos, slot;
  std::vector<int64_t> source;
};

// The self-attention keys and values of ar hypotheses: per decoder layer, `slots` blocks of max_len
// rows of [K | V] (2I floats). A hypothesis owns a slot; beam search copies a parent's rows into its
// children's slots. The memory is not zeroed (a step reads only the rows its hypothesis wrote), so a
// slot's pages are touched only as far as its hypothesis gets. It lives on the model's device.
class SelfCache {
 public:
  void reset(int64_t num_layers, int64_t width, int64_t max_len, Device device = Device::cpu);
  void reserve(int64_t slots);   // at least this many slots (grows geometrically, keeps the contents)
  Mat layer(int64_t l);          // (slots * max_len, width)
  void copy_slot(int64_t from, int64_t to, int64_t rows);  // rows [0, rows) of every layer
  void release();                // frees every slot (0 slots; reserve grows it again)
  std::size_t bytes() const { return static_cast<std::size_t>(slots * max_len * width_) * sizeof(float) * data_.size(); }
  int64_t layers() const { return static_cast<int64_t>(data_.size()); }
  int64_t slots = 0, max_len = 0;

 private:
  int64_t width_ = 0;
  Device device_ = Device::cpu;
  std::vector<Tensor> data_;   // per layer (slots * max_len, width)
};

// Activation buffers, grown to their high-water mark and reused across passes (on the model's device; the
// index tensors hold device copies of the host index arrays a pass needs, T5Model::indices).
struct Workspace {
  Tensor x, h, qkv, att, q, ffn, xs, hs, rows;
  std::vector<int32_t> q_pos;
  Tensor ids, pos, sel, rows_at, qpos;   // int32 on a device; unused on the CPU

  std::size_t bytes() const {
    std::size_t n = q_pos.capacity() * sizeof(int32_t);
    for (const Tensor* t : {&x, &h, &qkv, &att, &q, &ffn, &xs, &hs, &rows, &ids, &pos, &sel, &rows_at, &qpos})
      n += t->capacity();
    return n;
  }
};

class T5Model {
 public:
  // Checks every name, shape and value of `weights` against the config and copies them to `device`.
  T5Model(T5Config config, const WeightMap& weights, Device device = Device::cpu);

  const T5Config& config() const { return cfg_; }
  // Where the weights live and every pass runs; EncoderOutput, Workspace and states tensors are placed there.
  Device device() const { return device_; }
  // t resized to `shape` on the model's device (reallocated when it lives elsewhere or has another dtype).
  void place(Tensor& t, Shape shape, DType dtype = DType::float32) const;

  // Encoder (+ cross-attention K/V of every decoder layer). sources: encoder input ids.
  void encode(const std::vector<std::vector<int32_t>>& sources, EncoderOutput& out, Workspace& ws,
              ThreadPool& pool) const;
  // Length logits (B, max_target_len) from the first (<len>) row of each source.
  void length_logits(const EncoderOutput& enc, Tensor& logits, Workspace& ws, ThreadPool& pool) const;
  // Decoder states (after the final norm, times D^-0.5 when the embeddings are tied) of the
  // selected rows: (sel.size(), D). The computed rows run through every layer but the last, where
  // only their keys/values are needed and the rest runs on the selected rows. kv: the self-attention
  // key/value cache, (rows, num_decoder_layers * 2I), per layer [K | V]; position i of segment s is
  // row s.kv + i. Each layer writes its computed rows' keys/values there, then attends over all
  // s.len positions of the segment (the others: what an earlier pass wrote). kv null: every segment
  // computes all its positions in order (s.rows == s.len, s.kv == s.begin) and attends over this
  // pass's keys/values only, which are not kept.
  void decode(const DecoderInput& in, const EncoderOutput& enc, Tensor* kv, Workspace& ws, ThreadPool& pool,
              Tensor& states) const;
  int64_t decoder_kv_width() const { return 2 * inner_ * cfg_.num_decoder_layers; }
  // ar models: one causal step of every row (see StepInput); decoder states (n, D) after the final
  // norm (times D^-0.5 when tied), ready for the output projection.
  void decode_step(const StepInput& in, const EncoderOutput& enc, SelfCache& cache, Workspace& ws, ThreadPool& pool,
                   Tensor& states) const;
  int64_t self_cache_width() const { return 2 * inner_; }
  // The output projection (V, D): lm_head, or the shared embedding when tied.
  ConstMat output_embedding() const;
  // Every weight the GEMMs read as their right-hand side (for low-precision copies, cpu/lowp.h).
  std::vector<ConstMat> gemm_weights() const;
  // The vocabulary's word pieces (1 per id: a piece that starts a word with 3+ letters; repeat
  // re-masking), from the tokenizer; empty until set.
  void set_word_pieces(std::vector<uint8_t> flags) { word_pieces_ = std::move(flags); }
  const std::vector<uint8_t>& word_pieces() const { return word_pieces_; }

 private:
  std::vector<uint8_t> word_pieces_;
  struct EncoderBlock {
    SelfAttentionLayer self_attn;
    FeedForwardLayer ffn;
  };
  struct DecoderBlock {
    SelfAttentionLayer self_attn;
    CrossAttentionLayer cross_attn;
    FeedForwardLayer ffn;
  };

  void self_attention(const SelfAttentionLayer& l, const Tensor& bias, int64_t max_rel,
                      const std::vector<ops::AttentionSegment>& segs, Mat x, Workspace& ws,
                      ThreadPool& pool) const;
  // A host index array as the ops take it on the model's device: itself on the CPU, else a copy in `slot`.
  const int32_t* indices(const std::vector<int32_t>& host, Tensor& slot) const;

  T5Config cfg_;
  Device device_ = Device::cpu;
  int64_t inner_ = 0;
  Tensor shared_;                // shared.weight (V, D)
  Tensor lm_head_;               // lm_head.weight (V, D), untied models only
  Tensor length_head_;           // length_head.weight (max_target_len, D)
  Tensor embed_positions_;       // decoder.embed_positions.weight (max_target_len, D)
  std::vector<EncoderBlock> encoder_;
  Tensor encoder_final_norm_;    // encoder.final_layer_norm.weight
  Tensor encoder_bias_;          // encoder.block.0...relative_attention_bias expanded (H, 2 max_source_len - 1)
  std::vector<DecoderBlock> decoder_;
  Tensor decoder_final_norm_;    // decoder.final_layer_norm.weight
  Tensor decoder_bias_;          // decoder.block.0...relative_attention_bias expanded (H, 2 max_target_len - 1)
  Tensor cross_kv_;              // decoder.block.{l}.layer.1.EncDecAttention.{k,v}.weight stacked (L_dec*2I, D)
};

}  // namespace gmlm
