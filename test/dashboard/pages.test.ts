// /dashboard and /playground in headless Chromium against the local stack (the edge under
// `wrangler dev`, as `SEVENTY_EDGE_RUNNER=wrangler npm start` runs it, with Cloudflare's own asset
// layer; a gpu-node on the tiny model), as an operator and a developer use them. Not bare workerd:
// there a browser's aborted stream reaches the worker only when a write to it fails, which on a
// busy machine can outlast the stop test's wait.
// Screenshots of every page land in .seventy/screenshots/, or in docs/screenshots/ (the README's)
// with SEVENTY_UPDATE_SCREENSHOTS=1.
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { SeventyAdmin } from "@seventy/sdk";
import { chromium, type Browser, type BrowserContext, type Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ROOT } from "../../edge/scripts/stack.mjs";
import { startStack, type Stack } from "../compat/support/stack.js";

const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const SHOTS = process.env.SEVENTY_UPDATE_SCREENSHOTS === "1" ? join(ROOT, "docs", "screenshots") : join(ROOT, ".seventy", "screenshots");
const DESKTOP = { width: 1280, height: 860 };
const PHONE = { width: 390, height: 844 };

let stack: Stack;
let admin: SeventyAdmin;
let browser: Browser;
let context: BrowserContext;
/** The operator's tab (/dashboard) and the developer's tab (/playground). */
let ops: Page;
let dev: Page;
let nodeId: string;
/** The key created in the dashboard, used in the playground. */
let created: { id: string; key: string };
/** Anything a page asked of another origin, and any script error or CSP violation. */
const foreign: string[] = [];
const problems: string[] = [];

function watch(page: Page): Page {
  page.on("request", (r) => {
    if (!r.url().startsWith(stack.origin) && !r.url().startsWith("data:")) foreign.push(r.url());
  });
  page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy|Refused to/i.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true, animations: "disabled" });
}

/** The playground's last answer: its text and how it ended. */
function lastAnswer(page: Page) {
  return page.locator(".turn.assistant").last();
}

/**
 * Runs a "copy as code" snippet as its user would: curl in bash, the TypeScript ones as ES modules
 * from the repository (where @seventy/sdk and openai resolve), the key in SEVENTY_API_KEY.
 */
async function runSnippet(flavor: "sdk" | "openai" | "curl", code: string, apiKey: string): Promise<string> {
  const dir = await mkdtemp(join(ROOT, ".seventy", "snippet-"));
  try {
    const file = join(dir, flavor === "curl" ? "run.sh" : "run.mjs");
    await writeFile(file, code);
    const [cmd, args] = flavor === "curl" ? ["bash", [file]] : [process.execPath, [file]];
    return await new Promise<string>((resolve, reject) =>
      execFile(cmd, args, { cwd: ROOT, env: { ...process.env, SEVENTY_API_KEY: apiKey }, timeout: 30_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${flavor}: ${err.message}\n${stderr}`)) : resolve(stdout),
      ),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** Polls `fn` for up to 15 s: pages refresh every 2 to 3 s, answers take a few seconds on two cores. */
function poll<T>(fn: () => Promise<T> | T, timeout = 15_000) {
  return expect.poll(fn, { timeout, interval: 100 });
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator("#prompt").fill(text);
  await page.locator("#prompt").press("Enter");
}

beforeAll(async () => {
  await mkdir(SHOTS, { recursive: true });
  stack = await startStack({ runner: "wrangler" });
  admin = new SeventyAdmin({ baseURL: stack.origin, adminToken: stack.adminToken });
  nodeId = (await admin.nodes.list()).data[0]!.id;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  context = await browser.newContext({ viewport: DESKTOP, colorScheme: "light" });
  ops = watch(await context.newPage());
  dev = watch(await context.newPage());
});

afterEach((ctx) => {
  if (ctx.task.result?.state === "fail" && stack) console.error(stack.logs());
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

describe("/dashboard and /playground", () => {
  it("asks for the admin token once, keeps it in the tab's session storage only, and shows the node live", async () => {
    await ops.goto(`${stack.origin}/dashboard`);
    await ops.locator("#token").fill("wrong-token");
    await ops.locator("#token").press("Enter");
    await poll(() => ops.getByRole("alert").textContent()).toMatch(/refused/);
    await ops.locator("#token").fill(stack.adminToken);
    await ops.locator("#token").press("Enter");
    const row = ops.locator(`[data-node="${nodeId}"]`);
    await row.waitFor();
    expect(await row.locator("[data-state]").getAttribute("data-state")).toBe("healthy");
    expect(await row.textContent()).toContain(stack.model);
    // Live: a change made elsewhere (here through the admin API) shows without a reload.
    await admin.nodes.drain(nodeId);
    await poll(() => row.locator("[data-state]").getAttribute("data-state")).toBe("draining");
    await admin.nodes.undrain(nodeId);
    await poll(() => row.locator("[data-state]").getAttribute("data-state")).toBe("healthy");
    // The token is in session storage, never in a cookie or the URL.
    expect(await ops.evaluate(() => sessionStorage.getItem("seventy.adminToken"))).toBe(stack.adminToken);
    expect(await context.cookies()).toEqual([]);
    expect(ops.url()).not.toContain(stack.adminToken);
    // A reload keeps the session.
    await ops.reload();
    await row.waitFor();
    await shot(ops, "dashboard-pool");
  });

  it("creates a key, shows it once with a copy button, and lists it with its ratelimit state", async () => {
    await ops.getByRole("link", { name: "Keys" }).click();
    await ops.locator("summary", { hasText: "Create a key" }).click();
    await ops.locator("#new-name").fill("browser test");
    await ops.locator("#new-rpm").fill("100");
    await ops.getByRole("button", { name: "Create key" }).click();
    const key = await ops.locator("#new-key-value").inputValue();
    expect(key).toMatch(/^sk-/);
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: stack.origin });
    await ops.locator(".new-key").getByRole("button", { name: "Copy" }).click();
    expect(await ops.evaluate(() => navigator.clipboard.readText())).toBe(key);
    const row = ops.locator('tr[data-name="browser test"]');
    await poll(() => row.locator('[data-label="Ratelimit now"]').textContent()).toMatch(/0 in flight · 100\/100 req/);
    created = { id: (await row.getAttribute("data-key"))!, key };
    // Edit its limits and budget.
    await ops.getByRole("button", { name: "Edit browser test" }).click();
    await ops.locator(`#edit-${created.id}-tpm`).fill("150000");
    await ops.locator(`#edit-${created.id}-budget_tokens`).fill("500000");
    await ops.getByRole("button", { name: "Save" }).click();
    await poll(() => row.textContent()).toMatch(/150K tpm[\s\S]*500K \/ day/);
    const stored = await admin.keys.retrieve(created.id);
    expect(stored.limits.tpm).toBe(150_000);
    expect(stored.budget).toEqual({ tokens: 500_000, period: "day" });
    await ops.getByRole("button", { name: "Done" }).click();
    expect(await ops.locator("#new-key-value").count()).toBe(0);
    await shot(ops, "dashboard-keys");
  });

  it("chats in the playground with the key: the answer streams in, with TTFT, tokens/s and usage", async () => {
    await dev.goto(`${stack.origin}/playground`);
    await dev.locator("#api-key").fill(created.key);
    await dev.locator("#api-key").press("Enter");
    await poll(() => dev.locator("#model").inputValue()).toBe(stack.model);
    // An apostrophe, which the curl snippet must quote for the shell.
    await dev.locator("#system").fill("You're terse.");
    await dev.locator("#max_tokens").fill("48");
    await dev.locator("#max_tokens").press("Tab");
    // Record every length the answer goes through: a streamed answer grows in steps.
    await dev.evaluate(() => {
      const w = window as unknown as { lengths: number[] };
      w.lengths = [];
      new MutationObserver(() => {
        const a = [...document.querySelectorAll(".turn.assistant .content")].pop();
        if (a) w.lengths.push(a.textContent!.length);
      }).observe(document.getElementById("log")!, { subtree: true, childList: true, characterData: true });
    });
    await send(dev, "Hello there");
    const answer = lastAnswer(dev);
    await answer.locator('[data-outcome="done"]').waitFor({ timeout: 30_000 });
    const text = (await answer.locator(".content").textContent()) ?? "";
    expect(text.length).toBeGreaterThan(0);
    const lengths = await dev.evaluate(() => (window as unknown as { lengths: number[] }).lengths);
    expect(new Set(lengths.filter((n) => n > 0 && n < text.length)).size).toBeGreaterThan(1);
    const stats = (await answer.locator(".stats").textContent()) ?? "";
    expect(stats).toMatch(/TTFT \d+ ms · [\d.]+ tokens\/s · \d+ prompt( \(\d+ cached\))? \+ 48 completion tokens/);
    // Copy as code: the same request for the SDK, the openai client and curl, without the key; each runs.
    await dev.locator("summary", { hasText: "Copy as code" }).click();
    const code = dev.locator("#code pre");
    expect(await code.textContent()).toMatch(/from "@seventy\/sdk"[\s\S]*"You're terse\."[\s\S]*"max_tokens": 48/);
    const sdkOut = await runSnippet("sdk", (await code.textContent())!, created.key);
    expect(sdkOut).toMatch(/completion_tokens: 48/);
    await dev.getByRole("button", { name: "openai", exact: true }).click();
    expect(await code.textContent()).toMatch(/import OpenAI from "openai"[\s\S]*"Hello there"/);
    expect((await runSnippet("openai", (await code.textContent())!, created.key)).length).toBeGreaterThan(0);
    await dev.getByRole("button", { name: "curl", exact: true }).click();
    expect(await code.textContent()).toMatch(/curl -N http:\/\/127\.0\.0\.1:\d+\/v1\/chat\/completions[\s\S]*\$SEVENTY_API_KEY/);
    expect(await code.textContent()).not.toContain(created.key);
    const curlOut = await runSnippet("curl", (await code.textContent())!, created.key);
    expect(curlOut).toMatch(/^data: \{[\s\S]*data: \[DONE\]\s*$/);
    await dev.getByRole("button", { name: "@seventy/sdk", exact: true }).click();
    await dev.getByRole("button", { name: "Copy code" }).click();
    expect(await dev.evaluate(() => navigator.clipboard.readText())).toBe(await code.textContent());
    await shot(dev, "playground");
  });

  it("stops an answer with the stop button, and the edge ends the request", async () => {
    await dev.locator("#max_tokens").fill("2000");
    await dev.locator("#max_tokens").press("Tab");
    await send(dev, "Tell me everything");
    const answer = lastAnswer(dev);
    await poll(async () => ((await answer.locator(".content").textContent()) ?? "").length, 30_000).toBeGreaterThan(10);
    await dev.getByRole("button", { name: "Stop" }).click();
    await answer.locator('[data-outcome="stopped"]').waitFor();
    await poll(async () => (await admin.keys.retrieve(created.id)).state.in_flight, 10_000).toBe(0);
    // The conversation goes on after a stop.
    await dev.locator("#max_tokens").fill("8");
    await dev.locator("#max_tokens").press("Tab");
    await send(dev, "Again");
    await lastAnswer(dev).locator('[data-outcome="done"]').waitFor({ timeout: 30_000 });
  });

  it("mints a short-lived key with the admin token of the tab and chats with it", async () => {
    await ops.goto(`${stack.origin}/playground`);
    await ops.getByRole("button", { name: "Mint a temporary key" }).click();
    await poll(() => ops.locator("#model").inputValue()).toBe(stack.model);
    await ops.locator("#max_tokens").fill("8");
    await ops.locator("#max_tokens").press("Tab");
    await send(ops, "Hi");
    await lastAnswer(ops).locator('[data-outcome="done"]').waitFor({ timeout: 30_000 });
    const minted = (await admin.keys.list()).data.find((k) => k.name === "playground")!;
    expect(minted.expires_at! - Date.now() / 1000).toBeGreaterThan(3500);
    expect(minted.expires_at! - Date.now() / 1000).toBeLessThanOrEqual(3600);
    await ops.goto(`${stack.origin}/dashboard#pool`);
  });

  it("charts usage per key over the last hour and the last 30 days, with the top keys", async () => {
    await ops.getByRole("link", { name: "Usage" }).click();
    const row = ops.locator(`#top-keys tr[data-key="${created.id}"]`);
    // Six answers: 48 tokens, the same request three times from its code, a stopped one, and 8 tokens.
    await poll(async () => (await row.isVisible()) && row.locator('[data-metric="requests"]').textContent(), 20_000).toBe("6");
    await poll(() => ops.locator(".chart canvas").count()).toBe(2);
    await ops.getByRole("button", { name: "Last 30 days, by day" }).click();
    await poll(() => row.locator('[data-metric="requests"]').textContent()).toBe("6");
    await ops.getByRole("button", { name: "Last hour, by minute" }).click();
    await row.getByRole("button", { name: "browser test" }).click();
    await poll(() => ops.locator("figcaption").nth(1).textContent()).toBe("Tokens · browser test");
    await shot(ops, "dashboard-usage");
  });

  it("revokes the key in the dashboard, and the playground's next request is refused", async () => {
    await ops.getByRole("link", { name: "Keys" }).click();
    await ops.getByRole("button", { name: "Revoke browser test" }).click();
    await ops.getByRole("button", { name: "Confirm revoking browser test" }).click();
    await ops.locator('tr[data-name="browser test"]').waitFor({ state: "detached" });
    await send(dev, "Still there?");
    const answer = lastAnswer(dev);
    await answer.locator('[data-outcome="error"]').waitFor({ timeout: 15_000 });
    expect(await answer.getByRole("alert").textContent()).toMatch(/401 .*Incorrect API key/);
    // Opened again, the playground asks for another key.
    await dev.reload();
    expect(await dev.getByRole("alert").textContent()).toMatch(/That key was refused: 401 Incorrect API key/);
    await dev.locator("#api-key").waitFor();
  });

  it("drains and undrains the node from the keyboard, and its state follows", async () => {
    await ops.getByRole("link", { name: "Pool" }).click();
    const row = ops.locator(`[data-node="${nodeId}"]`);
    await row.waitFor();
    // Tab from the top of the page to the drain button, then Enter.
    await ops.locator("body").focus();
    const drain = `Drain ${nodeId}`;
    for (let i = 0; i < 20 && (await ops.evaluate(() => document.activeElement?.getAttribute("aria-label"))) !== drain; i++) await ops.keyboard.press("Tab");
    expect(await ops.evaluate(() => document.activeElement?.getAttribute("aria-label"))).toBe(drain);
    await ops.keyboard.press("Enter");
    await poll(() => row.locator("[data-state]").getAttribute("data-state")).toBe("draining");
    expect((await admin.nodes.list()).data.find((n) => n.id === nodeId)?.status).toBe("draining");
    await row.getByRole("button", { name: `Undrain ${nodeId}` }).click();
    await poll(() => row.locator("[data-state]").getAttribute("data-state")).toBe("healthy");
  });

  it("fits a phone-width screen", async () => {
    await ops.setViewportSize(PHONE);
    const fits = () => ops.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    for (const tab of ["Keys", "Usage", "Pool"]) {
      await ops.getByRole("link", { name: tab }).click();
      await ops.locator("h2", { hasText: tab }).waitFor();
      expect(await fits(), tab).toBeLessThanOrEqual(0);
    }
    await ops.locator(`[data-node="${nodeId}"]`).waitFor();
    await shot(ops, "dashboard-pool-phone");
    // This tab still holds the key it minted.
    await ops.goto(`${stack.origin}/playground`);
    await poll(() => ops.locator("#model").inputValue()).toBe(stack.model);
    await ops.locator("#max_tokens").fill("8");
    await ops.locator("#max_tokens").press("Tab");
    await send(ops, "Hi from a phone");
    await lastAnswer(ops).locator('[data-outcome="done"]').waitFor({ timeout: 30_000 });
    expect(await fits()).toBeLessThanOrEqual(0);
    await shot(ops, "playground-phone");
  });

  it("loaded nothing from anywhere but the edge, with no script error or CSP violation", async () => {
    expect(foreign).toEqual([]);
    expect(problems).toEqual([]);
    for (const path of ["/dashboard", "/playground"]) {
      const res = await fetch(`${stack.origin}${path}`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-security-policy")).toMatch(/default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'/);
      expect(res.headers.get("x-frame-options")).toBe("DENY");
    }
  });
});
