// The options and the result of GMLM refinement decoding (docs/decoding.md, "GMLM refinement"),
// of the one refinement loop (decoding/refine.h) on every device. Random init draws
// ids in [T5Config::first_random_id(), V): a model constant, not an option.
#pragma once

#include <cstdint>
#include <vector>

namespace gmlm {

struct T5Config;

// A ctc model's default blank_penalty (options.py, CTC_DEFAULT_BLANK_PENALTY; chosen on val).
constexpr double kCtcBlankPenalty = 1.25;

// The defaults are the Python API's (python/gmlm_engine/options.py declares every option once;
// tests/test_options.py checks these defaults against it through _core.refine_defaults()).
struct RefineOptions {
  int64_t iterations = 8;
  int64_t length_beam = 2;
  int64_t length_beam_keep = 0;   // candidates kept after the first pass; 0 or length_beam: no pruning
  int64_t length_offset = 1;      // added to every length candidate, clamped to [1, max_target_len]
  bool update_all = false;        // update == "all": a pass predicts and writes every position (else the masked ones)
  bool threshold_remask = false;  // remask == "threshold" (else "linear")
  double log_threshold = 0.0;     // log(threshold), used with threshold_remask
  bool stutter_remask = true;
  bool repeat_remask = false;     // re-mask repeated word pieces and bigrams (ops::repeat_remask); a ctc model:
                                  // a repeated token's positions lose the blank penalty (ops::ctc_repeat_blanks)
  double repeat_penalty = 0.1;    // ranking: a candidate whose output repeats (ops::repeats) scores this much lower
  double blank_penalty = 0.0;     // ctc models: the blank's logit is lowered by this before the log-softmax
  // cached refinement: pass t recomputes every position iff t == 0 or t % cache_refresh == 0 (0: never again);
  // the other passes only the masked positions and those whose input changed, reusing the others' keys/values
  int64_t cache_refresh = 1;
  bool early_stop = false;        // a pass that changes no token ends the candidate
  bool init_random = false;       // init == "random" (else "mask")
  bool sampling = false;
  uint64_t seed = 0;
  bool return_history = false;
  bool return_candidates = false;  // every scored candidate's output in RefineResult::candidates (AR reranking)

  // The engine's one option check (ValueError naming the option): every range (those that depend on the
  // model too). Every entry point calls it (RefineBatch::add, the bindings' validate); every device runs every
  // option (the rules run on the host). The choices are parsed in one place (binding/engine.cc, options_from_dict).
  // options.py's table holds the same ranges for the CLI, the HTTP schema and the docs; tests/test_options.py
  // ties the two together.
  void validate(const T5Config& cfg) const;
  // The defaults for a model: the table's, or a ctc model's (options.py, by_model: 1 pass, one canvas, no
  // length offset, no stutter rules, repeats without the blank penalty).
  static RefineOptions defaults_for(const T5Config& cfg);
};

struct RefineResult {
  std::vector<int32_t> ids;  // output tokens (repeats collapsed with stutter_remask)
  double score = 0.0;        // mean log-probability of ids
  int64_t passes = 0;        // decoder passes of the winning candidate
  std::vector<std::vector<int32_t>> history;  // tokens after each pass (return_history)
  std::vector<int32_t> length_candidates;
  // return_candidates: each candidate that was not pruned, in candidate order: its output, score, passes
  struct Candidate {
    std::vector<int32_t> ids;
    double score = 0.0;
    int64_t passes = 0;
  };
  std::vector<Candidate> candidates;
};

}  // namespace gmlm
