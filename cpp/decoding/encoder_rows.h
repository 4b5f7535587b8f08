// The encoder side of a resumable batch (RefineBatch, ArBatch): the rows of the live requests'
// sources, packed, plus the newcomers'. Requests that left leave rows nobody uses until the next
// merge drops them.
#pragma once

#include <cstdint>
#include <vector>

#include "models/t5_model.h"

namespace gmlm {

// enc := the rows of the sources *sources[i] (indices into enc, in that order), then fresh's rows
// (if any); each *sources[i] is renumbered to its new index, and fresh's sources follow them.
void merge_encoder_rows(EncoderOutput& enc, const std::vector<int64_t*>& sources, const EncoderOutput* fresh);

}  // namespace gmlm
