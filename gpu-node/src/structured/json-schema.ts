import { ConstraintError } from "./spec.js";

/**
 * The JSON-Schema keywords the grammar engine enforces. A keyword outside this list would be
 * silently ignored by the grammar (the output could then violate the schema), so it is refused.
 * Annotations that never constrain a value (title, description, examples, ...) are accepted.
 */
const ENFORCED = new Set([
  "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
  "enum", "const", "anyOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
  "minLength", "maxLength", "pattern", "$ref", "$defs", "definitions",
]);
const ANNOTATIONS = new Set([
  "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly", "writeOnly", "strict",
]);
const TYPES = new Set(["object", "array", "string", "number", "integer", "boolean", "null"]);

export interface SchemaLimits {
  /** Serialized schema size in bytes at most. */
  maxBytes: number;
  /** Nesting depth (objects/arrays/combinators) at most. */
  maxDepth: number;
  /** Compile-cost budget for bounded repetitions (see `repetitionCost`). */
  maxRepetitionCost: number;
}

/**
 * The repetition budget admits one `maxLength: 35` string, or four of `maxLength: 14`, or a pattern
 * with `[a-z]{0,80}`: about 5 s of compiling at most on a loaded 2-core host (cached afterwards).
 */
export const DEFAULT_SCHEMA_LIMITS: SchemaLimits = { maxBytes: 64 * 1024, maxDepth: 32, maxRepetitionCost: 300 };

/**
 * Compiling a bounded repetition of a character class (a string's `maxLength`, a pattern's `{m,n}`)
 * costs about n^1.6 (one grammar state per remaining length, each classifying the whole vocabulary);
 * a string's "any character but a quote" class costs about four times a narrow class like `[a-z]`.
 * A schema over budget would only run into the compile deadline (on a grammar thread), so it is
 * refused up front, at once and naming the bound to lower.
 */
export function repetitionCost(n: number, broadClass: boolean): number {
  return Math.pow(Math.max(0, n), 1.6) * (broadClass ? 1 : 0.25);
}

/** Refuses a regular expression or EBNF grammar whose `{m,n}` repetitions go over the compile budget. */
export function checkRepetitionBudget(source: string, param: string, limits: SchemaLimits = DEFAULT_SCHEMA_LIMITS): void {
  let cost = 0;
  for (const n of patternRepetitions(source)) {
    cost += repetitionCost(n, false);
    if (cost > limits.maxRepetitionCost) {
      throw new ConstraintError(
        `The repetition counts in '${param}' (up to {${n}}) are too large for constrained decoding: its grammar would take too long to compile.`,
        param,
        "grammar_too_complex",
      );
    }
  }
}

/** The largest upper bounds of `{m}` / `{m,n}` / `{m,}` quantifiers in a regular expression. */
function patternRepetitions(pattern: string): number[] {
  return [...pattern.matchAll(/\{(\d+)(?:,(\d*))?\}/g)].map((m) => Number(m[2] ? m[2] : m[1]));
}

/**
 * Checks that every keyword of `schema` is one the grammar enforces and returns the schema the
 * grammar is compiled from. One rewrite keeps the output valid where the engine is not exact:
 * xgrammar's bounded *number* grammar admits values outside the bounds (e.g. `100.5` for
 * `maximum: 100`), while its integer ranges are exact, so a bounded number is generated as an
 * integer inside the bounds (a valid number for the original schema; fractions are not produced).
 *
 * @throws ConstraintError naming the first unsupported keyword and where it is.
 */
export function checkJsonSchema(schema: unknown, param: string, limits: SchemaLimits = DEFAULT_SCHEMA_LIMITS): unknown {
  const text = JSON.stringify(schema);
  if (text === undefined) throw new ConstraintError("The JSON schema must be a JSON value.", param);
  if (Buffer.byteLength(text) > limits.maxBytes) {
    throw new ConstraintError(`The JSON schema is ${Buffer.byteLength(text)} bytes; at most ${limits.maxBytes} are supported.`, param, "schema_too_large");
  }
  const budget = { left: limits.maxRepetitionCost };
  return walk(schema, `${param}`, 0, limits, budget);
}

function walk(node: unknown, path: string, depth: number, limits: SchemaLimits, budget: { left: number }): unknown {
  if (typeof node === "boolean") return node;
  if (!node || typeof node !== "object" || Array.isArray(node)) throw new ConstraintError(`${path} must be a JSON schema object.`, path);
  if (depth > limits.maxDepth) {
    throw new ConstraintError(`The JSON schema nests deeper than ${limits.maxDepth} levels.`, path, "schema_too_large");
  }
  const s = node as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(s)) {
    if (ANNOTATIONS.has(key)) continue;
    if (!ENFORCED.has(key)) throw unsupported(key, path);
    out[key] = value;
  }
  const types = Array.isArray(s.type) ? s.type : s.type === undefined ? [] : [s.type];
  for (const t of types) if (typeof t !== "string" || !TYPES.has(t)) throw new ConstraintError(`${path}.type ${JSON.stringify(t)} is not a JSON-Schema type.`, path);
  if (s.pattern !== undefined) {
    if (typeof s.pattern !== "string") throw new ConstraintError(`${path}.pattern must be a string.`, path);
    try {
      new RegExp(s.pattern, "u");
    } catch (err) {
      throw new ConstraintError(`${path}.pattern is not a valid regular expression: ${(err as Error).message}`, path);
    }
  }
  for (const key of ["minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems"]) {
    if (s[key] !== undefined && (typeof s[key] !== "number" || !Number.isFinite(s[key]))) {
      throw new ConstraintError(`${path}.${key} must be a finite number.`, path);
    }
  }
  const spend = (cost: number, what: string) => {
    budget.left -= cost;
    if (budget.left < 0) {
      throw new ConstraintError(
        `The length bounds in this JSON schema are too large for constrained decoding (${what} at ${path} goes over the budget): its grammar would take too long to compile. Lower maxLength or the pattern's repetition counts.`,
        path,
        "grammar_too_complex",
      );
    }
  };
  if (typeof s.maxLength === "number") spend(repetitionCost(s.maxLength, true), `maxLength ${s.maxLength}`);
  else if (typeof s.minLength === "number" && s.minLength > 0) spend(repetitionCost(s.minLength, true), `minLength ${s.minLength}`);
  if (typeof s.pattern === "string") for (const n of patternRepetitions(s.pattern)) spend(repetitionCost(n, false), `a {${n}} repetition in the pattern`);
  if (s.properties !== undefined) {
    if (!s.properties || typeof s.properties !== "object" || Array.isArray(s.properties)) throw new ConstraintError(`${path}.properties must be an object.`, path);
    out.properties = Object.fromEntries(
      Object.entries(s.properties as Record<string, unknown>).map(([k, v]) => [k, walk(v, `${path}.properties.${k}`, depth + 1, limits, budget)]),
    );
  }
  for (const key of ["items", "additionalProperties"]) {
    if (s[key] !== undefined && typeof s[key] !== "boolean") out[key] = walk(s[key], `${path}.${key}`, depth + 1, limits, budget);
  }
  for (const key of ["anyOf", "prefixItems"]) {
    if (s[key] === undefined) continue;
    if (!Array.isArray(s[key])) throw new ConstraintError(`${path}.${key} must be an array.`, path);
    out[key] = (s[key] as unknown[]).map((v, i) => walk(v, `${path}.${key}[${i}]`, depth + 1, limits, budget));
  }
  for (const key of ["$defs", "definitions"]) {
    if (s[key] === undefined) continue;
    out[key] = Object.fromEntries(Object.entries(s[key] as Record<string, unknown>).map(([k, v]) => [k, walk(v, `${path}.${key}.${k}`, depth + 1, limits, budget)]));
  }
  if (types.length === 1 && (types[0] === "number" || types[0] === "integer") && hasBounds(s)) return boundedInteger(out, path);
  return out;
}

function hasBounds(s: Record<string, unknown>): boolean {
  return s.minimum !== undefined || s.maximum !== undefined || s.exclusiveMinimum !== undefined || s.exclusiveMaximum !== undefined;
}

/** Bounded integer ranges up to this many values become an exact `enum`. */
const MAX_ENUM_RANGE = 1024;

/**
 * A bounded number or integer as a schema whose grammar is exact. xgrammar 0.1.27's range grammars
 * are not: `maximum: 120` admits 121–129, and bounded *numbers* admit values past the bounds (e.g.
 * `100.5` for `maximum: 100`). So a bounded number is generated as an integer inside its bounds (a
 * valid number; fractions are not produced), a small integer range as the enum of its values, and a
 * large one as the widest all-nines ranges inside it (`0..10^k−1`, `−(10^k−1)..0`), which xgrammar
 * does get right: every output is valid, though values near a large range's edges are not produced.
 */
function boundedInteger(s: Record<string, unknown>, path: string): Record<string, unknown> {
  let lo = -Infinity;
  let hi = Infinity;
  if (typeof s.minimum === "number") lo = Math.max(lo, Math.ceil(s.minimum));
  if (typeof s.exclusiveMinimum === "number") lo = Math.max(lo, Math.floor(s.exclusiveMinimum) + 1);
  if (typeof s.maximum === "number") hi = Math.min(hi, Math.floor(s.maximum));
  if (typeof s.exclusiveMaximum === "number") hi = Math.min(hi, Math.ceil(s.exclusiveMaximum) - 1);
  lo = Math.max(lo, -Number.MAX_SAFE_INTEGER);
  hi = Math.min(hi, Number.MAX_SAFE_INTEGER);
  if (lo > hi) {
    throw new ConstraintError(
      `${path}: a number bounded to an interval with no integer in it is not supported (bounded numbers are generated as integers).`,
      path,
      "unsupported_schema",
    );
  }
  const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
  if (hi - lo < MAX_ENUM_RANGE) return { enum: range(lo, hi) };
  if (lo > 0) return { enum: range(lo, lo + MAX_ENUM_RANGE - 1) };
  if (hi < 0) return { enum: range(hi - MAX_ENUM_RANGE + 1, hi) };
  const nines = (limit: number) => {
    let n = 9;
    while (n * 10 + 9 <= limit && n * 10 + 9 <= Number.MAX_SAFE_INTEGER) n = n * 10 + 9;
    return n;
  };
  const parts: Record<string, unknown>[] = [];
  parts.push(hi >= 9 ? { type: "integer", minimum: 0, maximum: nines(hi) } : { enum: range(0, hi) });
  if (lo < 0) parts.push(-lo >= 9 ? { type: "integer", minimum: -nines(-lo), maximum: 0 } : { enum: range(lo, -1) });
  return parts.length === 1 ? parts[0]! : { anyOf: parts };
}

function unsupported(keyword: string, path: string): ConstraintError {
  return new ConstraintError(
    `The JSON-Schema keyword '${keyword}' (at ${path}) is not supported by constrained decoding.`,
    path,
    "unsupported_schema",
  );
}
