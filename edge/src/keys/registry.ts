import { DurableObject } from "cloudflare:workers";
import type { Env } from "../env";
import { limiterFor } from "../limits/key-limiter";
import { applyPatch, type KeyPatch, type KeyRecord } from "./record";

export type RegistryResult = { ok: true; record: KeyRecord } | { ok: false; status: 404 | 409; message: string };

const KEY_PREFIX = "key:";
const HASH_PREFIX = "hash:";

/**
 * The list of keys: one object for the whole edge, used by the admin API only (requests are
 * admitted by each key's own KeyLimiter, which gets a copy of the record before an admin call
 * returns). Mutations run one at a time so the registry and the limiters never disagree.
 */
export class KeyRegistry extends DurableObject<Env> {
  private tail: Promise<unknown> = Promise.resolve();

  async create(record: KeyRecord): Promise<RegistryResult> {
    return this.serial(async () => {
      const kv = this.ctx.storage.kv;
      if (kv.get(HASH_PREFIX + record.hash) !== undefined) {
        return { ok: false, status: 409, message: "A key with this value already exists." };
      }
      // The limiter learns the key first, so a key listed by the registry always works.
      await limiterFor(this.env, record.hash).configure(record);
      kv.put(KEY_PREFIX + record.id, record);
      kv.put(HASH_PREFIX + record.hash, record.id);
      return { ok: true, record };
    });
  }

  /** Live keys; with `deletedSince` (Unix seconds) also keys deleted since then (their usage is history). */
  list(deletedSince?: number): KeyRecord[] {
    const out: KeyRecord[] = [];
    for (const [, r] of this.ctx.storage.kv.list<KeyRecord>({ prefix: KEY_PREFIX })) {
      if (!r.deleted || (deletedSince !== undefined && r.deleted >= deletedSince)) out.push(r);
    }
    return out.sort((a, b) => a.created - b.created || (a.id < b.id ? -1 : 1));
  }

  /** A key by id; deleted keys only with `includeDeleted` (usage history outlives the key). */
  get(id: string, includeDeleted = false): KeyRecord | null {
    const r = this.ctx.storage.kv.get<KeyRecord>(KEY_PREFIX + id);
    return r && (includeDeleted || !r.deleted) ? r : null;
  }

  async update(id: string, patch: KeyPatch): Promise<RegistryResult> {
    return this.serial(async () => {
      const current = this.get(id);
      if (!current) return { ok: false, status: 404, message: `No key with id '${id}'.` };
      const next = applyPatch(current, patch);
      await limiterFor(this.env, next.hash).configure(next);
      this.ctx.storage.kv.put(KEY_PREFIX + id, next);
      return { ok: true, record: next };
    });
  }

  /** Revokes the key at its limiter first: once this returns, the key is refused everywhere. */
  async remove(id: string): Promise<RegistryResult> {
    return this.serial(async () => {
      const current = this.get(id);
      if (!current) return { ok: false, status: 404, message: `No key with id '${id}'.` };
      await limiterFor(this.env, current.hash).revoke();
      const gone = { ...current, deleted: Math.floor(Date.now() / 1000) };
      this.ctx.storage.kv.put(KEY_PREFIX + id, gone);
      return { ok: true, record: gone };
    });
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.tail.then(fn, fn);
    this.tail = run.catch(() => undefined);
    return run;
  }
}

export function registry(env: Env): DurableObjectStub<KeyRegistry> {
  return env.KEY_REGISTRY.get(env.KEY_REGISTRY.idFromName("registry"));
}
