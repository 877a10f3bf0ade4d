// A line-for-line port of gpu-node/src/engine/sampling.ts (same order of operations, same doubles),
// so the CPU flavor samples the tokens the TypeScript engine samples from the same logits.
#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "cpu_kernels.h"
#include "seventy/numerics.h"

namespace seventy::cpu {
namespace {

constexpr double kSamplingEps = 1e-5;

// Descending by value, lower id first among equals (sampling.ts sortByValueDesc / topKIndices).
struct ByValueDesc {
  const float* v;
  bool operator()(int a, int b) const { return v[a] > v[b] || (v[a] == v[b] && a < b); }
};

std::vector<int> topKIndices(const float* v, int n, int k) {
  std::vector<int> ids(n);
  for (int i = 0; i < n; i++) ids[i] = i;
  k = std::min(k, n);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), ByValueDesc{v});
  ids.resize(k);
  return ids;
}

int argmax(const float* v, int n) {
  int best = 0;
  float bestVal = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] > bestVal) {
      bestVal = v[i];
      best = i;
    }
  return best;
}

double logSumExp(const float* v, int n) {
  double max = -INFINITY;
  for (int i = 0; i < n; i++)
    if (v[i] > max) max = v[i];
  double sum = 0;
  for (int i = 0; i < n; i++) sum += std::exp(double(v[i]) - max);
  return max + std::log(sum);
}

void applyPenalties(std::vector<float>& out, const SamplingSpec& p, const int32_t* prompt, int promptLen,
                    const int32_t* output, int outputLen) {
  const int vocab = int(out.size());
  auto valid = [vocab](int id) { return id >= 0 && id < vocab; };
  if (p.repetitionPenalty != 1) {
    std::set<int> seen(prompt, prompt + promptLen);
    seen.insert(output, output + outputLen);
    for (int id : seen) {
      if (!valid(id)) continue;
      const double l = out[id];
      out[id] = float(l > 0 ? l / p.repetitionPenalty : l * p.repetitionPenalty);
    }
  }
  if (p.frequencyPenalty != 0 || p.presencePenalty != 0) {
    std::map<int, int> counts;
    for (int i = 0; i < outputLen; i++) counts[output[i]]++;
    for (auto [id, count] : counts) {
      if (!valid(id)) continue;
      out[id] = float(double(out[id]) - (count * p.frequencyPenalty + p.presencePenalty));
    }
  }
}

// The head of the distribution holding at least top_p of the mass, sorted descending, and Σ w.
std::vector<int> topPHead(const float* logits, int vocab, double maxL, double invT, double topP, double& total) {
  total = 0;
  double lowest = INFINITY;
  for (int i = 0; i < vocab; i++) {
    total += std::exp((double(logits[i]) - maxL) * invT);
    if (logits[i] < lowest && logits[i] > -INFINITY) lowest = logits[i];
  }
  const double target = topP * total;
  for (double gap = 8;; gap *= 2) {
    const double minL = maxL - gap / invT;
    std::vector<int> ids;
    double mass = 0;
    for (int i = 0; i < vocab; i++) {
      if (logits[i] >= minL) {
        ids.push_back(i);
        mass += std::exp((double(logits[i]) - maxL) * invT);
      }
    }
    if (mass >= target || minL <= lowest) {
      std::sort(ids.begin(), ids.end(), ByValueDesc{logits});
      return ids;
    }
  }
}

int sampleWithTemperature(const float* logits, int vocab, const SamplingSpec& p, double u) {
  const double invT = 1 / p.temperature;
  const int topK = p.topK > 0 && p.topK < vocab ? p.topK : 0;
  const bool useTopP = p.topP < 1;
  double maxL = -INFINITY;
  for (int i = 0; i < vocab; i++)
    if (logits[i] > maxL) maxL = logits[i];

  if (topK == 0 && !useTopP) {
    // No sorted filter: walk the vocabulary in id order (min-p just zeroes small weights).
    std::vector<double> w(vocab);
    double total = 0;
    for (int i = 0; i < vocab; i++) {
      double wi = std::exp((double(logits[i]) - maxL) * invT);
      if (wi < p.minP) wi = 0;
      w[i] = wi;
      total += wi;
    }
    const double target = u * total;
    double cum = 0;
    int lastKept = 0;
    for (int i = 0; i < vocab; i++) {
      if (w[i] == 0) continue;
      cum += w[i];
      lastKept = i;
      if (cum > target) return i;
    }
    return lastKept;
  }

  std::vector<int> ids;
  double topPMass = 0;
  if (topK > 0) {
    ids = topKIndices(logits, vocab, topK);
    for (int id : ids) topPMass += std::exp((double(logits[id]) - maxL) * invT);
  } else {
    ids = topPHead(logits, vocab, maxL, invT, p.topP, topPMass);
  }
  std::vector<double> w(ids.size());
  for (size_t i = 0; i < ids.size(); i++) w[i] = std::exp((double(logits[ids[i]]) - maxL) * invT);

  size_t n = ids.size();
  if (useTopP) {
    const double target = p.topP * topPMass;
    double cum = 0;
    for (size_t i = 0; i < n; i++) {
      cum += w[i];
      if (cum >= target) {
        n = i + 1;
        break;
      }
    }
  }
  if (p.minP > 0) {
    size_t keep = 1;
    while (keep < n && w[keep] >= p.minP) keep++;
    n = keep;
  }
  double total = 0;
  for (size_t i = 0; i < n; i++) total += w[i];
  const double target = u * total;
  double cum = 0;
  for (size_t i = 0; i < n; i++) {
    cum += w[i];
    if (cum > target) return ids[i];
  }
  return ids[n - 1];
}

}  // namespace

SampleResult sampleToken(const float* logits, int vocab, const SamplingSpec& p, const int32_t* promptIds, int promptLen,
                         const int32_t* outputIds, int outputLen) {
  std::vector<float> penalized;
  const float* work = logits;
  if (p.repetitionPenalty != 1 || p.frequencyPenalty != 0 || p.presencePenalty != 0) {
    penalized.assign(logits, logits + vocab);
    applyPenalties(penalized, p, promptIds, promptLen, outputIds, outputLen);
    work = penalized.data();
  }
  SampleResult out;
  if (p.temperature < kSamplingEps) out.tokenId = argmax(work, vocab);
  else out.tokenId = sampleWithTemperature(work, vocab, p, uniformFor(p.seed, p.outputIndex));

  if (p.logprobs >= 0) {
    const double lse = logSumExp(logits, vocab);
    out.hasLogprob = true;
    out.logprob = double(logits[out.tokenId]) - lse;
    const int n = std::min(p.logprobs, vocab);
    if (n > 0) {
      out.topIds.reserve(n);
      for (int id : topKIndices(logits, vocab, n)) {
        out.topIds.push_back(id);
        out.topLogprobs.push_back(double(logits[id]) - lse);
      }
    }
  }
  return out;
}

}  // namespace seventy::cpu
