// A step flattened into rows: row r is one token of one sequence. Both backends execute this plan,
// so batching, slot arithmetic and the choice of output rows live in one place.
#pragma once

#include <cstdint>
#include <vector>

#include "seventy/engine.h"

namespace seventy {

struct StepPlan {
  int numRows = 0;
  int maxContext = 0;                 // largest startPos + numTokens
  bool decodeOnly = true;             // every sequence computes exactly one token
  std::vector<int32_t> rowToken;      // token id
  std::vector<int32_t> rowPos;        // position
  std::vector<int32_t> rowSlot;       // KV cache slot: blockTable[pos / blockSize] · blockSize + pos % blockSize
  std::vector<int32_t> rowSeq;        // index into StepInput::seqs
  std::vector<int32_t> outRows;       // rows whose logits are computed: the last row of sampling/returnLogits sequences
  std::vector<int32_t> outSeqs;       // the sequence index of each out row
};

StepPlan buildStepPlan(const StepInput& in, int blockSize);

}  // namespace seventy
