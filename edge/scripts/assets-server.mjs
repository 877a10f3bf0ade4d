// The local stack's stand-in for Cloudflare's static-asset layer, for the edge under bare workerd.
//
// In production the asset layer answers a request for a file in `[assets] directory`
// (wrangler.toml) before the worker runs, with `_headers` applied and
// `html_handling = "auto-trailing-slash"` (/dashboard serves dashboard.html). Locally,
// `assetsServerModule` writes a small worker that does the same over the files it embeds; the edge
// is given it as its ASSETS binding and hands it the dashboard's paths. It is not put in front of
// the edge, so API requests and streams never pass through a second worker.
import { readFile, readdir } from "node:fs/promises";
import { extname, join, relative } from "node:path";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".json": "application/json",
  ".txt": "text/plain; charset=utf-8",
};

async function listFiles(dir) {
  const out = [];
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(path)));
    else out.push(path);
  }
  return out;
}

/** `_headers` rules: `[{ pattern, headers }]`, a pattern being a path with an optional trailing `*`. */
export function parseHeadersFile(text) {
  const rules = [];
  for (const raw of text.split("\n")) {
    if (!raw.trim() || raw.trim().startsWith("#")) continue;
    if (!/^\s/.test(raw)) rules.push({ pattern: raw.trim(), headers: {} });
    else if (rules.length > 0) {
      const at = raw.indexOf(":");
      if (at > 0) rules[rules.length - 1].headers[raw.slice(0, at).trim()] = raw.slice(at + 1).trim();
    }
  }
  return rules;
}

/** The source of the asset worker for the files under `dir` (null when `dir` holds none). */
export async function assetsServerModule(dir) {
  let files;
  try {
    files = await listFiles(dir);
  } catch {
    return null;
  }
  const assets = {};
  let rules = [];
  for (const file of files) {
    const rel = "/" + relative(dir, file).split("\\").join("/");
    if (rel === "/_headers") {
      rules = parseHeadersFile(await readFile(file, "utf8"));
      continue;
    }
    assets[rel] = { type: TYPES[extname(file)] ?? "application/octet-stream", body: (await readFile(file)).toString("base64") };
  }
  if (Object.keys(assets).length === 0) return null;
  return `const ASSETS = ${JSON.stringify(assets)};
const RULES = ${JSON.stringify(rules)};
const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
function find(path) {
  if (path.endsWith(".html") || path.endsWith("/index.html")) return null; // served without the suffix only
  return ASSETS[path] ? path : ASSETS[path + ".html"] ? path + ".html" : ASSETS[path.replace(/\\/?$/, "/index.html")] ? path.replace(/\\/?$/, "/index.html") : null;
}
export default {
  async fetch(request) {
    const url = new URL(request.url);
    const file = request.method === "GET" || request.method === "HEAD" ? find(decodeURIComponent(url.pathname)) : null;
    if (file === null) return new Response("Not found", { status: 404 });
    const headers = new Headers({ "content-type": ASSETS[file].type });
    for (const rule of RULES) {
      const p = rule.pattern;
      if (p.endsWith("*") ? url.pathname.startsWith(p.slice(0, -1)) : url.pathname === p) {
        for (const [k, v] of Object.entries(rule.headers)) headers.set(k, v);
      }
    }
    return new Response(request.method === "HEAD" ? null : bytes(ASSETS[file].body), { headers });
  },
};
`;
}
