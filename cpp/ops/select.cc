#include "ops/select.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/profiler.h"
#include "decoding/rules.h"

namespace gmlm::ops {

using rules::conf_less;

void lowest_confidence(const float* conf, int64_t L, int64_t n, uint8_t* mask) {
  std::fill(mask, mask + L, uint8_t(0));
  if (n <= 0) return;
  if (n >= L) {
    std::fill(mask, mask + L, uint8_t(1));
    return;
  }
  std::vector<int32_t> idx(L);
  std::iota(idx.begin(), idx.end(), 0);
  std::nth_element(idx.begin(), idx.begin() + (n - 1), idx.end(),
                   [&](int32_t a, int32_t b) { return conf_less(conf[a], a, conf[b], b); });
  for (int64_t i = 0; i < n; ++i) mask[idx[i]] = 1;
}

void threshold_remask(const float* conf, const uint8_t* just, int64_t L, double log_threshold, uint8_t* mask) {
  int64_t n_just = 0, n_kept = 0;
  for (int64_t i = 0; i < L; ++i) {
    const bool keep = just[i] && static_cast<double>(conf[i]) < log_threshold;
    mask[i] = keep;
    n_just += just[i] != 0;
    n_kept += keep;
  }
  if (n_kept == n_just) {
    // the last position in (conf, index) order among the just-masked ones; others count as -inf
    int64_t last = 0;
    float last_c = just[0] ? conf[0] : -INFINITY;
    for (int64_t i = 1; i < L; ++i) {
      const float c = just[i] ? conf[i] : -INFINITY;
      if (!conf_less(c, i, last_c, last)) {
        last = i;
        last_c = c;
      }
    }
    mask[last] = 0;
  }
}

void stutter_remask(const int32_t* tokens, int64_t L, uint8_t* mask) {
  for (int64_t i = 1; i < L; ++i)
    if (tokens[i] == tokens[i - 1]) mask[i] = 1;
}

void repeat_remask(const int32_t* tokens, const float* conf, int64_t L, const uint8_t* word_piece, uint8_t* mask) {
  auto lower = [&](int64_t i, int64_t j) { mask[conf[j] <= conf[i] ? j : i] = 1; };
  for (int64_t j = 0; j < L; ++j) {
    if (word_piece[tokens[j]])
      for (int64_t i = 0; i < j; ++i)
        if (tokens[i] == tokens[j]) {
          lower(i, j);
          break;
        }
    if (j >= 1)
      for (int64_t i = 1; i < j; ++i)
        if (tokens[i] == tokens[j] && tokens[i - 1] == tokens[j - 1]) {
          lower(i, j);
          break;
        }
  }
}

int64_t ctc_repeat_blanks(int32_t* tokens, float* conf, const float* blank_lp, int64_t L, int32_t blank, float penalty,
                          const uint8_t* word_piece) {
  std::vector<int64_t> start;  // the output tokens: runs of equal non-blank tokens [start[k], start[k + 1])
  std::vector<int32_t> ids;
  std::vector<float> best;
  for (int64_t i = 0; i < L; ++i) {
    if (tokens[i] == blank) continue;
    if (i > 0 && tokens[i] == tokens[i - 1]) {
      best.back() = std::max(best.back(), conf[i]);
      continue;
    }
    start.push_back(i);
    ids.push_back(tokens[i]);
    best.push_back(conf[i]);
  }
  const int64_t n = static_cast<int64_t>(ids.size());
  std::vector<uint8_t> flagged(static_cast<size_t>(n), 0);
  repeat_remask(ids.data(), best.data(), n, word_piece, flagged.data());
  int64_t changed = 0;
  for (int64_t k = 0; k < n; ++k) {
    if (!flagged[k]) continue;
    for (int64_t i = start[k]; i < L && tokens[i] == ids[k]; ++i)
      if (blank_lp[i] + penalty >= conf[i]) {
        tokens[i] = blank;
        conf[i] = blank_lp[i];
        ++changed;
      }
  }
  return changed;
}

bool repeats(const int32_t* tokens, int64_t L, const uint8_t* word_piece) {
  for (int64_t j = 1; j < L; ++j)
    for (int64_t i = 0; i < j; ++i)
      if (tokens[i] == tokens[j] && (word_piece[tokens[j]] || (i >= 1 && tokens[i - 1] == tokens[j - 1])))
        return true;
  return false;
}


double mean_score(const float* conf, int64_t n) {
  if (n == 0) return 0.0;
  std::vector<double> d(conf, conf + n);
  return rules::pairwise_sum(d.data(), n) / static_cast<double>(n);
}

double candidate_output(const int32_t* tokens, const float* conf, int64_t len, bool stutter_remask,
                        std::vector<int32_t>* ids, int32_t ctc_blank) {
  std::vector<float> cf;
  ids->clear();
  if (ctc_blank >= 0) {
    for (int64_t i = 0; i < len; ++i)
      if (tokens[i] != ctc_blank && (i == 0 || tokens[i] != tokens[i - 1])) ids->push_back(tokens[i]);
    return mean_score(conf, len);
  }
  for (int64_t i = 0; i < len; ++i)
    if (!stutter_remask || i == 0 || tokens[i] != tokens[i - 1]) {
      ids->push_back(tokens[i]);
      cf.push_back(conf[i]);
    }
  return mean_score(cf.data(), static_cast<int64_t>(cf.size()));
}

double candidate_rank(double score, const std::vector<int32_t>& ids, double repeat_penalty, const uint8_t* word_piece) {
  if (repeat_penalty != 0.0 && repeats(ids.data(), static_cast<int64_t>(ids.size()), word_piece))
    return score - repeat_penalty;
  return score;
}

void length_candidates(const float* logits, int64_t n, int64_t k, int32_t* lengths) {
  GMLM_CHECK(k >= 1 && k <= n, "length_beam ", k, " for ", n, " length classes");
  // log_softmax as PyTorch computes it: (x - max) - log(sum(exp(x - max)))
  float m = logits[0];
  for (int64_t i = 1; i < n; ++i) m = logits[i] > m ? logits[i] : m;
  float s = 0.f;
  for (int64_t i = 0; i < n; ++i) s += std::exp(logits[i] - m);
  const float lse = std::log(s);
  std::vector<float> lp(n);
  for (int64_t i = 0; i < n; ++i) lp[i] = (logits[i] - m) - lse;
  std::vector<int32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  // descending lp, ties: lower class (= shorter) first; NaN last
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int32_t a, int32_t b) {
    return conf_less(-lp[a], a, -lp[b], b);
  });
  for (int64_t i = 0; i < k; ++i) lengths[i] = idx[i] + 1;
}

}  // namespace gmlm::ops
