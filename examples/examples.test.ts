// The examples, run as a user runs them, against the local stack (the edge's deploy bundle under workerd + gpu-node).
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";
import { execFileSync } from "node:child_process";
import { Seventy, SeventyAdmin } from "@seventy/sdk";
import { chromium, type Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../test/compat/support/stack.js";

const root = fileURLToPath(new URL("../", import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let stack: Stack;
let admin: SeventyAdmin;

beforeAll(async () => {
  // The examples run compiled, as `npm run build` leaves them.
  execFileSync(process.execPath, [`${root}node_modules/typescript/bin/tsc`, "-b", `${root}examples`], { stdio: "inherit" });
  stack = await startStack();
  admin = new SeventyAdmin({ baseURL: stack.origin, adminToken: stack.adminToken });
});

const children: { exitCode: number | null; kill(signal?: NodeJS.Signals): boolean }[] = [];

afterEach((context) => {
  if (context.task.result?.state === "fail" && stack) console.error(stack.logs());
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill("SIGKILL");
  await stack?.stop();
});

/** Runs a compiled example with the stack's URL and a fresh key. */
async function run(script: string, args: string[], env: Record<string, string> = {}) {
  const key = await admin.keys.create({ name: `example ${script}` });
  const child = spawn(process.execPath, [`${root}examples/dist/${script}`, ...args], {
    env: { ...process.env, SEVENTY_BASE_URL: stack.baseURL, SEVENTY_API_KEY: key.key, ...env },
    stdio: ["pipe", "pipe", "pipe"],
  });
  const out = { text: "", pieces: [] as string[], err: "" };
  child.stdout.on("data", (d: Buffer) => {
    out.text += d;
    out.pieces.push(d.toString());
  });
  child.stderr.on("data", (d: Buffer) => (out.err += d));
  const exited = new Promise<number | null>((r) => child.once("exit", (code) => r(code)));
  children.push(child);
  const waitFor = async (re: RegExp, ms = 30_000) => {
    const end = Date.now() + ms;
    while (!re.test(out.text)) {
      if (Date.now() > end || child.exitCode !== null) throw new Error(`no ${re} in output:\n${out.text}\n${out.err}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child: child as ChildProcessWithoutNullStreams, out, exited, waitFor, key };
}

async function inFlightReachesZero(keyId: string, ms = 10_000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if ((await admin.keys.retrieve(keyId)).state.in_flight === 0) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

describe("chat-repl: a terminal chat that streams tokens", () => {
  it("streams answers, keeps the conversation, and Ctrl-C stops an answer without quitting", async () => {
    const repl = await run("chat-repl/main.js", [], { SEVENTY_MAX_TOKENS: "12" });
    await repl.waitFor(/model: tiny-llama-3\.1/);
    await repl.waitFor(/> $/);

    const before = repl.out.pieces.length;
    repl.child.stdin.write("Hello there\n");
    await repl.waitFor(/\[\d+ prompt \+ 12 completion tokens\]/);
    // Tokens arrived as separate writes, not as one block at the end.
    expect(repl.out.pieces.length - before).toBeGreaterThan(3);
    const firstPrompt = Number(/\[(\d+) prompt/.exec(repl.out.text)![1]);

    // The second question carries the first exchange: a longer prompt.
    repl.child.stdin.write("And again\n");
    await repl.waitFor(/completion tokens\][\s\S]*completion tokens\]/);
    const prompts = [...repl.out.text.matchAll(/\[(\d+) prompt/g)].map((m) => Number(m[1]));
    expect(prompts[1]).toBeGreaterThan(firstPrompt + 12);

    // Typed ahead: both lines wait their turn. Once the answer is streaming, Ctrl-C.
    const mark = repl.out.text.length;
    repl.child.stdin.write("/reset\nTell me everything\n");
    const started = Date.now();
    while (repl.out.text.length < mark + "> > ".length + 4 && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 10));
    repl.child.kill("SIGINT"); // Ctrl-C mid-answer
    await repl.waitFor(/\[stopped\]/);
    expect(await inFlightReachesZero(repl.key.id)).toBe(true);

    // Still alive after Ctrl-C: it answers the next question, then Ctrl-D quits.
    repl.child.stdin.write("One more\n");
    await repl.waitFor(/\[stopped\][\s\S]*completion tokens\]/);
    repl.child.stdin.end();
    expect(await repl.exited).toBe(0);
  });
});

describe("route-handler: POST returns stream.toResponse()", () => {
  it("streams SSE that Seventy.fromResponse reads back, usage included; bad input is a 400", async () => {
    const key = await admin.keys.create({ name: "route handler" });
    process.env.SEVENTY_BASE_URL = stack.baseURL;
    process.env.SEVENTY_API_KEY = key.key;
    const { POST } = await import("./route-handler/route.js");
    const res = await POST(
      new Request("http://app.local/api/chat", {
        method: "POST",
        body: JSON.stringify({ messages: [{ role: "user", content: "Hi" }] }),
      }),
    );
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/event-stream; charset=utf-8");
    expect(res.headers.get("x-request-id")).toMatch(/\S/);
    const stream = Seventy.fromResponse(res);
    let text = "";
    for await (const t of stream.textStream) text += t;
    const final = await stream.finalCompletion();
    expect(final.choices[0]!.message.content).toBe(text);
    expect(final.usage?.completion_tokens).toBeGreaterThan(0);

    const bad = await POST(new Request("http://app.local/api/chat", { method: "POST", body: "{}" }));
    expect(bad.status).toBe(400);
    // An error from the edge before the stream starts keeps its status.
    const rejected = await POST(
      new Request("http://app.local/api/chat", { method: "POST", body: JSON.stringify({ messages: [{ role: "robot", content: "x" }] }) }),
    );
    expect(rejected.status).toBe(400);
    expect(((await rejected.json()) as { error: { param: string } }).error.param).toMatch(/^messages/);
  });
});

describe("web-relay: a Node server relaying a stream to a web page", () => {
  let browser: Browser;
  afterAll(async () => {
    await browser?.close();
  });

  it("renders tokens as they arrive in headless Chromium, and Stop ends the request", async () => {
    const server = await run("web-relay/server.js", ["--port", "0"]);
    try {
      await server.waitFor(/listening on (http:\/\/\S+)/);
      const url = /listening on (http:\/\/\S+)/.exec(server.out.text)![1]!;
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
      const page = await browser.newPage();
      await page.goto(url);

      // Sample the answer's length while it streams: it must grow in several steps.
      await page.fill("#prompt", "Describe the sea.");
      await page.click("#send");
      const lengths = new Set<number>();
      const end = Date.now() + 30_000;
      while (Date.now() < end) {
        const state = await page.getAttribute("#status", "data-state");
        lengths.add(((await page.textContent("#log .assistant")) ?? "").length);
        if (state === "done" || state === "error") break;
        await page.waitForTimeout(5);
      }
      expect(await page.getAttribute("#status", "data-state")).toBe("done");
      expect(await page.textContent("#status")).toMatch(/^\d+ tokens \(\d+ in prompt\)$/);
      expect([...lengths].filter((n) => n > 0).length).toBeGreaterThan(3);
      await page.screenshot({ path: `${root}.cache/web-relay.png` });

      // Stop: the page aborts its stream, the server sees the browser go and aborts the model call.
      await page.fill("#prompt", "Now a very long story.");
      await page.click("#send");
      await page.waitForFunction(() => (document.querySelectorAll("#log .assistant")[1]?.textContent ?? "").length > 0);
      await page.click("#stop");
      await page.waitForFunction(() => document.getElementById("status")!.dataset.state === "stopped");
      expect(await inFlightReachesZero(server.key.id)).toBe(true);
    } finally {
      server.child.kill("SIGTERM");
      await server.exited;
    }
  });
});
