// The small per-candidate decisions of the refinement loop (docs/decoding.md, steps 1, 3 and 4),
// each a plain function over one candidate's arrays. Orders are total: confidence ascending, then
// position ascending; NaN sorts above everything (as torch.sort does), so no input can break the
// sort.
#pragma once

#include <cstdint>
#include <vector>

namespace gmlm::ops {

// mask[i] = 1 for the n lowest-confidence positions of conf[0..L) (ties: lower index first), 0 else.
void lowest_confidence(const float* conf, int64_t L, int64_t n, uint8_t* mask);

// Threshold re-masking: of the positions masked in this pass (just[i]), those with
// conf < log_threshold (compared in float64) stay masked; if that keeps all of them, the one with
// the highest confidence (ties: the highest index) is unmasked. mask[i] is set to 0 or 1.
void threshold_remask(const float* conf, const uint8_t* just, int64_t L, double log_threshold, uint8_t* mask);

// mask[i] |= (tokens[i] == tokens[i - 1]) for i >= 1.
void stutter_remask(const int32_t* tokens, int64_t L, uint8_t* mask);

// Repeat re-masking (docs/decoding.md, step 3): scanning j = 0..L-1, a word piece (word_piece[token])
// equal to the token at its first earlier position i, or a bigram (tokens[j-1], tokens[j]) equal to the
// bigram ending at its first earlier end i, masks the lower-confidence one of i and j (equal: j).
void repeat_remask(const int32_t* tokens, const float* conf, int64_t L, const uint8_t* word_piece, uint8_t* mask);

// A ctc model's repeat_remask (docs/decoding.md, "CTC models"): the canvas's output tokens (its runs of equal
// non-blank tokens), each with the highest confidence of its positions, scanned as repeat_remask scans a gmlm
// candidate; each position of a flagged token where blank_lp[i] + penalty >= conf[i] (float32; NaN: a position
// this pass did not predict, never) takes the blank, its confidence blank_lp[i]. Returns how many did.
int64_t ctc_repeat_blanks(int32_t* tokens, float* conf, const float* blank_lp, int64_t L, int32_t blank, float penalty,
                          const uint8_t* word_piece);

// Whether tokens[0..L) repeat themselves as repeat_remask sees it: a word piece, or a bigram, that occurs
// twice (repeat_penalty, docs/decoding.md step 4).
bool repeats(const int32_t* tokens, int64_t L, const uint8_t* word_piece);

// The mean of conf in float64, summed exactly as numpy's float64 sum (pairwise, 8 accumulators),
// so that scores equal the reference decoder's bit for bit given equal confidences.
double mean_score(const float* conf, int64_t n);

// Step 4 of docs/decoding.md for one candidate, the one home of the rule (on the host, for every device): its
// output, tokens[0..len) with adjacent repeats collapsed under stutter_remask, into *ids, and its score, the
// mean_score of the kept confidences (returned). A ctc canvas (ctc_blank >= 0, T5Config::ctc_blank): runs of
// equal tokens merged, then the blanks dropped; its score the mean_score of every position's confidence.
double candidate_output(const int32_t* tokens, const float* conf, int64_t len, bool stutter_remask,
                        std::vector<int32_t>* ids, int32_t ctc_blank = -1);
// What candidates are ranked by: the score, less repeat_penalty when the output repeats itself (word_piece may
// be null only when repeat_penalty is 0).
double candidate_rank(double score, const std::vector<int32_t>& ids, double repeat_penalty, const uint8_t* word_piece);

// Length candidates from the length logits (n classes, class c = length c + 1): the k classes of
// highest log_softmax, ties broken by the shorter length. lengths[0..k) gets the lengths.
void length_candidates(const float* logits, int64_t n, int64_t k, int32_t* lengths);

}  // namespace gmlm::ops
