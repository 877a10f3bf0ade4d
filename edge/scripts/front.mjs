// The local stack's front: holds client connections for the edge under bare workerd, as
// Cloudflare's front line does in production, and starts workerd itself (same process group, same
// output), so that one signal stops both.
//
// Why: workerd closes a client connection 5 s after its last response, silently (no `Keep-Alive:
// timeout` hint; it strips one set by the worker or injected by its config, and this version has no
// setting for the timeout). A pooled client that sends its next request just then gets the
// connection reset with no response: under load a client reads a response late, so its idle clock
// runs behind workerd's and "just then" is anything from about 4 to 5 s of idle. The front never
// closes an idle client connection (the client does, when it likes), and keeps its own connections
// to workerd idle for at most UPSTREAM_IDLE_MS, well inside workerd's 5 s; a request whose reused
// connection was closed under it before any response is sent again on a new one (workerd had not
// read it).
//
//   node front.mjs <port> <workerd port> <workerd> <args...>
import { spawn } from "node:child_process";
import http from "node:http";

const UPSTREAM_IDLE_MS = 2000;
const [port, upstreamPort, cmd, ...args] = process.argv.slice(2);

const workerd = spawn(cmd, args, { stdio: "inherit" });
workerd.on("exit", (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => workerd.kill(sig));

const agent = new http.Agent({ keepAlive: true, timeout: UPSTREAM_IDLE_MS, maxSockets: Infinity, scheduling: "lifo" });

/** Forwards one request to workerd; `retry` once when a reused connection fails before any answer. */
function forward(req, res, body, retry) {
  const up = http.request({ host: "127.0.0.1", port: upstreamPort, method: req.method, path: req.url, headers: req.headers, agent }, (ans) => {
    res.writeHead(ans.statusCode ?? 502, ans.statusMessage, ans.rawHeaders);
    ans.pipe(res);
    ans.on("error", () => res.destroy());
  });
  up.on("error", () => {
    if (retry && up.reusedSocket && !res.headersSent && !res.destroyed) return forward(req, res, body, false);
    // A failure after the answer began: the client sees its connection end, as it would have.
    if (!res.headersSent) {
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { message: "The edge is not answering.", type: "server_error", param: null, code: "edge_unavailable" } }));
    } else res.destroy();
  });
  // A client that leaves takes its request to workerd with it.
  res.on("close", () => {
    if (!res.writableFinished) up.destroy();
  });
  up.end(body);
}

// Far above what the edge accepts (MAX_BODY_BYTES, 1 MiB by default): the edge gives the precise 413.
const MAX_HELD_BODY_BYTES = 64 * 1024 * 1024;

const server = http.createServer((req, res) => {
  // The body is kept until it is sent, so that a request can be sent again.
  let parts = [];
  let size = 0;
  req.on("data", (p) => {
    size += p.byteLength;
    if (size <= MAX_HELD_BODY_BYTES) return void parts.push(p);
    // Refused; the rest is read and dropped, and the connection closed after the answer.
    parts = [];
    if (!res.headersSent) {
      res.writeHead(413, { "content-type": "application/json", connection: "close" });
      res.end(JSON.stringify({ error: { message: `The request body is larger than ${MAX_HELD_BODY_BYTES} bytes.`, type: "invalid_request_error", param: null, code: "request_too_large" } }));
    }
  });
  req.on("end", () => {
    if (size <= MAX_HELD_BODY_BYTES) forward(req, res, Buffer.concat(parts), true);
  });
  req.on("error", () => res.destroy());
});
// Idle client connections stay open until the client closes them.
server.keepAliveTimeout = 0;
server.requestTimeout = 0;
server.listen(Number(port), "127.0.0.1");
