export type {
  GenerationDefaults,
  Llama3RopeScaling,
  LlamaConfig,
  LoadProgress,
  ProgressCallback,
  TensorDType,
  TensorInfo,
} from "./types.js";
export { ChatTemplateError, ModelDirError } from "./errors.js";
export { llamaConfigToJson, parseLlamaConfig, readLlamaConfig } from "./config.js";
export {
  DTYPE_BYTES,
  bf16ToF32,
  f16ToF32,
  f32ToBf16,
  f32ToF16,
  parseSafetensorsHeader,
  readSafetensorsHeader,
  writeSafetensors,
} from "./safetensors.js";
export type { SafetensorsHeader, TensorToWrite } from "./safetensors.js";
export { listTensors, llamaTensorShapes, loadTensorsF32, totalTensorBytes, validateLlamaTensors } from "./weights.js";
export { LlamaTokenizer } from "./tokenizer.js";
export type { ApplyChatTemplateOptions, ChatMessage, LlamaTokenizerSource } from "./tokenizer.js";
export { parseGenerationConfig, readGenerationConfig } from "./generation-config.js";
export { openModelDir } from "./model-dir.js";
export type { ModelDir, OpenModelDirOptions } from "./model-dir.js";
export {
  LLAMA31_TOKEN_RENAMES,
  defaultTinyModelDir,
  ensureTinyModel,
  llama31ChatTemplate,
  llama31TokenizerFiles,
  makeTinyModel,
  tinyLlamaConfig,
} from "./tiny-model.js";
export type { TinyModelOptions } from "./tiny-model.js";
export { createProgressBar, formatBytes, formatDuration } from "./progress.js";
export type { ProgressBar, ProgressBarOptions, ProgressStream } from "./progress.js";
