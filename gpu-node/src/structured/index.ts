export { ConstrainedEngine } from "./constrained-engine.js";
export { GrammarCompiler, type GrammarCompilerOptions, type GrammarVocab } from "./grammar-compiler.js";
export { GrammarConstraint } from "./grammar-constraint.js";
export { checkJsonSchema } from "./json-schema.js";
export { constraintSpecFor, constraintSpecFromFormat, type ConstraintFields, type RequestConstraint } from "./request-spec.js";
export { ConstraintError, type ConstraintSpec } from "./spec.js";
export { StructuredOutputs, grammarVocabFromTokenizerJson } from "./structured-outputs.js";
