// gmlm_engine._core.Engine: a loaded model plus its thread pool and workspace. Python's
// gmlm_engine.engine.Translator wraps it (tokenization, options, batching, results).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <optional>
#include <memory>
#include <mutex>

#include "core/profiler.h"
#include "cpu/lowp.h"
#include "decoding/ar.h"
#include "decoding/refine.h"
#include "models/t5_model.h"
#include "ops/gemm.h"
#if GMLM_WITH_CUDA
#include "cuda/half_weights.h"
#include "cuda/device.h"
#endif

namespace py = pybind11;

namespace gmlm {

namespace {

template <typename T>
T get_field(const py::dict& d, const char* key) {
  if (!d.contains(key)) throw std::invalid_argument(str_cat("config: missing key ", key));
  try {
    return d[key].cast<T>();
  } catch (const py::cast_error&) {
    throw std::invalid_argument(str_cat("config: ", key, " has the wrong type (", py::str(d[key]).cast<std::string>(), ")"));
  }
}

T5Config config_from_dict(const py::dict& d) {
  T5Config c;
  const std::string objective = get_field<std::string>(d, "objective");
  GMLM_CHECK_ARG(objective == "gmlm" || objective == "ar" || objective == "ctc",
                 "config: objective must be 'gmlm', 'ar' or 'ctc', got ", objective);
  c.gmlm = objective != "ar";
  if (objective == "ctc") c.ctc_upsample = get_field<double>(d, "ctc_upsample");
  c.vocab_size = get_field<int64_t>(d, "vocab_size");
  c.d_model = get_field<int64_t>(d, "d_model");
  c.d_kv = get_field<int64_t>(d, "d_kv");
  c.d_ff = get_field<int64_t>(d, "d_ff");
  c.num_heads = get_field<int64_t>(d, "num_heads");
  c.num_encoder_layers = get_field<int64_t>(d, "num_encoder_layers");
  c.num_decoder_layers = get_field<int64_t>(d, "num_decoder_layers");
  c.relative_attention_num_buckets = get_field<int64_t>(d, "relative_attention_num_buckets");
  c.relative_attention_max_distance = get_field<int64_t>(d, "relative_attention_max_distance");
  const std::string ffn = get_field<std::string>(d, "feed_forward_proj");
  GMLM_CHECK_ARG(ffn == "relu" || ffn == "gated-gelu", "config: feed_forward_proj must be 'relu' or 'gated-gelu', got ",
                 ffn);
  c.gated_gelu = ffn == "gated-gelu";
  c.layer_norm_epsilon = static_cast<float>(get_field<double>(d, "layer_norm_epsilon"));
  c.tie_word_embeddings = get_field<bool>(d, "tie_word_embeddings");
  c.max_source_len = get_field<int64_t>(d, "max_source_len");
  c.max_target_len = get_field<int64_t>(d, "max_target_len");
  c.pad_id = get_field<int32_t>(d, "pad_id");
  c.eos_id = get_field<int32_t>(d, "eos_id");
  c.unk_id = get_field<int32_t>(d, "unk_id");
  c.mask_id = get_field<int32_t>(d, "mask_id");
  c.len_id = get_field<int32_t>(d, "len_id");
  c.decoder_start_token_id = get_field<int32_t>(d, "decoder_start_token_id");
  GMLM_CHECK_ARG(c.decoder_start_token_id >= 0 && c.decoder_start_token_id < c.vocab_size,
                 "config: decoder_start_token_id must be a token id in [0, vocab_size)");
  return c;
}

WeightMap weights_from_dict(const py::dict& d) {
  WeightMap w;
  for (auto item : d) {
    const std::string name = item.first.cast<std::string>();
    if (!py::isinstance<py::array>(item.second))
      throw std::invalid_argument(str_cat("weights: ", name, " is not a numpy array"));
    py::array a = item.second.cast<py::array>();
    GMLM_CHECK_ARG(a.dtype().is(py::dtype::of<float>()), "weights: tensor ", name, " has dtype ",
                   py::str(a.dtype()).cast<std::string>(), ", expected float32");
    GMLM_CHECK_ARG(a.flags() & py::array::c_style, "weights: tensor ", name, " is not C-contiguous");
    WeightRef r;
    r.data = static_cast<const float*>(a.data());
    for (py::ssize_t i = 0; i < a.ndim(); ++i) r.shape.push_back(a.shape(i));
    w.emplace(name, std::move(r));
  }
  return w;
}

std::vector<std::vector<int32_t>> id_lists(const std::vector<std::vector<int64_t>>& in, const char* what,
                                           int64_t vocab) {
  std::vector<std::vector<int32_t>> out(in.size());
  for (size_t b = 0; b < in.size(); ++b) {
    for (int64_t x : in[b]) {
      GMLM_CHECK_ARG(x >= 0 && x < vocab, what, " ", b, ": token id ", x, " is outside the vocabulary [0, ", vocab, ")");
      out[b].push_back(static_cast<int32_t>(x));
    }
    GMLM_CHECK_ARG(!out[b].empty(), what, " ", b, " is empty");
  }
  return out;
}

// The options of one refinement request by keyword (translate_batch's names, python/gmlm_engine/options.py;
// absent keys keep the model's defaults, RefineOptions::defaults_for). The one place where Python options become the C++ struct: the
// types and choices here, the ranges in RefineOptions::validate / ArOptions::validate.
// An option's value as its type, or ValueError naming the option (never pybind11's "Unable to cast").
int64_t int_value(const std::string& k, const py::handle& v) {
  GMLM_CHECK_ARG(py::isinstance<py::int_>(v) && !py::isinstance<py::bool_>(v), k, " must be an integer, got ",
                 std::string(py::repr(v)));
  try {
    return v.cast<int64_t>();
  } catch (const py::cast_error&) {
    GMLM_CHECK_ARG(false, k, " is out of range, got ", std::string(py::repr(v)));
  }
  return 0;
}
uint64_t seed_value(const std::string& k, const py::handle& v) {
  const int64_t x = int_value(k, v);
  GMLM_CHECK_ARG(x >= 0, k, " must be in [0, 2^63 - 1], got ", x);
  return static_cast<uint64_t>(x);
}
double float_value(const std::string& k, const py::handle& v) {
  GMLM_CHECK_ARG((py::isinstance<py::float_>(v) || py::isinstance<py::int_>(v)) && !py::isinstance<py::bool_>(v),
                 k, " must be a number, got ", std::string(py::repr(v)));
  return v.cast<double>();
}
bool bool_value(const std::string& k, const py::handle& v) {
  GMLM_CHECK_ARG(py::isinstance<py::bool_>(v), k, " must be True or False, got ", std::string(py::repr(v)));
  return v.cast<bool>();
}
std::string str_value(const std::string& k, const py::handle& v) {
  GMLM_CHECK_ARG(py::isinstance<py::str>(v), k, " must be a string, got ", std::string(py::repr(v)));
  return v.cast<std::string>();
}

RefineOptions options_from_dict(const py::dict& d, const T5Config& cfg) {
  RefineOptions o = RefineOptions::defaults_for(cfg);
  std::optional<double> threshold;
  std::string remask = "linear", init = "mask", update = "masked";
  for (auto item : d) {
    const std::string k = py::str(item.first);
    const py::handle v = item.second;
    if (k == "iterations") o.iterations = int_value(k, v);
    else if (k == "length_beam") o.length_beam = int_value(k, v);
    else if (k == "length_beam_keep") o.length_beam_keep = v.is_none() ? 0 : int_value(k, v);
    else if (k == "length_offset") o.length_offset = int_value(k, v);
    else if (k == "remask") remask = str_value(k, v);
    else if (k == "update") update = str_value(k, v);
    else if (k == "threshold") { if (!v.is_none()) threshold = float_value(k, v); }
    else if (k == "stutter_remask") o.stutter_remask = bool_value(k, v);
    else if (k == "repeat_remask") o.repeat_remask = bool_value(k, v);
    else if (k == "repeat_penalty") o.repeat_penalty = float_value(k, v);
    else if (k == "blank_penalty") o.blank_penalty = float_value(k, v);
    else if (k == "cache_refresh") o.cache_refresh = int_value(k, v);
    else if (k == "early_stop") o.early_stop = bool_value(k, v);
    else if (k == "init") init = str_value(k, v);
    else if (k == "sampling") o.sampling = bool_value(k, v);
    else if (k == "seed") o.seed = v.is_none() ? 0 : seed_value(k, v);
    else if (k == "return_history") o.return_history = bool_value(k, v);
    else if (k == "return_candidates") o.return_candidates = bool_value(k, v);
    else GMLM_CHECK_ARG(false, "unknown option ", k);
  }
  GMLM_CHECK_ARG(remask == "linear" || remask == "threshold", "remask must be 'linear' or 'threshold', got ", remask);
  GMLM_CHECK_ARG(init == "mask" || init == "random", "init must be 'mask' or 'random', got ", init);
  GMLM_CHECK_ARG(update == "masked" || update == "all", "update must be 'masked' or 'all', got ", update);
  o.update_all = update == "all";
  o.threshold_remask = remask == "threshold";
  if (o.threshold_remask) {
    GMLM_CHECK_ARG(threshold, "threshold must be a probability in (0, 1) with remask='threshold'");
    o.log_threshold = std::log(*threshold);  // its range: RefineOptions::validate
  }
  o.init_random = init == "random";
  return o;
}

// RefineOptions' defaults as translate_batch names them (tests/test_options.py compares them with the table).
py::dict refine_defaults(const std::string& objective) {
  GMLM_CHECK_ARG(objective == "gmlm" || objective == "ctc", "objective must be 'gmlm' or 'ctc', got ", objective);
  T5Config cfg;
  if (objective == "ctc") cfg.ctc_upsample = 1;
  const RefineOptions o = RefineOptions::defaults_for(cfg);
  py::dict d;
  d["iterations"] = o.iterations;
  d["length_beam"] = o.length_beam;
  d["length_beam_keep"] = o.length_beam_keep == 0 ? py::object(py::none()) : py::object(py::int_(o.length_beam_keep));
  d["length_offset"] = o.length_offset;
  d["update"] = o.update_all ? "all" : "masked";
  d["remask"] = o.threshold_remask ? "threshold" : "linear";
  d["stutter_remask"] = o.stutter_remask;
  d["repeat_remask"] = o.repeat_remask;
  d["repeat_penalty"] = o.repeat_penalty;
  d["blank_penalty"] = o.blank_penalty;
  d["cache_refresh"] = o.cache_refresh;
  d["early_stop"] = o.early_stop;
  d["init"] = o.init_random ? "random" : "mask";
  d["sampling"] = o.sampling;
  d["seed"] = o.seed;
  d["return_history"] = o.return_history;
  return d;
}

// The options of one ar request, by keyword (beam_size, length_penalty; absent keys keep the defaults).
ArOptions ar_options_from_dict(const py::dict& d) {
  ArOptions o;
  for (auto item : d) {
    const std::string key = py::str(item.first);
    GMLM_CHECK_ARG(key == "beam_size" || key == "length_penalty", "unknown option ", key, " for an ar model");
  }
  if (d.contains("beam_size")) o.beam_size = int_value("beam_size", d["beam_size"]);
  if (d.contains("length_penalty")) o.length_penalty = float_value("length_penalty", d["length_penalty"]);
  return o;
}

// (ids, score, passes, history, length_candidates), and with return_candidates a 6th element: the
// candidates [(ids, score, passes)] that were scored.
py::tuple result_tuple(const RefineResult& r, bool candidates = false) {
  if (!candidates) return py::make_tuple(r.ids, r.score, r.passes, r.history, r.length_candidates);
  py::list cands;
  for (const auto& c : r.candidates) cands.append(py::make_tuple(c.ids, c.score, c.passes));
  return py::make_tuple(r.ids, r.score, r.passes, r.history, r.length_candidates, cands);
}

py::array_t<float> to_numpy(const float* data, int64_t rows, int64_t cols) {
  py::array_t<float> a({rows, cols});
  std::memcpy(a.mutable_data(), data, sizeof(float) * rows * cols);
  return a;
}

}  // namespace

// Installs an engine's low-precision weights on the calling thread for a scope.
struct LowpScope {
  explicit LowpScope(const cpu::LowpWeights* set) { cpu::LowpWeights::install(set); }
  ~LowpScope() { cpu::LowpWeights::install(nullptr); }
};

class Engine {
 public:
  Engine(const py::dict& config, const py::dict& weights, int intra_threads, const std::string& compute_type,
         const std::vector<bool>& word_pieces, const std::string& device, int device_index) {
    GMLM_CHECK_ARG(intra_threads >= 0 && intra_threads <= ThreadPool::max_threads(), "intra_threads must be in [0, ",
                   ThreadPool::max_threads(), "] (at most 4 x the cores available), got ", intra_threads);
    GMLM_CHECK_ARG(device == "cpu" || device == "cuda", "device must be 'cpu' or 'cuda', got ", device);
    const ComputeType ct = compute_type_from_name(compute_type, device);
    T5Config cfg = config_from_dict(config);
    WeightMap w = weights_from_dict(weights);
    if (device == "cuda") {
      // the same model and loops over the device's ops (docs/cuda.md)
#if GMLM_WITH_CUDA
      cuda::use_device(device_index);
      device_ = Device::cuda;
      device_index_ = device_index;
#else
      GMLM_CHECK_ARG(false, "this build of gmlm_engine has no CUDA support (build with GMLM_WITH_CUDA=ON)");
#endif
    }
    {
      py::gil_scoped_release release;
      model_ = std::make_unique<T5Model>(std::move(cfg), w, device_);
      if (!word_pieces.empty()) {
        GMLM_CHECK_ARG(static_cast<int64_t>(word_pieces.size()) == model_->config().vocab_size, "word_pieces has ",
                       word_pieces.size(), " flags for a vocabulary of ", model_->config().vocab_size);
        model_->set_word_pieces(std::vector<uint8_t>(word_pieces.begin(), word_pieces.end()));
      }
      pool_ = std::make_unique<ThreadPool>(intra_threads);
      if (ct != ComputeType::float32 && device_ == Device::cpu) {
        lowp_ = std::make_unique<cpu::LowpWeights>(ct);
        for (const ConstMat& m : model_->gemm_weights()) lowp_->add(m.data, m.rows, m.cols);
      }
#if GMLM_WITH_CUDA
      if (ct != ComputeType::float32 && device_ == Device::cuda) {
        half_ = std::make_unique<cuda::HalfWeights>(ct);
        for (const ConstMat& m : model_->gemm_weights()) half_->add(m.data, m.rows, m.cols);
      }
#endif
      compute_type_ = ct;
    }
  }

  // f(workspace, pool) under the engine's lock with its low-precision weights installed (also for Batch).
  template <typename F>
  auto locked(F&& f) {
    std::lock_guard<std::mutex> lock(mutex_);
#if GMLM_WITH_CUDA
    if (device_ == Device::cuda) cuda::use_device(device_index_);   // the calling thread's current device
#endif
    LowpScope lowp(lowp_.get());
#if GMLM_WITH_CUDA
    struct HalfScope {
      explicit HalfScope(const cuda::HalfWeights* set) { cuda::HalfWeights::install(set); }
      ~HalfScope() { cuda::HalfWeights::install(nullptr); }
    } half(half_.get());
#endif
    return f(ws_, *pool_);
  }
  // Once the engine's work ends for now (a translate call returned, a Batch emptied): activation buffers over
  // kKeepWorkspace are freed and the freed heap returned to the system, so one big request (beam 256, a long
  // batch) does not leave a server holding its high-water mark.
  static constexpr std::size_t kKeepWorkspace = std::size_t(128) << 20;
  // freed_elsewhere: the caller freed big buffers of its own (a batch's caches): return the heap too.
  void trim(bool freed_elsewhere = false) {
    std::lock_guard<std::mutex> lock(mutex_);
    const bool big = ws_.bytes() > kKeepWorkspace;
    if (big) ws_ = Workspace();
#ifdef __GLIBC__
    if (big || freed_elsewhere) malloc_trim(0);
#endif
  }
  std::size_t workspace_bytes() {
    std::lock_guard<std::mutex> lock(mutex_);
    return ws_.bytes();
  }
  // locked(f) with the profiler installed while profiling, the call's wall time counted.
  template <typename F>
  auto profiled(F&& f) {
    return locked([&](Workspace& ws, ThreadPool& pool) {
      struct Installed {
        explicit Installed(Profiler* p) { Profiler::install(p); }
        ~Installed() { Profiler::install(nullptr); }
      } installed(profiling_ ? &profile_ : nullptr);
      const auto t0 = std::chrono::steady_clock::now();
      auto out = f(ws, pool);
      if (profiling_) profile_.total_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      return out;
    });
  }

  std::string compute_type() const { return compute_type_name(compute_type_); }

  // The options' one check (RefineOptions::validate or ArOptions::validate) for this model,
  // without decoding anything.
  void validate(const py::kwargs& options) const {
    if (model_->config().gmlm)
      options_from_dict(options, model_->config()).validate(model_->config());
    else
      ar_options_from_dict(options).validate();
  }

  py::list translate(const std::vector<std::vector<int64_t>>& sources, const py::kwargs& options) {
    const RefineOptions o = options_from_dict(options, model_->config());
    return offline(sources, o.return_candidates, [&](const auto& src, Workspace& ws, ThreadPool& pool) {
      return refine_batch(*model_, src, o, ws, pool);
    });
  }

  // Teacher-forced AR scores of targets given sources (ar_score, decoding/ar.h).
  std::vector<double> score_ar(const std::vector<std::vector<int64_t>>& sources,
                               const std::vector<std::vector<int64_t>>& targets) {
    auto src = id_lists(sources, "source", model_->config().vocab_size);
    GMLM_CHECK_ARG(targets.size() == sources.size(), "score_ar: ", sources.size(), " sources but ", targets.size(),
                   " targets");
    std::vector<std::vector<int32_t>> tgt(targets.size());
    for (size_t i = 0; i < targets.size(); ++i)
      for (int64_t x : targets[i]) {
        GMLM_CHECK_ARG(x >= 0 && x < model_->config().vocab_size, "target ", i, ": token id ", x, " is outside the vocabulary");
        tgt[i].push_back(static_cast<int32_t>(x));
      }
    py::gil_scoped_release release;
    return locked([&](Workspace& ws, ThreadPool& pool) { return ar_score(*model_, src, tgt, ws, pool); });
  }

  // AR decoding (greedy or beam search) of one batch of encoder inputs; results as translate().
  py::list translate_ar(const std::vector<std::vector<int64_t>>& sources, int64_t beam_size, double length_penalty) {
    ArOptions o;
    o.beam_size = beam_size;
    o.length_penalty = length_penalty;
    return offline(sources, false, [&](const auto& src, Workspace& ws, ThreadPool& pool) {
      return ar_batch(*model_, src, o, ws, pool);
    });
  }

  // One offline batch of either strategy: the sources checked, `decode(src, ws, pool)` run without the GIL under
  // the profiler, big buffers trimmed after it, the results as tuples (result_tuple).
  template <typename Decode>
  py::list offline(const std::vector<std::vector<int64_t>>& sources, bool candidates, Decode&& decode) {
    auto src = id_lists(sources, "source", model_->config().vocab_size);
    std::vector<RefineResult> res;
    {
      py::gil_scoped_release release;
      res = profiled([&](Workspace& ws, ThreadPool& pool) { return decode(src, ws, pool); });
      trim();
    }
    py::list out;
    for (auto& r : res) out.append(result_tuple(r, candidates));
    return out;
  }

  // Encoder states of each source: list of (S_b, D) arrays (tests compare them with PyTorch).
  py::list encode(const std::vector<std::vector<int64_t>>& sources) {
    auto src = id_lists(sources, "source", model_->config().vocab_size);
    EncoderOutput enc;
    {
      py::gil_scoped_release release;
      locked([&](Workspace& ws, ThreadPool& pool) {
        model_->encode(src, enc, ws, pool);
        enc.states = enc.states.to(Device::cpu);
      });
    }
    py::list out;
    const int64_t D = model_->config().d_model;
    for (size_t b = 0; b < src.size(); ++b)
      out.append(to_numpy(enc.states.data<float>() + enc.begin[b] * D, enc.len[b], D));
    return out;
  }

  // Length logits (B, max_target_len).
  py::array_t<float> length_logits(const std::vector<std::vector<int64_t>>& sources) {
    auto src = id_lists(sources, "source", model_->config().vocab_size);
    Tensor logits;
    {
      py::gil_scoped_release release;
      locked([&](Workspace& ws, ThreadPool& pool) {
        EncoderOutput enc;
        model_->encode(src, enc, ws, pool);
        model_->length_logits(enc, logits, ws, pool);
        logits = logits.to(Device::cpu);
      });
    }
    return to_numpy(logits.data<float>(), static_cast<int64_t>(src.size()), logits.dim(1));
  }

  // One decoder pass over targets[b] (decoder input ids, any length in [1, max_target_len]) with
  // the encoder output of sources[b]: the vocabulary logits of every position, list of (L_b, V).
  py::list decode_logits(const std::vector<std::vector<int64_t>>& sources,
                         const std::vector<std::vector<int64_t>>& targets) {
    const int64_t V = model_->config().vocab_size;
    auto src = id_lists(sources, "source", V);
    auto tgt = id_lists(targets, "target", V);
    GMLM_CHECK_ARG(src.size() == tgt.size(), "decode_logits: ", src.size(), " sources but ", tgt.size(), " targets");
    Tensor logits;
    DecoderInput in;
    py::gil_scoped_release release;
    locked([&](Workspace& ws, ThreadPool& pool) {
      EncoderOutput enc;
      model_->encode(src, enc, ws, pool);
      for (size_t b = 0; b < tgt.size(); ++b) {
        GMLM_CHECK_ARG(static_cast<int64_t>(tgt[b].size()) <= model_->config().max_target_len, "target ", b,
                       " is longer than max_target_len");
        const int64_t begin = static_cast<int64_t>(in.ids.size()), n = static_cast<int64_t>(tgt[b].size());
        in.segs.push_back({begin, n, n, begin, static_cast<int64_t>(b)});
        for (int64_t i = 0; i < n; ++i) {
          in.ids.push_back(tgt[b][i]);
          in.pos.push_back(static_cast<int32_t>(i));
          in.sel.push_back(static_cast<int32_t>(begin + i));
        }
      }
      Tensor states;
      model_->decode(in, enc, nullptr, ws, pool, states);
      model_->place(logits, {states.dim(0), V});
      ops::Gemm()(mat(states), model_->output_embedding(), mat(logits), pool);
      logits = logits.to(Device::cpu);
    });
    py::gil_scoped_acquire acquire;
    py::list out;
    for (const DecoderSegment& s : in.segs) out.append(to_numpy(logits.data<float>() + s.begin * V, s.rows, V));
    return out;
  }

  int num_threads() const { return pool_->num_threads(); }

  const T5Model& model() const { return *model_; }

  void set_profiling(bool on) {
    std::lock_guard<std::mutex> lock(mutex_);
    profiling_ = on;
    profile_.reset();
  }

  py::dict profile() {
    std::lock_guard<std::mutex> lock(mutex_);
    py::dict d;
    for (int p = 0; p < static_cast<int>(Phase::count); ++p) d[phase_name(static_cast<Phase>(p))] = profile_.seconds[p];
    d["total"] = profile_.total_seconds;
    d["gemm_flops"] = profile_.gemm_flops;
    d["vocab_flops"] = profile_.vocab_flops;
    d["decoder_rows"] = profile_.decoder_rows;
    d["decoder_positions"] = profile_.decoder_positions;
    d["vocab_gemm_thread_seconds"] = profile_.vocab_gemm_thread_seconds;
    d["vocab_reduce_thread_seconds"] = profile_.vocab_reduce_thread_seconds;
    py::list shapes;
    for (const auto& [mnk, s] : profile_.gemm_shapes)
      shapes.append(py::make_tuple(std::get<0>(mnk), std::get<1>(mnk), std::get<2>(mnk), s.calls, s.seconds));
    d["gemm_shapes"] = shapes;
    py::list vshapes;
    for (const auto& [mnk, s] : profile_.vocab_shapes)
      vshapes.append(py::make_tuple(std::get<0>(mnk), std::get<1>(mnk), std::get<2>(mnk), s.calls, s.seconds));
    d["vocab_shapes"] = vshapes;
    return d;
  }

 private:
  std::unique_ptr<T5Model> model_;
  Device device_ = Device::cpu;
  int device_index_ = 0;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<cpu::LowpWeights> lowp_;  // low-precision weights on the CPU (compute_type bfloat16 / int8)
#if GMLM_WITH_CUDA
  std::unique_ptr<cuda::HalfWeights> half_;  // half-precision weights on cuda (compute_type float16 / bfloat16)
#endif
  ComputeType compute_type_ = ComputeType::float32;
  Workspace ws_;
  std::mutex mutex_;  // one call at a time: the pool and the workspace are shared
  bool profiling_ = false;
  Profiler profile_;
};

// gmlm_engine._core.Batch: a resumable batch on an Engine (continuous batching, decoding/refine.h).
// One thread drives it (add, step, current, cancel); add() and step() take the engine's lock, so
// translate() calls on the same engine from other threads wait for the current pass and no longer.
// Every method holds the batch's own lock while it touches the batch, so a second thread cannot
// read it half-changed; requests and live_rows are counters published after each change, readable
// from any thread at any time without waiting for a pass (the server's /metrics reads them).
class Batch {
 public:
  explicit Batch(Engine& engine) : engine_(engine) {
    if (engine.model().config().gmlm)
      batch_.reset(refine_ = new RefineBatch(engine.model()));
    else
      batch_.reset(ar_ = new ArBatch(engine.model()));
  }

  std::vector<int64_t> add(const std::vector<std::vector<int64_t>>& sources, const std::vector<py::dict>& options) {
    GMLM_CHECK_ARG(options.size() == sources.size(), "add: ", sources.size(), " sources but ", options.size(),
                   " option dicts");
    std::vector<RefineOptions> ropts;
    std::vector<ArOptions> aopts;
    for (const py::dict& d : options) {
      if (refine_)
        ropts.push_back(options_from_dict(d, engine_.model().config()));
      else
        aopts.push_back(ar_options_from_dict(d));
    }
    auto src = id_lists(sources, "source", engine_.model().config().vocab_size);
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    Publish publish{*this};
    return engine_.locked([&](Workspace& ws, ThreadPool& pool) {
      return refine_ ? refine_->add(src, ropts, ws, pool) : ar_->add(src, aopts, ws, pool);
    });
  }

  py::list step() {
    std::vector<std::pair<int64_t, RefineResult>> done;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      Publish publish{*this};
      done = engine_.locked([&](Workspace& ws, ThreadPool& pool) { return batch_->step(ws, pool); });
      release_if_idle();
    }
    py::list out;
    for (auto& [id, r] : done) out.append(py::make_tuple(id, result_tuple(r)));
    return out;
  }

  py::object current(int64_t id) {
    RefineResult r;
    bool found;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      found = batch_->current(id, &r);
    }
    if (!found) return py::none();
    return result_tuple(r);
  }

  // (best, [(tokens, log-probs, masked, score, passes, done, pruned)]) or None (ResumableBatch::snapshot).
  py::object snapshot(int64_t id) {
    std::vector<CandidateState> cands;
    int64_t best = 0;
    bool found;
    {
      py::gil_scoped_release release;
      std::lock_guard<std::mutex> lock(mutex_);
      found = batch_->snapshot(id, &cands, &best);
    }
    if (!found) return py::none();
    py::list out;
    for (const CandidateState& c : cands) {
      std::vector<bool> masked(c.masked.begin(), c.masked.end());
      out.append(py::make_tuple(c.tokens, c.conf, masked, c.score, c.passes, c.done, c.pruned));
    }
    return py::make_tuple(best, out);
  }

  bool cancel(int64_t id) {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    Publish publish{*this};
    const bool found = batch_->cancel(id);
    release_if_idle();
    return found;
  }
  int64_t requests() const { return requests_.load(std::memory_order_acquire); }
  // Bytes held between steps: the batch's encoder rows and caches, and the engine's activation buffers.
  std::size_t memory_bytes() {
    py::gil_scoped_release release;
    std::lock_guard<std::mutex> lock(mutex_);
    return batch_->held_bytes() + engine_.workspace_bytes();
  }
  int64_t live_rows() const { return live_rows_.load(std::memory_order_acquire); }

 private:
  // Under mutex_: once no request is live, give back what the last ones needed (a server keeps its batch).
  void release_if_idle() {
    if (batch_->requests() != 0) return;
    batch_->release();
    engine_.trim(true);
  }
  // Publishes the counters when a change ends (normally or by an exception), under mutex_.
  struct Publish {
    Batch& b;
    ~Publish() {
      b.requests_.store(b.batch_->requests(), std::memory_order_release);
      b.live_rows_.store(b.batch_->live_rows(), std::memory_order_release);
    }
  };

  Engine& engine_;
  std::unique_ptr<ResumableBatch> batch_;
  RefineBatch* refine_ = nullptr;  // batch_ for a gmlm model (add takes its options)
  ArBatch* ar_ = nullptr;          // batch_ for an ar model
  std::mutex mutex_;  // guards the batch
  std::atomic<int64_t> requests_{0}, live_rows_{0};
};

// Whether this build has the CUDA engine and how many devices it sees (with the reason when none).
py::dict cuda_status() {
  py::dict d;
#if GMLM_WITH_CUDA
  std::string why;
  const int n = cuda::device_count(&why);
  d["built"] = true;
  d["device_count"] = n;
  d["reason"] = n > 0 ? std::string() : why;
  py::list names;
  for (int i = 0; i < n; ++i) names.append(cuda::device_description(i));
  d["devices"] = names;
#else
  d["built"] = false;
  d["device_count"] = 0;
  d["reason"] = std::string("this build of gmlm_engine has no CUDA support (build with GMLM_WITH_CUDA=ON)");
  d["devices"] = py::list();
#endif
  return d;
}

void register_engine(py::module_& m) {
  m.def("refine_defaults", &refine_defaults, py::arg("objective") = "gmlm",
        "The engine's refinement defaults for a gmlm or ctc model (RefineOptions::defaults_for) under\n"
        "translate_batch's option names.");
  m.def("cuda_status", &cuda_status,
        "{'built': CUDA engine compiled in, 'device_count': usable devices, 'reason': why none (or ''),\n"
        "'devices': descriptions}. Never raises: a missing driver or GPU is reported in 'reason'.");
  py::class_<Engine>(m, "Engine", "A gmlm, ctc or ar model loaded into the compiled engine (on the CPU, or on cuda in a CUDA build).")
      .def(py::init<const py::dict&, const py::dict&, int, const std::string&, const std::vector<bool>&,
                    const std::string&, int>(),
           py::arg("config"), py::arg("weights"), py::arg("intra_threads") = 0, py::arg("compute_type") = "float32",
           py::arg("word_pieces") = std::vector<bool>(), py::arg("device") = "cpu", py::arg("device_index") = 0,
           "Load a model: config (the config.json dict) and weights (name -> float32 C-contiguous numpy array,\n"
           "as returned by gmlm_engine.config.load_weights_numpy). The weights are checked and copied.\n"
           "intra_threads: threads for BLAS and the engine's kernels (0: the cores available). device 'cuda'\n"
           "(a CUDA build): the same model and decoding loops over the GPU's ops, compute_type\n"
           "float32, float16 or bfloat16 (half-precision copies of the GEMM weights, cuda/half_weights.h).")
      .def("validate", &Engine::validate,
           "Check decoding options (by keyword, translate's or translate_ar's names) for this model,\n"
           "without decoding: ValueError naming the first bad one (RefineOptions / ArOptions::validate).")
      .def("translate", &Engine::translate, py::arg("sources"),
           "Refinement decoding of one batch of encoder inputs (lists of ids); options by keyword, translate_batch's\n"
           "names (absent: the defaults of _core.refine_defaults()). Returns, per source, a tuple\n"
           "(ids, score, passes, history, length_candidates), with return_candidates a 6th element: the\n"
           "scored candidates [(ids, score, passes)]. The GIL is released while decoding.")
      .def("score_ar", &Engine::score_ar, py::arg("sources"), py::arg("targets"),
           "ar models: the teacher-forced mean log-probability of each target (its tokens and eos) given its\n"
           "source (encoder input ids). The GIL is released.")
      .def("translate_ar", &Engine::translate_ar, py::arg("sources"), py::arg("beam_size") = 1,
           py::arg("length_penalty") = 1.0,
           "AR decoding (greedy for beam_size 1, else beam search) of one batch of encoder inputs of an ar\n"
           "model. Returns, per source, (ids, score, passes, [], []). The GIL is released while decoding.")
      .def("encode", &Engine::encode, py::arg("sources"), "Encoder output of each source: list of (S, D) arrays.")
      .def("length_logits", &Engine::length_logits, py::arg("sources"), "Length logits (B, max_target_len).")
      .def("decode_logits", &Engine::decode_logits, py::arg("sources"), py::arg("targets"),
           "One decoder pass over the given target ids: vocabulary logits (L, V) per target.")
      .def_property_readonly("num_threads", &Engine::num_threads, "Threads used (intra_threads resolved).")
      .def_property_readonly("compute_type", &Engine::compute_type, "cpu: float32, bfloat16 or int8 (cpu/lowp.h); cuda: float32, float16 or bfloat16 (cuda/half_weights.h).")
      .def("set_profiling", &Engine::set_profiling, py::arg("enabled"),
           "Switch the time breakdown on or off (and reset it).")
      .def("profile", &Engine::profile,
           "Seconds per phase (gemm, attention, vocab, remask, layers_other, total), flops, GEMM shapes\n"
           "and vocabulary-step shapes as (M, N, K, calls, seconds), and the thread-seconds of the\n"
           "vocabulary step's BLAS calls vs its fused log-softmax/argmax, since set_profiling(True).");

  py::class_<Batch>(m, "Batch",
                    "A resumable batch on an Engine (continuous batching; refinement for a gmlm model, AR steps\n"
                    "for an ar model): requests join with add()\n"
                    "at any pass boundary and leave from step() when done. Drive it from one thread.")
      .def(py::init<Engine&>(), py::arg("engine"), py::keep_alive<1, 2>())
      .def("add", &Batch::add, py::arg("sources"), py::arg("options"),
           "Encode the sources (encoder input ids) and add one request each, with its own options dict\n"
           "(translate_batch's names). Returns the request ids. The GIL is released.")
      .def("step", &Batch::step,
           "One decoder pass over every live candidate. Returns [(id, (ids, score, passes, history,\n"
           "length_candidates))] for the requests that finished. The GIL is released.")
      .def("current", &Batch::current, py::arg("id"),
           "The result a live request would have if it stopped now (None before its first pass).")
      .def("snapshot", &Batch::snapshot, py::arg("id"),
           "Every candidate of a live request, or of one that finished in the latest step, as that step left it:\n"
           "(best, [(tokens, log_probs, masked, score, passes, done, pruned)]), best the index current() reports;\n"
           "None if unknown or before its first pass. An ar request: its live hypotheses, best first (no\n"
           "log-probs or masks), or once finished its result.")
      .def("cancel", &Batch::cancel, py::arg("id"), "Drop a live request; False if unknown.")
      .def_property_readonly("requests", &Batch::requests, "Live requests.")
      .def_property_readonly("live_rows", &Batch::live_rows, "Decoder rows of the next pass.")
      .def_property_readonly("memory_bytes", &Batch::memory_bytes,
                             "Bytes held between steps: the batch's encoder rows and key/value caches and the\n"
                             "engine's activation buffers (released once the batch is empty).");
}

}  // namespace gmlm
