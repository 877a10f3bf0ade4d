// The sampling procedure of gpu-node/src/engine/sampling.ts (same order of operations, same doubles),
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

// The smallest set of top tokens (by logit) holding at least `target` of the weight, sorted: tokens within
// `gap` (in temperature-scaled logits) of the max, widening the gap until they hold enough. The
// sorted order of this head is the sorted order of the whole vocabulary's prefix.
std::vector<int> topHead(const float* logits, int vocab, double maxL, double invT, double target) {
  double lowest = INFINITY;
  for (int i = 0; i < vocab; i++)
    if (logits[i] < lowest && logits[i] > -INFINITY) lowest = logits[i];
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

// The procedure documented at the top of sampling.ts: weights w = exp((l − max)/T); top-k keeps the
// first k in sorted order; top-p the shortest sorted prefix reaching top_p of the candidates' mass;
// min-p drops w < min_p; the draw walks the kept tokens in ascending id order.
int sampleWithTemperature(const float* logits, int vocab, const SamplingSpec& p, double u) {
  const double invT = 1 / p.temperature;
  const int topK = p.topK > 0 && p.topK < vocab ? p.topK : 0;
  double maxL = -INFINITY;
  for (int i = 0; i < vocab; i++)
    if (logits[i] > maxL) maxL = logits[i];
  if (!(maxL > -INFINITY)) return argmax(logits, vocab);  // everything masked
  auto weight = [&](int i) { return std::exp((double(logits[i]) - maxL) * invT); };

  std::vector<double> w(vocab, 0.0);  // kept weights, 0 = dropped
  if (topK == 0 && p.topP >= 1) {
    for (int i = 0; i < vocab; i++) {
      const double wi = weight(i);
      w[i] = wi >= p.minP ? wi : 0;
    }
  } else {
    std::vector<int> sorted;
    size_t n;
    if (topK > 0) {
      sorted = topKIndices(logits, vocab, topK);
      n = sorted.size();
      if (p.topP < 1) {
        double mass = 0;
        for (int id : sorted) mass += weight(id);
        const double target = p.topP * mass;
        double cum = 0;
        for (size_t j = 0; j < n; j++)
          if ((cum += weight(sorted[j])) >= target) {
            n = j + 1;
            break;
          }
      }
    } else {
      double mass = 0;
      for (int i = 0; i < vocab; i++) mass += weight(i);
      const double target = p.topP * mass;
      sorted = topHead(logits, vocab, maxL, invT, target);
      n = sorted.size();
      double cum = 0;
      bool reached = false;
      for (size_t j = 0; j < n; j++)
        if ((cum += weight(sorted[j])) >= target) {
          n = j + 1;
          reached = true;
          break;
        }
      if (!reached) {  // rounding kept the prefix from reaching the target: every token stays
        sorted.resize(vocab);
        for (int i = 0; i < vocab; i++) sorted[i] = i;
        n = size_t(vocab);
      }
    }
    for (size_t j = 0; j < n; j++) {
      const double wi = weight(sorted[j]);
      if (wi >= p.minP) w[sorted[j]] = wi;
    }
  }
  double total = 0;
  for (int i = 0; i < vocab; i++) total += w[i];
  const double target = u * total;
  double cum = 0;
  for (int i = 0; i < vocab; i++) {
    cum += w[i];
    if (w[i] != 0 && cum > target) return i;
  }
  for (int i = vocab - 1; i >= 0; i--)
    if (w[i] != 0) return i;  // u·total rounded above the final sum
  return argmax(logits, vocab);
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
