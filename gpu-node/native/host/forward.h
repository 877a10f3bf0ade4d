// The decoder loop, written once for both backends. A backend implements the stages; how it fuses
// them (one CUDA kernel for the QKV projection + RoPE + KV write, a GEMV epilogue for SwiGLU) is its
// own business, but the order of operations, and so the numerics' shape, is fixed here.
//
//   resid = embed(tokens)
//   for each layer:  h = rmsnorm(resid += delta)          (delta: the previous layer's MLP output)
//                    q, k, v = h·Wqkvᵀ; rope(q, k); cache[slot] = k, v
//                    a = attention(q, cache)  → delta = a·Woᵀ
//                    h = rmsnorm(resid += delta); delta = down(silu(h·Wgateᵀ) ⊙ h·Wupᵀ)
//   logits = lm_head(rmsnorm(resid + delta))               (only the rows that sample)
#pragma once

namespace seventy {

class ForwardOps {
 public:
  virtual ~ForwardOps() = default;
  virtual void embed() = 0;
  // resid += delta (unless this is the first layer's input norm), h = rmsnorm(resid) · w.
  virtual void addNorm(int layer, bool postAttention) = 0;
  virtual void qkvRopeCache(int layer) = 0;
  virtual void attention(int layer) = 0;
  virtual void oProj(int layer) = 0;
  virtual void gateUpSwiglu(int layer) = 0;
  virtual void downProj(int layer) = 0;
  virtual void finalNormLmHead() = 0;
};

inline void runForward(ForwardOps& ops, int numLayers) {
  ops.embed();
  for (int l = 0; l < numLayers; l++) {
    ops.addNorm(l, false);
    ops.qkvRopeCache(l);
    ops.attention(l);
    ops.oProj(l);
    ops.addNorm(l, true);
    ops.gateUpSwiglu(l);
    ops.downProj(l);
  }
  ops.finalNormLmHead();
}

}  // namespace seventy
