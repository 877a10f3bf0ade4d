import type { LlamaConfig } from "../../model/types.js";

/** One decoder layer's tensors, HF shapes ([out, in] row-major for projections). */
export interface LlamaLayerWeights {
  inputNorm: Float32Array; // [hidden]
  qProj: Float32Array; // [numHeads · headDim, hidden]
  kProj: Float32Array; // [numKvHeads · headDim, hidden]
  vProj: Float32Array; // [numKvHeads · headDim, hidden]
  oProj: Float32Array; // [hidden, numHeads · headDim]
  postNorm: Float32Array; // [hidden]
  gateProj: Float32Array; // [intermediate, hidden]
  upProj: Float32Array; // [intermediate, hidden]
  downProj: Float32Array; // [hidden, intermediate]
}

export interface LlamaWeights {
  embedTokens: Float32Array; // [vocab, hidden]
  layers: LlamaLayerWeights[];
  norm: Float32Array; // [hidden]
  /** lm_head.weight [vocab, hidden], or embed_tokens when the config ties them. */
  lmHead: Float32Array;
}

/** Checks the config's shape fields are usable by a Llama forward pass; throws otherwise. */
export function checkLlamaConfig(c: LlamaConfig): void {
  const positive: (keyof LlamaConfig)[] = [
    "hiddenSize",
    "intermediateSize",
    "numHiddenLayers",
    "numAttentionHeads",
    "numKeyValueHeads",
    "headDim",
    "vocabSize",
  ];
  for (const k of positive) {
    const v = c[k];
    if (typeof v !== "number" || !Number.isInteger(v) || v <= 0) {
      throw new Error(`LlamaConfig.${k} must be a positive integer, got ${String(v)}`);
    }
  }
  if (c.numAttentionHeads % c.numKeyValueHeads !== 0) {
    throw new Error(
      `numAttentionHeads (${c.numAttentionHeads}) must be a multiple of numKeyValueHeads (${c.numKeyValueHeads})`,
    );
  }
  if (c.headDim % 2 !== 0) throw new Error(`headDim must be even for RoPE, got ${c.headDim}`);
}

/**
 * Picks the tensors of a LlamaForCausalLM out of a map keyed by HF names and checks each one's size.
 * Throws one Error naming every missing or mis-sized tensor.
 */
export function resolveLlamaWeights(c: LlamaConfig, weights: ReadonlyMap<string, Float32Array>): LlamaWeights {
  checkLlamaConfig(c);
  const problems: string[] = [];
  const take = (name: string, shape: number[]): Float32Array => {
    const t = weights.get(name);
    const expected = shape.reduce((a, b) => a * b, 1);
    if (!t) {
      problems.push(`missing ${name} [${shape.join(", ")}]`);
      return new Float32Array(0);
    }
    if (t.length !== expected) {
      problems.push(`${name} has ${t.length} values, expected [${shape.join(", ")}] = ${expected}`);
    }
    return t;
  };

  const h = c.hiddenSize;
  const qDim = c.numAttentionHeads * c.headDim;
  const kvDim = c.numKeyValueHeads * c.headDim;
  const embedTokens = take("model.embed_tokens.weight", [c.vocabSize, h]);
  const layers: LlamaLayerWeights[] = [];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    const p = `model.layers.${i}.`;
    layers.push({
      inputNorm: take(`${p}input_layernorm.weight`, [h]),
      qProj: take(`${p}self_attn.q_proj.weight`, [qDim, h]),
      kProj: take(`${p}self_attn.k_proj.weight`, [kvDim, h]),
      vProj: take(`${p}self_attn.v_proj.weight`, [kvDim, h]),
      oProj: take(`${p}self_attn.o_proj.weight`, [h, qDim]),
      postNorm: take(`${p}post_attention_layernorm.weight`, [h]),
      gateProj: take(`${p}mlp.gate_proj.weight`, [c.intermediateSize, h]),
      upProj: take(`${p}mlp.up_proj.weight`, [c.intermediateSize, h]),
      downProj: take(`${p}mlp.down_proj.weight`, [h, c.intermediateSize]),
    });
  }
  const norm = take("model.norm.weight", [h]);
  // Tied checkpoints usually omit lm_head.weight; when one is present anyway, HF ties it (uses the embedding).
  const lmHead = c.tieWordEmbeddings ? embedTokens : take("lm_head.weight", [c.vocabSize, h]);
  if (problems.length > 0) throw new Error(`Llama weights do not match the config:\n  ${problems.join("\n  ")}`);
  return { embedTokens, layers, norm, lmHead };
}
