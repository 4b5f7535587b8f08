#include "decoding/encoder_rows.h"

#include <cstring>

namespace gmlm {

namespace {
// Copies rows [begin, begin + len) of a (rows, cols) tensor to row `at` of another.
void copy_rows(const Tensor& from, int64_t begin, int64_t len, Tensor& to, int64_t at) {
  const int64_t cols = from.dim(1);
  std::memcpy(to.data<float>() + at * cols, from.data<float>() + begin * cols, sizeof(float) * len * cols);
}
}  // namespace

void merge_encoder_rows(EncoderOutput& enc, const std::vector<int64_t*>& sources, const EncoderOutput* fresh) {
  int64_t rows = 0;
  for (const int64_t* s : sources) rows += enc.len[*s];
  if (fresh) rows += fresh->rows;
  EncoderOutput out;
  const int64_t D = fresh ? fresh->states.dim(1) : enc.states.dim(1);
  const int64_t kvw = fresh ? fresh->cross_kv.dim(1) : enc.cross_kv.dim(1);
  out.states = Tensor({rows, D});
  out.cross_kv = Tensor({rows, kvw});
  for (int64_t* s : sources) {
    const int64_t b = enc.begin[*s], n = enc.len[*s];
    copy_rows(enc.states, b, n, out.states, out.rows);
    copy_rows(enc.cross_kv, b, n, out.cross_kv, out.rows);
    *s = static_cast<int64_t>(out.begin.size());
    out.begin.push_back(out.rows);
    out.len.push_back(n);
    out.rows += n;
  }
  if (fresh) {
    copy_rows(fresh->states, 0, fresh->rows, out.states, out.rows);
    copy_rows(fresh->cross_kv, 0, fresh->rows, out.cross_kv, out.rows);
    for (size_t b = 0; b < fresh->begin.size(); ++b) {
      out.begin.push_back(out.rows + fresh->begin[b]);
      out.len.push_back(fresh->len[b]);
    }
    out.rows += fresh->rows;
  }
  enc = std::move(out);
}

}  // namespace gmlm
