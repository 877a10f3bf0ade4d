#include "step_plan.h"

#include <cmath>
#include <string>
#include <unordered_set>

namespace seventy {

Status errorStatus(int code, std::string message) {
  Status s;
  s.code = code;
  s.message = std::move(message);
  return s;
}

StepPlan buildStepPlan(const StepInput& in, int blockSize) {
  StepPlan p;
  for (const SeqInput& s : in.seqs) p.numRows += s.numTokens;
  p.rowToken.resize(p.numRows);
  p.rowPos.resize(p.numRows);
  p.rowSlot.resize(p.numRows);
  p.rowSeq.resize(p.numRows);
  int r = 0;
  for (size_t si = 0; si < in.seqs.size(); si++) {
    const SeqInput& s = in.seqs[si];
    const int32_t* table = in.blockTables.data() + s.blockOffset;
    if (s.numTokens != 1) p.decodeOnly = false;
    for (int t = 0; t < s.numTokens; t++, r++) {
      const int pos = s.startPos + t;
      p.rowToken[r] = in.tokens[s.tokenOffset + t];
      p.rowPos[r] = pos;
      p.rowSlot[r] = table[pos / blockSize] * blockSize + pos % blockSize;
      p.rowSeq[r] = int32_t(si);
    }
    if (s.startPos + s.numTokens > p.maxContext) p.maxContext = s.startPos + s.numTokens;
    if (s.sample || s.returnLogits) {
      p.outRows.push_back(r - 1);
      p.outSeqs.push_back(int32_t(si));
    }
  }
  return p;
}

// The same checks as gpu-node/src/engine/reference/validate.ts, so a scheduler bug is an error, not
// a silent read of another sequence's cache or a write out of bounds.
Status validateStep(const StepInput& in, const ModelConfig& c, int numKvBlocks, int blockSize) {
  auto bad = [](const std::string& m) { return errorStatus(kInvalidArgument, m); };
  std::unordered_set<int> seqIds;
  std::unordered_set<int64_t> slots;
  for (const SeqInput& s : in.seqs) {
    const std::string where = "seq " + std::to_string(s.seqId);
    if (!seqIds.insert(s.seqId).second) return bad(where + " appears twice in one step");
    if (s.numTokens <= 0) return bad(where + ": tokenIds is empty");
    if (s.startPos < 0) return bad(where + ": startPos must be a non-negative integer");
    if (s.tokenOffset < 0 || size_t(s.tokenOffset) + size_t(s.numTokens) > in.tokens.size()) return bad(where + ": token range out of bounds");
    if (s.blockOffset < 0 || s.numBlocks < 0 || size_t(s.blockOffset) + size_t(s.numBlocks) > in.blockTables.size()) {
      return bad(where + ": block table range out of bounds");
    }
    if (s.penaltyOffset < 0 || s.promptLen < 0 || s.outputLen < 0 ||
        size_t(s.penaltyOffset) + size_t(s.promptLen) + size_t(s.outputLen) > in.penaltyTokens.size()) {
      return bad(where + ": penalty token range out of bounds");
    }
    for (int t = 0; t < s.numTokens; t++) {
      const int id = in.tokens[s.tokenOffset + t];
      if (id < 0 || id >= c.vocabSize) {
        return bad(where + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(c.vocabSize) + ")");
      }
    }
    const int64_t end = int64_t(s.startPos) + s.numTokens;
    const int64_t needed = (end + blockSize - 1) / blockSize;
    if (s.numBlocks < needed) {
      return bad(where + ": block table has " + std::to_string(s.numBlocks) + " blocks, positions [0, " + std::to_string(end) +
                 ") need " + std::to_string(needed) + " of size " + std::to_string(blockSize));
    }
    const int32_t* table = in.blockTables.data() + s.blockOffset;
    for (int b = 0; b < s.numBlocks; b++) {
      if (table[b] < 0 || table[b] >= numKvBlocks) {
        return bad(where + ": block id " + std::to_string(table[b]) + " is outside [0, " + std::to_string(numKvBlocks) + ")");
      }
    }
    for (int64_t p = s.startPos; p < end; p++) {
      const int64_t slot = int64_t(table[p / blockSize]) * blockSize + p % blockSize;
      if (!slots.insert(slot).second) {
        return bad(where + ": position " + std::to_string(p) + " writes KV slot " + std::to_string(slot) +
                   ", which another token of this step also writes");
      }
    }
    if (s.sample) {
      const SamplingSpec& q = s.sampling;
      if (!(q.temperature >= 0) || !std::isfinite(q.temperature)) return bad(where + ": temperature must be a finite number >= 0");
      if (q.topK < -1) return bad(where + ": topK must be >= -1");
      if (!(q.topP > 0 && q.topP <= 1)) return bad(where + ": topP must be in (0, 1]");
      if (!(q.minP >= 0 && q.minP <= 1)) return bad(where + ": minP must be in [0, 1]");
      if (!(q.repetitionPenalty > 0)) return bad(where + ": repetitionPenalty must be > 0");
      if (q.outputIndex < 0) return bad(where + ": outputIndex must be >= 0");
      for (int i = 0; i < s.promptLen + s.outputLen; i++) {
        const int id = in.penaltyTokens[s.penaltyOffset + i];
        if (id < 0 || id >= c.vocabSize) return bad(where + ": penalty token id " + std::to_string(id) + " is outside the vocabulary");
      }
    }
  }
  return Status::Ok();
}

}  // namespace seventy
