import type { GpuNode } from "@seventy/sdk";
import { useState } from "hono/jsx/dom";
import { adminClient, errorText } from "./admin";
import { age, percent } from "./format";
import { usePoll } from "./poll";

/** Heartbeats come every 2 s; the table follows them. */
const POLL_MS = 2000;

/** The API's `gone` is a node whose heartbeats stopped: shown as stale until it is forgotten. */
function stateOf(n: GpuNode): string {
  return n.status === "gone" ? "stale" : n.status;
}

function Meter({ value, label }: { value: number; label: string }) {
  return (
    <span class="meter" role="meter" aria-valuemin={0} aria-valuemax={100} aria-valuenow={Math.round(value * 100)} aria-label={label}>
      <span class="meter-fill" style={{ width: `${Math.min(100, Math.round(value * 100))}%` }} />
      <span class="meter-text">{percent(value)}</span>
    </span>
  );
}

/** Every node of the pool, live, with drain and undrain. */
export function Pool({ token }: { token: string }) {
  const admin = adminClient(token);
  const nodes = usePoll(async () => (await admin.nodes.list()).data, POLL_MS, [token]);
  const [busy, setBusy] = useState<string | null>(null);
  const [error, setError] = useState("");

  const toggle = async (n: GpuNode) => {
    setBusy(n.id);
    setError("");
    try {
      if (n.drained_by_admin) await admin.nodes.undrain(n.id);
      else await admin.nodes.drain(n.id);
      await nodes.reload();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(null);
    }
  };

  const list = nodes.data ?? [];
  return (
    <section aria-labelledby="pool-title">
      <div class="section-head">
        <h2 id="pool-title">Pool</h2>
        <span class="muted small" aria-live="polite">
          {nodes.at ? `${list.length} node${list.length === 1 ? "" : "s"} · live` : "loading…"}
        </span>
      </div>
      {(nodes.error || error) && (
        <p class="error" role="alert">
          {error || nodes.error}
        </p>
      )}
      {nodes.at > 0 && list.length === 0 && <p class="muted">No gpu-node has sent a heartbeat yet.</p>}
      {list.length > 0 && (
        <table class="cards" id="nodes">
          <thead>
            <tr>
              <th scope="col">Node</th>
              <th scope="col">State</th>
              <th scope="col">Model</th>
              <th scope="col">Running / waiting</th>
              <th scope="col">KV cache</th>
              <th scope="col">Prefix-cache hits</th>
              <th scope="col">Heartbeat</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {list.map((n) => (
              <tr data-node={n.id}>
                <td data-label="Node">
                  <strong>{n.id}</strong>
                  <div class="muted small">
                    {n.engine} · {n.url}
                  </div>
                </td>
                <td data-label="State">
                  <span class={`badge ${stateOf(n)}`} data-state={stateOf(n)}>
                    {stateOf(n)}
                  </span>
                </td>
                <td data-label="Model">{n.models.join(", ")}</td>
                {/* A node known but not yet heard from has no load, capacity or heartbeat to show. */}
                <td data-label="Running / waiting">
                  {n.load ? `${n.load.running} / ${n.load.waiting}` : <span class="muted">n/a</span>}
                  {n.capacity && <span class="muted small"> of {n.capacity.max_num_seqs}</span>}
                </td>
                <td data-label="KV cache">{n.load ? <Meter value={n.load.kv_usage} label={`KV cache use of ${n.id}`} /> : <span class="muted">n/a</span>}</td>
                <td data-label="Prefix-cache hits">
                  {n.load?.prefix_cache_hit_rate == null ? <span class="muted">n/a</span> : percent(n.load.prefix_cache_hit_rate)}
                </td>
                <td data-label="Heartbeat">{n.last_heartbeat_ms_ago == null ? <span class="muted">none yet</span> : `${age(n.last_heartbeat_ms_ago)} ago`}</td>
                <td data-label="">
                  <button
                    type="button"
                    class="secondary"
                    disabled={busy === n.id}
                    onClick={() => toggle(n)}
                    aria-label={`${n.drained_by_admin ? "Undrain" : "Drain"} ${n.id}`}
                  >
                    {n.drained_by_admin ? "Undrain" : "Drain"}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}
