#!/usr/bin/env node
/**
 * A Node server that relays a chat stream to a small web page, which renders tokens as they arrive.
 *
 *   SEVENTY_BASE_URL=http://127.0.0.1:8787/v1 SEVENTY_API_KEY=sk-... node examples/dist/web-relay/server.js [--port 3000]
 *
 * The page posts to /api/chat; the route handler (../route-handler/route.ts) answers with
 * `stream.toResponse()`, and the page reads it back with `Seventy.fromResponse()`. The API key
 * stays on the server.
 */
import { build } from "esbuild";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { POST } from "../route-handler/route.js";

// index.html and page.ts live in examples/web-relay/, also when this file runs compiled from examples/dist/web-relay/.
const here = fileURLToPath(new URL(import.meta.url.includes("/dist/") ? "../../web-relay/" : "./", import.meta.url));

/** The page's script, bundled once at start-up: `@seventy/sdk` tree-shaken to what the page uses. */
async function bundlePage(): Promise<string> {
  const out = await build({
    entryPoints: [`${here}page.ts`],
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
  });
  return out.outputFiles[0]!.text;
}

/** Node request → Web `Request`; its signal fires if the browser goes away before the answer ends. */
async function toRequest(req: IncomingMessage, res: ServerResponse): Promise<Request> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  const gone = new AbortController();
  res.on("close", () => {
    if (!res.writableFinished) gone.abort();
  });
  const headers = new Headers();
  for (const [k, v] of Object.entries(req.headers)) if (typeof v === "string") headers.set(k, v);
  return new Request(`http://${req.headers.host ?? "localhost"}${req.url}`, {
    method: req.method,
    headers,
    body: chunks.length ? Buffer.concat(chunks) : undefined,
    signal: gone.signal,
  });
}

/** Web `Response` → Node response, writing each piece as it comes (no buffering). */
async function send(res: ServerResponse, response: Response): Promise<void> {
  res.writeHead(response.status, Object.fromEntries(response.headers));
  if (!response.body) return void res.end();
  const reader = response.body.getReader();
  res.on("close", () => void reader.cancel().catch(() => {}));
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    res.write(value);
  }
  res.end();
}

export async function startServer(port = 3000, host = "127.0.0.1"): Promise<{ url: string; close: () => Promise<void> }> {
  const [html, script] = await Promise.all([readFile(`${here}index.html`, "utf8"), bundlePage()]);
  const server = createServer(async (req, res) => {
    try {
      if (req.method === "GET" && req.url === "/") {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(html);
      } else if (req.method === "GET" && req.url === "/app.js") {
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(script);
      } else if (req.method === "POST" && req.url === "/api/chat") {
        await send(res, await POST(await toRequest(req, res)));
      } else {
        res.writeHead(404).end();
      }
    } catch (err) {
      console.error(err);
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    }
  });
  await new Promise<void>((resolve) => server.listen(port, host, resolve));
  const { port: bound } = server.address() as { port: number };
  return {
    url: `http://${host}:${bound}`,
    close: () => new Promise((resolve) => (server.closeAllConnections(), server.close(() => resolve()))),
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { values } = parseArgs({ options: { port: { type: "string", default: "3000" } } });
  const { url } = await startServer(Number(values.port));
  console.log(`listening on ${url}`);
}
