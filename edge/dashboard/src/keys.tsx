import type { ApiKey, ApiKeyWithState, CreatedApiKey, KeyBudget, KeyLimits } from "@seventy/sdk";
import { useState } from "hono/jsx/dom";
import { adminClient, errorText } from "./admin";
import { CopyButton } from "./copy-button";
import { compact, dateTime, int } from "./format";
import { usePoll } from "./poll";

/** Ratelimit state moves every second; a few seconds is fresh enough to read. */
const POLL_MS = 3000;
/** Live state is one call per key: the table shows it for this many keys at most. */
const MAX_STATES = 100;

interface Fields {
  name: string;
  /** Limits left empty are not sent: a new key then gets the edge's defaults. */
  limits: Partial<KeyLimits>;
  budget: KeyBudget | null;
}

function readFields(form: HTMLFormElement): Fields {
  const v = (name: string) => (form.elements.namedItem(name) as HTMLInputElement | HTMLSelectElement).value.trim();
  const limits: Partial<KeyLimits> = {};
  for (const name of ["rpm", "tpm", "concurrency"] as const) if (v(name)) limits[name] = Number(v(name));
  const budgetTokens = v("budget_tokens");
  return {
    name: v("name"),
    limits,
    budget: budgetTokens ? { tokens: Number(budgetTokens), period: v("budget_period") as KeyBudget["period"] } : null,
  };
}

/** Name, limits and budget inputs, for creating and for editing a key. */
function KeyFields({ idPrefix, record: key }: { idPrefix: string; record?: ApiKey }) {
  const id = (s: string) => `${idPrefix}-${s}`;
  return (
    <div class="fields">
      <label for={id("name")}>Name</label>
      <input id={id("name")} name="name" required maxLength={128} value={key?.name ?? ""} />
      <label for={id("rpm")}>Requests / min</label>
      <input id={id("rpm")} name="rpm" type="number" min={1} step={1} required={key !== undefined} placeholder="edge default" value={key ? String(key.limits.rpm) : ""} />
      <label for={id("tpm")}>Tokens / min</label>
      <input id={id("tpm")} name="tpm" type="number" min={1} step={1} required={key !== undefined} placeholder="edge default" value={key ? String(key.limits.tpm) : ""} />
      <label for={id("concurrency")}>Concurrent requests</label>
      <input id={id("concurrency")} name="concurrency" type="number" min={1} step={1} required={key !== undefined} placeholder="edge default" value={key ? String(key.limits.concurrency) : ""} />
      <label for={id("budget_tokens")}>Token budget</label>
      <span class="inline">
        <input id={id("budget_tokens")} name="budget_tokens" type="number" min={1} step={1} placeholder="none" value={key?.budget ? String(key.budget.tokens) : ""} />
        <select name="budget_period" aria-label="Budget period">
          <option value="day" selected={key?.budget?.period !== "month"}>per day</option>
          <option value="month" selected={key?.budget?.period === "month"}>per month</option>
        </select>
      </span>
    </div>
  );
}

function NewKey({ created, onDone }: { created: CreatedApiKey; onDone: () => void }) {
  return (
    <div class="card new-key" role="status">
      <p>
        <strong>{created.name}</strong>: copy the key now, it is not shown again.
      </p>
      <div class="inline">
        <input id="new-key-value" readOnly value={created.key} aria-label="The new API key" onFocus={(e: Event) => (e.target as HTMLInputElement).select()} />
        <CopyButton text={created.key} />
        <button type="button" class="secondary" onClick={onDone}>
          Done
        </button>
      </div>
    </div>
  );
}

function RateState({ k }: { k: ApiKeyWithState | undefined }) {
  if (!k) return <span class="muted">…</span>;
  const s = k.state;
  return (
    <span class="small">
      {s.in_flight} in flight · {int(s.remaining_requests)}/{int(k.limits.rpm)} req · {compact(s.remaining_tokens)}/{compact(k.limits.tpm)} tok left
    </span>
  );
}

/** API keys: list with live ratelimit state, create (shown once), edit limits and budget, revoke. */
export function Keys({ token }: { token: string }) {
  const admin = adminClient(token);
  const keys = usePoll(
    async () => {
      const list = (await admin.keys.list()).data;
      const states = await Promise.all(list.slice(0, MAX_STATES).map((k) => admin.keys.retrieve(k.id).catch(() => undefined)));
      return { list, states: new Map(states.filter((s) => s !== undefined).map((s) => [s.id, s])) };
    },
    POLL_MS,
    [token],
  );
  const [created, setCreated] = useState<CreatedApiKey | null>(null);
  const [editing, setEditing] = useState<string | null>(null);
  const [confirming, setConfirming] = useState<string | null>(null);
  const [error, setError] = useState("");

  const act = async (fn: () => Promise<void>) => {
    setError("");
    try {
      await fn();
      await keys.reload();
    } catch (err) {
      setError(errorText(err));
    }
  };

  const create = (e: Event) => {
    e.preventDefault();
    const form = e.target as HTMLFormElement;
    const f = readFields(form);
    void act(async () => {
      setCreated(await admin.keys.create({ name: f.name, limits: f.limits, budget: f.budget }));
      form.reset();
    });
  };

  const save = (id: string) => (e: Event) => {
    e.preventDefault();
    const f = readFields(e.target as HTMLFormElement);
    void act(async () => {
      await admin.keys.update(id, { name: f.name, limits: f.limits, budget: f.budget });
      setEditing(null);
    });
  };

  const revoke = (id: string) =>
    act(async () => {
      await admin.keys.revoke(id);
      setConfirming(null);
    });

  const list = keys.data?.list ?? [];
  const now = Date.now() / 1000;
  return (
    <section aria-labelledby="keys-title">
      <div class="section-head">
        <h2 id="keys-title">Keys</h2>
        <span class="muted small">{keys.at ? `${list.length} key${list.length === 1 ? "" : "s"}` : "loading…"}</span>
      </div>
      {(error || keys.error) && (
        <p class="error" role="alert">
          {error || keys.error}
        </p>
      )}
      {created && <NewKey created={created} onDone={() => setCreated(null)} />}
      <details class="card">
        <summary>Create a key</summary>
        <form onSubmit={create} id="create-key">
          <KeyFields idPrefix="new" />
          <button type="submit">Create key</button>
        </form>
      </details>
      {list.length > 0 && (
        <table class="cards" id="keys">
          <thead>
            <tr>
              <th scope="col">Key</th>
              <th scope="col">Limits</th>
              <th scope="col">Budget</th>
              <th scope="col">Ratelimit now</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((k) => (
              <>
                <tr data-key={k.id} data-name={k.name}>
                  <td data-label="Key">
                    <strong>{k.name}</strong>
                    <div class="muted small">
                      <code>{k.prefix}</code> · {dateTime(k.created)}
                      {k.disabled && " · disabled"}
                      {k.expires_at !== null && (k.expires_at <= now ? " · expired" : ` · expires ${dateTime(k.expires_at)}`)}
                    </div>
                  </td>
                  <td data-label="Limits" class="small">
                    {int(k.limits.rpm)} rpm · {compact(k.limits.tpm)} tpm · {k.limits.concurrency} at once
                  </td>
                  <td data-label="Budget" class="small">
                    {k.budget ? `${compact(k.budget.tokens)} / ${k.budget.period}` : <span class="muted">none</span>}
                  </td>
                  <td data-label="Ratelimit now">
                    <RateState k={keys.data?.states.get(k.id)} />
                  </td>
                  <td data-label="" class="actions">
                    {confirming === k.id ? (
                      <span class="inline">
                        <button type="button" class="danger" onClick={() => revoke(k.id)} aria-label={`Confirm revoking ${k.name}`}>
                          Revoke for good
                        </button>
                        <button type="button" class="secondary" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </span>
                    ) : (
                      <span class="inline">
                        <button type="button" class="secondary" onClick={() => setEditing(editing === k.id ? null : k.id)} aria-expanded={editing === k.id} aria-label={`Edit ${k.name}`}>
                          Edit
                        </button>
                        <button type="button" class="secondary" onClick={() => setConfirming(k.id)} aria-label={`Revoke ${k.name}`}>
                          Revoke
                        </button>
                      </span>
                    )}
                  </td>
                </tr>
                {editing === k.id && (
                  <tr class="edit-row">
                    <td colSpan={5}>
                      <form onSubmit={save(k.id)} aria-label={`Edit ${k.name}`}>
                        <KeyFields idPrefix={`edit-${k.id}`} record={k} />
                        <span class="inline">
                          <button type="submit">Save</button>
                          <button type="button" class="secondary" onClick={() => setEditing(null)}>
                            Cancel
                          </button>
                        </span>
                      </form>
                    </td>
                  </tr>
                )}
              </>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
