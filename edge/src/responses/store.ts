import { DurableObject } from "cloudflare:workers";
import type { ResponseItem, ResponseObject } from "@seventy/sdk/protocol";
import type { Env } from "../env";

/** How long stored responses live and how much one key may keep (see `storeLimits`). */
export interface StoreLimits {
  retentionMs: number;
  maxBytes: number;
}

export interface StoredResponse {
  response: ResponseObject;
  /** The items this request added (not the conversation before it). */
  input: ResponseItem[];
}

/** What `save` is given: the response, its input items, and the response it continued (from the request). */
export interface NewResponse extends StoredResponse {
  previousId: string | null;
}

const RESPONSE_ID = /^[\w-]{1,128}$/;

export type ConversationResult =
  | { ok: true; items: ResponseItem[]; bytes: number }
  | { ok: false; missing: string; reason: "not_found" | "too_long" };

/** SQLite keeps a row to 2 MB; a response bigger than this is not stored. */
const MAX_ROW_BYTES = 1_900_000;
/** Longest chain of previous_response_id links followed. */
const MAX_CHAIN = 10_000;

/**
 * The stored responses of one API key (the object is named by the key's SHA-256, so one key can
 * never reach another's responses). Each row is one response and the input items it added; a
 * conversation is the chain of rows linked by `previous_id`. Rows older than the retention period
 * are gone for readers at once and deleted from disk by an alarm set for the oldest row's expiry
 * (and at every write); when the key's rows outgrow `maxBytes`, the oldest go first.
 */
export class ResponseStore extends DurableObject<Env> {
  constructor(ctx: DurableObjectState, env: Env) {
    super(ctx, env);
    ctx.storage.sql.exec(`CREATE TABLE IF NOT EXISTS responses (
      id TEXT PRIMARY KEY,
      previous_id TEXT,
      created_ms INTEGER NOT NULL,
      bytes INTEGER NOT NULL,
      input TEXT NOT NULL,
      response TEXT NOT NULL
    )`);
    ctx.storage.sql.exec("CREATE INDEX IF NOT EXISTS responses_by_age ON responses (created_ms)");
  }

  /**
   * Stores a response; false when it is larger than one key may keep, or when what the node sent
   * is not a response this store can chain (a node is untrusted input: an odd id, no output list,
   * or an id already taken are refused, never overwritten).
   */
  async save(record: NewResponse, limits: StoreLimits): Promise<boolean> {
    const { id, output } = record.response ?? {};
    if (typeof id !== "string" || !RESPONSE_ID.test(id) || !Array.isArray(output)) return false;
    const input = JSON.stringify(record.input);
    const response = JSON.stringify(record.response);
    const bytes = input.length + response.length;
    if (bytes > MAX_ROW_BYTES || bytes > limits.maxBytes) return false;
    const sql = this.ctx.storage.sql;
    const now = Date.now();
    sql.exec("DELETE FROM responses WHERE created_ms < ?", now - limits.retentionMs);
    const inserted = sql.exec(
      "INSERT INTO responses (id, previous_id, created_ms, bytes, input, response) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
      id,
      record.previousId,
      now,
      bytes,
      input,
      response,
    ).rowsWritten;
    if (inserted === 0) return false;
    let total = sql.exec<{ total: number }>("SELECT COALESCE(SUM(bytes), 0) AS total FROM responses").one().total;
    while (total > limits.maxBytes) {
      const oldest = sql.exec<{ id: string; bytes: number }>("SELECT id, bytes FROM responses ORDER BY created_ms, id LIMIT 1").one();
      sql.exec("DELETE FROM responses WHERE id = ?", oldest.id);
      total -= oldest.bytes;
    }
    await this.scheduleExpiry(limits.retentionMs);
    return true;
  }

  /** Deletes what has expired, then waits for the next row to expire. */
  override async alarm(): Promise<void> {
    const retentionMs = (await this.ctx.storage.get<number>("retention_ms")) ?? storeLimits(this.env).retentionMs;
    this.ctx.storage.sql.exec("DELETE FROM responses WHERE created_ms < ?", Date.now() - retentionMs);
    await this.scheduleExpiry(retentionMs);
  }

  /** Arms the alarm for the oldest row's expiry (none when the store is empty). */
  private async scheduleExpiry(retentionMs: number): Promise<void> {
    const oldest = this.ctx.storage.sql.exec<{ at: number | null }>("SELECT MIN(created_ms) AS at FROM responses").one().at;
    if (oldest === null) return this.ctx.storage.deleteAlarm();
    await this.ctx.storage.put("retention_ms", retentionMs);
    const at = oldest + retentionMs;
    const current = await this.ctx.storage.getAlarm();
    if (current === null || current > at) await this.ctx.storage.setAlarm(at);
  }

  get(id: string, limits: StoreLimits): StoredResponse | null {
    const row = this.row(id, limits);
    return row && { response: JSON.parse(row.response) as ResponseObject, input: JSON.parse(row.input) as ResponseItem[] };
  }

  /**
   * Everything the model saw and said up to and including response `id`, oldest first: each
   * response's input items followed by its output. Fails naming the first link that is gone, or
   * when the conversation grows past `maxBytes` of JSON.
   */
  conversation(id: string, limits: StoreLimits, maxBytes: number): ConversationResult {
    const rows: Array<{ input: string; response: string }> = [];
    let bytes = 0;
    for (let next: string | null = id; next !== null; ) {
      const row = this.row(next, limits);
      if (!row) return { ok: false, missing: next, reason: "not_found" };
      bytes += row.bytes;
      if (bytes > maxBytes || rows.length >= MAX_CHAIN) return { ok: false, missing: id, reason: "too_long" };
      rows.push(row);
      next = row.previous_id;
    }
    const items: ResponseItem[] = [];
    for (let i = rows.length - 1; i >= 0; i--) {
      items.push(...(JSON.parse(rows[i]!.input) as ResponseItem[]));
      items.push(...(JSON.parse(rows[i]!.response) as ResponseObject).output);
    }
    return { ok: true, items, bytes };
  }

  remove(id: string): boolean {
    return this.ctx.storage.sql.exec("DELETE FROM responses WHERE id = ?", id).rowsWritten > 0;
  }

  private row(id: string, limits: StoreLimits) {
    const rows = this.ctx.storage.sql
      .exec<{ previous_id: string | null; bytes: number; input: string; response: string }>(
        "SELECT previous_id, bytes, input, response FROM responses WHERE id = ? AND created_ms >= ?",
        id,
        Date.now() - limits.retentionMs,
      )
      .toArray();
    return rows[0] ?? null;
  }
}

// Ids are derived once per key hash per isolate.
const ids = new Map<string, DurableObjectId>();

/** The response store of one key, named by the key's SHA-256. */
export function responseStoreFor(env: Env, keyHash: string): DurableObjectStub<ResponseStore> {
  let id = ids.get(keyHash);
  if (!id) {
    if (ids.size >= 10_000) ids.clear();
    id = env.RESPONSE_STORE.idFromName(keyHash);
    ids.set(keyHash, id);
  }
  return env.RESPONSE_STORE.get(id);
}

function int(value: string | undefined, fallback: number): number {
  const n = Number(value);
  return value !== undefined && value.trim() !== "" && Number.isFinite(n) && n > 0 ? Math.floor(n) : fallback;
}

/** RESPONSES_RETENTION_MS (default 30 days, as OpenAI) and RESPONSES_MAX_BYTES per key (default 64 MiB). */
export function storeLimits(env: Env): StoreLimits {
  return {
    retentionMs: int(env.RESPONSES_RETENTION_MS, 30 * 24 * 3600 * 1000),
    maxBytes: int(env.RESPONSES_MAX_BYTES, 64 << 20),
  };
}
