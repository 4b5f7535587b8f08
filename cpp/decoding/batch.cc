#include "decoding/batch.h"

#include <algorithm>
#include <cstring>

#include "core/matrix.h"
#include "ops/rows.h"

namespace gmlm {

void copy_row_range(const Tensor& from, int64_t begin, int64_t len, Tensor& to, int64_t at) {
  const int64_t cols = from.dim(1);
  ops::CopyRows()(mat(from).sub(begin, len, 0, cols), nullptr, mat(to).sub(at, len, 0, cols), nullptr, len);
}

int64_t ResumableBatch::join(const std::vector<std::vector<int32_t>>& sources, EncoderOutput* fresh, Workspace& ws,
                             ThreadPool& pool) {
  model_.encode(sources, *fresh, ws, pool);
  merge(fresh);
  return static_cast<int64_t>(enc_.begin.size()) - static_cast<int64_t>(sources.size());
}

void ResumableBatch::compact() {
  if (left_) merge(nullptr);
}

// enc_ := the rows of the live requests' sources (renumbered), then fresh's rows (if any).
void ResumableBatch::merge(const EncoderOutput* fresh) {
  const std::vector<int64_t*> sources = live_sources();
  int64_t rows = 0;
  for (const int64_t* s : sources) rows += enc_.len[*s];
  if (fresh) rows += fresh->rows;
  EncoderOutput out;
  const int64_t D = fresh ? fresh->states.dim(1) : enc_.states.dim(1);
  const int64_t kvw = fresh ? fresh->cross_kv.dim(1) : enc_.cross_kv.dim(1);
  model_.place(out.states, {rows, D});
  model_.place(out.cross_kv, {rows, kvw});
  for (int64_t* s : sources) {
    const int64_t b = enc_.begin[*s], n = enc_.len[*s];
    copy_row_range(enc_.states, b, n, out.states, out.rows);
    copy_row_range(enc_.cross_kv, b, n, out.cross_kv, out.rows);
    *s = static_cast<int64_t>(out.begin.size());
    out.begin.push_back(out.rows);
    out.len.push_back(n);
    out.rows += n;
  }
  if (fresh) {
    copy_row_range(fresh->states, 0, fresh->rows, out.states, out.rows);
    copy_row_range(fresh->cross_kv, 0, fresh->rows, out.cross_kv, out.rows);
    for (size_t b = 0; b < fresh->begin.size(); ++b) {
      out.begin.push_back(out.rows + fresh->begin[b]);
      out.len.push_back(fresh->len[b]);
    }
    out.rows += fresh->rows;
  }
  enc_ = std::move(out);
  left_ = false;
}

std::pair<int32_t*, float*> ResumableBatch::prediction_outputs(std::vector<int32_t>& pred, std::vector<float>& conf,
                                                               int64_t n) const {
  pred.resize(n);
  conf.resize(n);
  if (model_.device() == Device::cpu) return {pred.data(), conf.data()};
  model_.place(pred_dev_, {std::max<int64_t>(n, 1)}, DType::int32);
  model_.place(conf_dev_, {std::max<int64_t>(n, 1)});
  return {pred_dev_.data<int32_t>(), conf_dev_.data<float>()};
}

void ResumableBatch::fetch_predictions(std::vector<int32_t>& pred, std::vector<float>& conf, int64_t n) const {
  if (model_.device() == Device::cpu || n == 0) return;
  pred_dev_.copy_to_host(pred.data(), sizeof(int32_t) * n);
  conf_dev_.copy_to_host(conf.data(), sizeof(float) * n);
}

std::vector<RefineResult> drain(ResumableBatch& batch, const std::vector<int64_t>& ids, Workspace& ws,
                                ThreadPool& pool) {
  std::vector<RefineResult> results(ids.size());
  while (batch.requests() > 0)
    for (auto& [id, res] : batch.step(ws, pool)) results[id - ids.front()] = std::move(res);
  return results;
}

}  // namespace gmlm
