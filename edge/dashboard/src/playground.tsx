import { APIUserAbortError, AuthenticationError, Seventy, type ChatCompletionStream, type Usage } from "@seventy/sdk";
import { render, useEffect, useRef, useState } from "hono/jsx/dom";
import { adminClient, errorText } from "./admin";
import { codeFor, type ChatRequest, type CodeFlavor } from "./code";
import { CopyButton } from "./copy-button";
import { int } from "./format";
import { session } from "./session";

/** A key minted with the admin token lives this long. */
const MINTED_KEY_TTL_S = 3600;
const baseURL = `${location.origin}/v1`;

interface Turn {
  role: "user" | "assistant";
  content: string;
  /** Assistant turns: how the answer went. */
  stats?: { ttftMs: number | null; tokensPerSecond: number | null; usage: Usage | null; outcome: "streaming" | "done" | "stopped" | "error" };
  error?: string;
}

interface Settings {
  model: string;
  system: string;
  temperature: number;
  top_p: number;
  max_tokens: number;
}

/** Choose how to call: paste an API key, or mint a short-lived one with the admin token. */
function Credentials({ onKey, notice }: { onKey: (key: string, expiresAt: number | null) => void; notice: string }) {
  const [error, setError] = useState(notice);
  const stored = session.adminToken();
  const useKey = (e: Event) => {
    e.preventDefault();
    const key = ((e.target as HTMLFormElement).elements.namedItem("api-key") as HTMLInputElement).value.trim();
    if (key) onKey(key, null);
  };
  const mint = async (e: Event) => {
    e.preventDefault();
    const input = (e.target as HTMLFormElement).elements.namedItem("admin-token") as HTMLInputElement | null;
    const token = stored ?? input?.value.trim();
    if (!token) return;
    setError("");
    try {
      const expiresAt = Math.floor(Date.now() / 1000) + MINTED_KEY_TTL_S;
      const created = await adminClient(token).keys.create({ name: "playground", expires_at: expiresAt, limits: { concurrency: 2 } });
      onKey(created.key, expiresAt);
    } catch (err) {
      setError(errorText(err));
    }
  };
  return (
    <main class="login">
      <h1>seventy playground</h1>
      <form class="card" onSubmit={useKey} id="use-key">
        <label for="api-key">API key</label>
        <input id="api-key" name="api-key" type="password" autocomplete="off" placeholder="sk-…" required />
        <button type="submit">Use this key</button>
      </form>
      <form class="card" onSubmit={mint} id="mint-key">
        {stored ? (
          <p>You are signed in to the dashboard in this tab.</p>
        ) : (
          <>
            <label for="admin-token">Admin token</label>
            <input id="admin-token" name="admin-token" type="password" autocomplete="off" required />
          </>
        )}
        <p class="muted small">Mints a key that expires in one hour, kept in this tab only.</p>
        <button type="submit" class="secondary">
          Mint a temporary key
        </button>
      </form>
      {error && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
    </main>
  );
}

function Stats({ turn }: { turn: Turn }) {
  const s = turn.stats;
  if (!s) return null;
  const parts: string[] = [];
  if (s.ttftMs !== null) parts.push(`TTFT ${int(s.ttftMs)} ms`);
  if (s.tokensPerSecond !== null) parts.push(`${s.tokensPerSecond.toFixed(1)} tokens/s`);
  if (s.usage) {
    const cached = s.usage.prompt_tokens_details?.cached_tokens;
    parts.push(`${s.usage.prompt_tokens} prompt${cached ? ` (${cached} cached)` : ""} + ${s.usage.completion_tokens} completion tokens`);
  }
  if (s.outcome === "stopped") parts.push("stopped");
  if (s.outcome === "error") parts.push("failed");
  return (
    <p class="stats muted small" data-outcome={s.outcome}>
      {parts.join(" · ")}
    </p>
  );
}

function CodeView({ request }: { request: ChatRequest }) {
  const [flavor, setFlavor] = useState<CodeFlavor>("sdk");
  const code = codeFor(flavor, baseURL, request);
  const names: Record<CodeFlavor, string> = { sdk: "@seventy/sdk", openai: "openai", curl: "curl" };
  return (
    <details class="card code" id="code">
      <summary>Copy as code</summary>
      <div class="segmented" role="group" aria-label="Language">
        {(Object.keys(names) as CodeFlavor[]).map((f) => (
          <button type="button" class={f === flavor ? "" : "secondary"} aria-pressed={f === flavor} onClick={() => setFlavor(f)}>
            {names[f]}
          </button>
        ))}
        <CopyButton text={code} label="Copy code" />
      </div>
      <pre tabIndex={0}>
        <code data-flavor={flavor}>{code}</code>
      </pre>
    </details>
  );
}

/** /playground: a streaming chat with @seventy/sdk against this edge. */
function Playground() {
  const [key, setKey] = useState<string | null>(session.playgroundKey()?.key ?? null);
  const [models, setModels] = useState<string[]>([]);
  const [settings, setSettings] = useState<Settings>({ model: "", system: "", temperature: 0.7, top_p: 1, max_tokens: 256 });
  const [turns, setTurns] = useState<Turn[]>([]);
  const [error, setError] = useState("");
  const [notice, setNotice] = useState("");
  const [lastRequest, setLastRequest] = useState<ChatRequest | null>(null);
  const streaming = useRef<{ stream: ChatCompletionStream | null; abort: AbortController } | null>(null);
  const [busy, setBusy] = useState(false);
  const log = useRef<HTMLDivElement>(null);
  const client = key ? new Seventy({ baseURL, apiKey: key, maxRetries: 0 }) : null;

  useEffect(() => {
    if (!client) return;
    client.models
      .list()
      .then((list) => {
        const ids = list.data.map((m) => m.id);
        setModels(ids);
        setSettings((s) => ({ ...s, model: s.model || ids[0] || "" }));
      })
      .catch((err) => {
        // A revoked or expired key: ask for another one.
        if (err instanceof AuthenticationError) {
          session.setPlaygroundKey(null);
          setKey(null);
          setNotice(`That key was refused: ${errorText(err)}`);
        } else {
          setError(errorText(err));
        }
      });
  }, [key]);

  useEffect(() => {
    log.current?.scrollTo({ top: log.current.scrollHeight });
  }, [turns]);

  if (!client) {
    return (
      <Credentials
        notice={notice}
        onKey={(k, expiresAt) => {
          setNotice("");
          session.setPlaygroundKey({ key: k, expiresAt });
          setKey(k);
        }}
      />
    );
  }

  const request = (history: Turn[]): ChatRequest => ({
    model: settings.model,
    messages: [
      ...(settings.system.trim() ? [{ role: "system" as const, content: settings.system }] : []),
      ...history.filter((t) => !t.error).map((t) => ({ role: t.role, content: t.content })),
    ],
    temperature: settings.temperature,
    top_p: settings.top_p,
    max_tokens: settings.max_tokens,
  });

  const update = (i: number, fn: (t: Turn) => Turn) => setTurns((ts) => ts.map((t, j) => (j === i ? fn(t) : t)));

  const send = async (text: string) => {
    if (!text.trim() || streaming.current) return;
    setError("");
    const history: Turn[] = [...turns, { role: "user", content: text }];
    const at = history.length;
    setTurns([...history, { role: "assistant", content: "", stats: { ttftMs: null, tokensPerSecond: null, usage: null, outcome: "streaming" } }]);
    const abort = new AbortController();
    streaming.current = { stream: null, abort };
    setBusy(true);
    const req = request(history);
    setLastRequest(req);
    const started = performance.now();
    let first: number | null = null;
    try {
      const stream = await client.chat.completions.create(
        { ...req, stream: true, stream_options: { include_usage: true } },
        { signal: abort.signal },
      );
      streaming.current.stream = stream;
      for await (const delta of stream.textStream) {
        first ??= performance.now();
        update(at, (t) => ({ ...t, content: t.content + delta, stats: { ...t.stats!, ttftMs: first! - started } }));
      }
      const { usage } = await stream.finalCompletion();
      const seconds = first === null ? 0 : (performance.now() - first) / 1000;
      const tps = usage && seconds > 0 && usage.completion_tokens > 1 ? (usage.completion_tokens - 1) / seconds : null;
      update(at, (t) => ({ ...t, stats: { ttftMs: first === null ? null : first - started, tokensPerSecond: tps, usage: usage ?? null, outcome: "done" } }));
    } catch (err) {
      if (err instanceof APIUserAbortError || abort.signal.aborted) {
        update(at, (t) => ({ ...t, stats: { ...t.stats!, outcome: "stopped" } }));
      } else {
        update(at, (t) => ({ ...t, error: errorText(err), stats: { ...t.stats!, outcome: "error" } }));
      }
    } finally {
      streaming.current = null;
      setBusy(false);
    }
  };

  const stop = () => {
    streaming.current?.stream?.abort();
    streaming.current?.abort.abort();
  };

  const submit = (e: Event) => {
    e.preventDefault();
    const box = (e.target as HTMLFormElement).elements.namedItem("prompt") as HTMLTextAreaElement;
    const text = box.value;
    box.value = "";
    void send(text);
  };

  const onKeyDown = (e: KeyboardEvent) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      (e.target as HTMLTextAreaElement).form?.requestSubmit();
    }
  };

  const num = (name: keyof Settings) => (e: Event) => setSettings((s) => ({ ...s, [name]: Number((e.target as HTMLInputElement).value) }));

  const forget = () => {
    stop();
    session.setPlaygroundKey(null);
    setKey(null);
    setTurns([]);
  };

  return (
    <>
      <header class="top">
        <strong class="brand">seventy</strong>
        <nav aria-label="Pages">
          <a href="/dashboard">Dashboard</a>
          <a href="/playground" aria-current="page">
            Playground
          </a>
        </nav>
        <button type="button" class="secondary" onClick={forget}>
          Change key
        </button>
      </header>
      <main class="playground">
        <aside class="card settings" aria-label="Request settings">
          <label for="model">Model</label>
          <select id="model" onChange={(e: Event) => setSettings((s) => ({ ...s, model: (e.target as HTMLSelectElement).value }))}>
            {models.map((m) => (
              <option value={m} selected={m === settings.model}>
                {m}
              </option>
            ))}
          </select>
          <label for="system">System prompt</label>
          <textarea id="system" rows={3} onInput={(e: Event) => setSettings((s) => ({ ...s, system: (e.target as HTMLTextAreaElement).value }))} />
          <label for="temperature">Temperature {settings.temperature}</label>
          <input id="temperature" type="range" min={0} max={2} step={0.1} value={String(settings.temperature)} onInput={num("temperature")} />
          <label for="top_p">Top p {settings.top_p}</label>
          <input id="top_p" type="range" min={0.05} max={1} step={0.05} value={String(settings.top_p)} onInput={num("top_p")} />
          <label for="max_tokens">Max tokens</label>
          <input id="max_tokens" type="number" min={1} step={1} value={String(settings.max_tokens)} onChange={num("max_tokens")} />
          <button type="button" class="secondary" onClick={() => setTurns([])} disabled={busy}>
            Clear the chat
          </button>
        </aside>
        <section class="chat" aria-label="Chat">
          {error && (
            <p class="error" role="alert">
              {error}
            </p>
          )}
          <div class="log" ref={log} aria-live="polite" id="log">
            {turns.length === 0 && <p class="muted">Ask something. Enter sends, Shift+Enter starts a new line.</p>}
            {turns.map((t) => (
              <div class={`turn ${t.role}`} data-role={t.role}>
                <p class="content">{t.content}</p>
                {t.error && (
                  <p class="error" role="alert">
                    {t.error}
                  </p>
                )}
                {t.role === "assistant" && <Stats turn={t} />}
              </div>
            ))}
          </div>
          <form class="ask" onSubmit={submit} id="ask">
            <label for="prompt" class="sr-only">
              Message
            </label>
            <textarea id="prompt" name="prompt" rows={2} placeholder="Message" onKeyDown={onKeyDown} autofocus />
            <span class="inline">
              <button type="submit" disabled={busy}>
                Send
              </button>
              <button type="button" class="danger" onClick={stop} disabled={!busy}>
                Stop
              </button>
            </span>
          </form>
          <CodeView request={lastRequest ?? request(turns)} />
        </section>
      </main>
    </>
  );
}

render(<Playground />, document.getElementById("app")!);
