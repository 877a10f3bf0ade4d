import { ApiError, invalidValue } from "../errors";
import type { ApiKey, KeyBudget, KeyCreateParams, KeyLimits, KeyUpdateParams } from "@seventy/sdk/protocol";

export type { KeyBudget, KeyLimits };
export type BudgetPeriod = KeyBudget["period"];

/** What the edge stores about a key. `hash` is the SHA-256 of the key; the key itself is never stored. */
export interface KeyRecord {
  id: string;
  name: string;
  prefix: string;
  hash: string;
  /** Unix seconds. */
  created: number;
  disabled: boolean;
  /** null: every model. */
  models: string[] | null;
  limits: KeyLimits;
  budget: KeyBudget | null;
  /** Unix seconds after which the key is refused; null or absent: never. */
  expires_at?: number | null;
  /**
   * Keys with the same cache_salt share gpu-node prefix caches (one tenant's keys); null or absent:
   * the key's cache is its own, so another key can neither reuse nor detect its prompts.
   */
  cache_salt?: string | null;
  /** Unix seconds; set when the key was deleted (revoked for good). */
  deleted?: number;
}

/** The admin API's view of a key (the protocol's `ApiKey`). */
export type KeyView = ApiKey;

export function toView(r: KeyRecord): KeyView {
  return {
    id: r.id,
    object: "api_key",
    name: r.name,
    prefix: r.prefix,
    created: r.created,
    disabled: r.disabled,
    models: r.models,
    limits: r.limits,
    budget: r.budget,
    expires_at: r.expires_at ?? null,
    cache_salt: r.cache_salt ?? null,
  };
}

/** The prefix-cache salt the node gets for this key (signed): its own unless the admin set a shared one. */
export function cacheSaltOf(r: KeyRecord): string {
  return r.cache_salt ? `salt:${r.cache_salt}` : `key:${r.id}`;
}

export type KeyCreateInput = KeyCreateParams;
export type KeyPatch = KeyUpdateParams;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function rejectUnknown(obj: Record<string, unknown>, allowed: readonly string[], prefix = ""): void {
  for (const k of Object.keys(obj)) {
    if (!allowed.includes(k)) throw invalidValue(prefix + k, "unknown field");
  }
}

function positiveInt(v: unknown, param: string): number {
  if (typeof v !== "number" || !Number.isInteger(v) || v < 1 || v > Number.MAX_SAFE_INTEGER) {
    throw invalidValue(param, "expected a positive integer");
  }
  return v;
}

function parseName(v: unknown): string {
  if (typeof v !== "string" || v.trim().length === 0 || v.length > 128) {
    throw invalidValue("name", "expected a string of 1 to 128 characters");
  }
  return v;
}

function parseModels(v: unknown): string[] | null {
  if (v === null) return null;
  if (!Array.isArray(v) || v.length > 256 || v.some((m) => typeof m !== "string" || m.length === 0 || m.length > 256)) {
    throw invalidValue("models", "expected null or a list of model names");
  }
  return [...new Set(v as string[])];
}

function parseLimits(v: unknown): Partial<KeyLimits> {
  if (!isObject(v)) throw invalidValue("limits", "expected an object with rpm, tpm and/or concurrency");
  rejectUnknown(v, ["rpm", "tpm", "concurrency"], "limits.");
  const out: Partial<KeyLimits> = {};
  for (const k of ["rpm", "tpm", "concurrency"] as const) {
    if (v[k] !== undefined) out[k] = positiveInt(v[k], `limits.${k}`);
  }
  return out;
}

function parseBudget(v: unknown): KeyBudget | null {
  if (v === null) return null;
  if (!isObject(v)) throw invalidValue("budget", "expected null or { tokens, period }");
  rejectUnknown(v, ["tokens", "period"], "budget.");
  const tokens = positiveInt(v.tokens, "budget.tokens");
  if (v.period !== "day" && v.period !== "month") throw invalidValue("budget.period", "expected 'day' or 'month'");
  return { tokens, period: v.period };
}

function parseExpiresAt(v: unknown): number | null {
  if (v === null) return null;
  if (typeof v !== "number" || !Number.isInteger(v) || v * 1000 <= Date.now() || v > 253_402_300_799) {
    throw invalidValue("expires_at", "expected null or a future time in Unix seconds");
  }
  return v;
}

function parseCacheSalt(v: unknown): string | null {
  if (v === null) return null;
  if (typeof v !== "string" || !/^[\w.:-]{1,128}$/.test(v)) throw invalidValue("cache_salt", "expected null or 1-128 letters, digits, '_', '.', ':' or '-'");
  return v;
}

function parseDisabled(v: unknown): boolean {
  if (typeof v !== "boolean") throw invalidValue("disabled", "expected a boolean");
  return v;
}

export function parseKeyCreate(body: unknown): KeyCreateInput {
  if (!isObject(body)) throw new ApiError(400, "The request body must be a JSON object.", { code: "invalid_json" });
  rejectUnknown(body, ["name", "key", "models", "limits", "budget", "disabled", "expires_at", "cache_salt"]);
  const out: KeyCreateInput = { name: parseName(body.name) };
  if (body.key !== undefined) {
    if (typeof body.key !== "string" || !/^sk-[A-Za-z0-9._-]{8,200}$/.test(body.key)) {
      throw invalidValue("key", "expected 'sk-' followed by 8 to 200 letters, digits, '.', '_' or '-'");
    }
    out.key = body.key;
  }
  if (body.models !== undefined) out.models = parseModels(body.models);
  if (body.limits !== undefined) out.limits = parseLimits(body.limits);
  if (body.budget !== undefined) out.budget = parseBudget(body.budget);
  if (body.disabled !== undefined) out.disabled = parseDisabled(body.disabled);
  if (body.expires_at !== undefined) out.expires_at = parseExpiresAt(body.expires_at);
  if (body.cache_salt !== undefined) out.cache_salt = parseCacheSalt(body.cache_salt);
  return out;
}

export function parseKeyPatch(body: unknown): KeyPatch {
  if (!isObject(body)) throw new ApiError(400, "The request body must be a JSON object.", { code: "invalid_json" });
  rejectUnknown(body, ["name", "models", "limits", "budget", "disabled", "expires_at", "cache_salt"]);
  const out: KeyPatch = {};
  if (body.name !== undefined) out.name = parseName(body.name);
  if (body.models !== undefined) out.models = parseModels(body.models);
  if (body.limits !== undefined) out.limits = parseLimits(body.limits);
  if (body.budget !== undefined) out.budget = parseBudget(body.budget);
  if (body.disabled !== undefined) out.disabled = parseDisabled(body.disabled);
  if (body.expires_at !== undefined) out.expires_at = parseExpiresAt(body.expires_at);
  if (body.cache_salt !== undefined) out.cache_salt = parseCacheSalt(body.cache_salt);
  return out;
}

export function applyPatch(r: KeyRecord, p: KeyPatch): KeyRecord {
  return {
    ...r,
    name: p.name ?? r.name,
    models: p.models !== undefined ? p.models : r.models,
    limits: { ...r.limits, ...p.limits },
    budget: p.budget !== undefined ? p.budget : r.budget,
    disabled: p.disabled ?? r.disabled,
    expires_at: p.expires_at !== undefined ? p.expires_at : (r.expires_at ?? null),
    cache_salt: p.cache_salt !== undefined ? p.cache_salt : (r.cache_salt ?? null),
  };
}
