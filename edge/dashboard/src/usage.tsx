import type { UsageBucket, UsageSeries } from "@seventy/sdk";
import { useState } from "hono/jsx/dom";
import { adminClient } from "./admin";
import { Chart, type Line } from "./chart";
import { int } from "./format";
import { usePoll } from "./poll";

type Window = UsageSeries["window"];
type Key = UsageSeries["keys"][number];

const WINDOWS: { id: Window; label: string; pollMs: number }[] = [
  { id: "hour", label: "Last hour, by minute", pollMs: 10_000 },
  { id: "month", label: "Last 30 days, by day", pollMs: 60_000 },
];
/** Lines in the requests chart: the busiest keys; the rest are summed as "other keys". */
const TOP_LINES = 5;

type Metric = keyof Omit<UsageBucket, "start">;

function total(k: Key, m: Metric): number {
  return k.buckets.reduce((sum, b) => sum + b[m], 0);
}

function tokens(k: Key): number {
  return total(k, "prompt_tokens") + total(k, "completion_tokens");
}

/** Every key's buckets on the shared x axis (starts), zeros where a key has no bucket. */
function column(keys: Key[], xs: number[], m: Metric): number[] {
  const sums = new Map<number, number>(xs.map((x) => [x, 0]));
  for (const k of keys) for (const b of k.buckets) if (sums.has(b.start)) sums.set(b.start, sums.get(b.start)! + b[m]);
  return xs.map((x) => sums.get(x)!);
}

/** Requests and tokens per key over time, and the keys that used the most. */
export function Usage({ token }: { token: string }) {
  const [window, setWindow] = useState<Window>("hour");
  const [selected, setSelected] = useState<string>("");
  const admin = adminClient(token);
  const w = WINDOWS.find((x) => x.id === window)!;
  const series = usePoll(() => admin.usage.series({ window }), w.pollMs, [token, window]);

  const keys = [...(series.data?.keys ?? [])].sort((a, b) => tokens(b) - tokens(a) || total(b, "requests") - total(a, "requests"));
  const xs = keys[0]?.buckets.map((b) => b.start) ?? [];
  const top = keys.slice(0, TOP_LINES);
  const rest = keys.slice(TOP_LINES);
  // Names need not be unique: a repeated one is told apart by its prefix.
  const label = (k: Key) => (keys.filter((o) => o.name === k.name).length > 1 ? `${k.name} ${k.prefix}` : k.name);
  const requestLines: Line[] = top.map((k) => ({ label: label(k), values: column([k], xs, "requests") }));
  if (rest.length > 0) requestLines.push({ label: `${rest.length} other keys`, values: column(rest, xs, "requests") });
  const chosen = selected ? keys.filter((k) => k.id === selected) : keys;
  const tokenLines: Line[] = [
    { label: "prompt", values: column(chosen, xs, "prompt_tokens") },
    { label: "completion", values: column(chosen, xs, "completion_tokens") },
    { label: "cached", values: column(chosen, xs, "cached_tokens") },
  ];
  const step = window === "hour" ? "minute" : "day";
  const selectedName = keys.find((k) => k.id === selected)?.name;

  return (
    <section aria-labelledby="usage-title">
      <div class="section-head">
        <h2 id="usage-title">Usage</h2>
        <div class="segmented" role="group" aria-label="Time window">
          {WINDOWS.map((x) => (
            <button type="button" class={x.id === window ? "" : "secondary"} aria-pressed={x.id === window} onClick={() => setWindow(x.id)}>
              {x.label}
            </button>
          ))}
        </div>
      </div>
      {series.error && (
        <p class="error" role="alert">
          {series.error}
        </p>
      )}
      {series.at > 0 && keys.length === 0 && <p class="muted">No requests in this window yet.</p>}
      {keys.length > 0 && (
        <>
          <div class="charts">
            <Chart title="Requests per key" xs={xs} lines={requestLines} step={step} />
            <Chart title={`Tokens · ${selectedName ?? "all keys"}`} xs={xs} lines={tokenLines} step={step} />
          </div>
          <h3>Top keys</h3>
          <table class="cards" id="top-keys">
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Requests</th>
                <th scope="col">Prompt</th>
                <th scope="col">Completion</th>
                <th scope="col">Cached</th>
                <th scope="col">Errors</th>
              </tr>
            </thead>
            <tbody>
              {keys.map((k) => (
                <tr data-key={k.id} class={k.id === selected ? "selected" : ""}>
                  <td data-label="Key">
                    <button type="button" class="link" aria-pressed={k.id === selected} onClick={() => setSelected(k.id === selected ? "" : k.id)}>
                      {k.name}
                    </button>{" "}
                    <code class="muted small">{k.prefix}</code>
                    {k.revoked && <span class="muted small"> · revoked</span>}
                  </td>
                  <td data-label="Requests" data-metric="requests">{int(total(k, "requests"))}</td>
                  <td data-label="Prompt">{int(total(k, "prompt_tokens"))}</td>
                  <td data-label="Completion">{int(total(k, "completion_tokens"))}</td>
                  <td data-label="Cached">{int(total(k, "cached_tokens"))}</td>
                  <td data-label="Errors">{int(total(k, "errors"))}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
