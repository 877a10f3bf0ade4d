import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";

/**
 * A Hugging Face Hub on loopback, speaking the parts of its API that clients use to fetch a model:
 * `/api/models/{repo}/revision/{rev}` (with the commit `sha`), `/api/models/{repo}/tree/{rev}` (files
 * with git oids and LFS sha256), and `/{repo}/resolve/{rev}/{path}` with Range requests. It can
 * require a token (401 without one, 403 with the wrong one, as for a gated repo), cut a file's
 * first transfer after some bytes, or serve a corrupted file.
 */
export interface MockHubOptions {
  repo: string;
  /** Files of the repo: name → content. `*.safetensors` are served as LFS files. */
  files: Map<string, Buffer>;
  commit?: string;
  /** When set, the repo is gated: requests need `Authorization: Bearer <token>`. */
  token?: string;
  /** Ends the connection after this many bytes, on the first transfer of `path` only. */
  cutAfter?: { path: string; bytes: number };
  /** Serves `path` with one byte flipped. */
  corrupt?: string;
}

export interface MockHub {
  url: string;
  commit: string;
  /** Every request: method, path and Range header. */
  requests: { method: string; path: string; range: string | undefined }[];
  close(): Promise<void>;
}

export function filesOfDir(dir: string): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (const name of readdirSync(dir)) if (statSync(join(dir, name)).isFile()) files.set(name, readFileSync(join(dir, name)));
  return files;
}

export const isLfs = (path: string) => path.endsWith(".safetensors");
export const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
export const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");

export async function startMockHub(opts: MockHubOptions): Promise<MockHub> {
  const commit = opts.commit ?? "0123456789abcdef0123456789abcdef01234567";
  const requests: MockHub["requests"] = [];
  let cutDone = false;

  const deny = (req: IncomingMessage, res: ServerResponse): boolean => {
    if (!opts.token) return false;
    const auth = req.headers.authorization;
    if (auth === `Bearer ${opts.token}`) return false;
    const status = auth ? 403 : 401;
    res.writeHead(status, { "content-type": "application/json", "x-error-code": "GatedRepo" });
    res.end(JSON.stringify({ error: `Access to model ${opts.repo} is restricted.` }));
    return true;
  };

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://hub");
    const path = decodeURIComponent(url.pathname);
    requests.push({ method: req.method ?? "GET", path, range: req.headers.range });
    const api = `/api/models/${opts.repo}/`;
    const resolve = `/${opts.repo}/resolve/`;
    if (path.startsWith(api) || path.startsWith(resolve)) {
      if (deny(req, res)) return;
    } else {
      res.writeHead(401, { "content-type": "application/json", "x-error-code": "RepoNotFound" });
      res.end(JSON.stringify({ error: "Repository not found" }));
      return;
    }
    if (path.startsWith(`${api}revision/`)) {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ _id: "1", id: opts.repo, sha: commit, private: false, gated: opts.token ? "manual" : false, downloads: 0, likes: 0, lastModified: "2026-01-01T00:00:00.000Z" }));
      return;
    }
    if (path.startsWith(`${api}tree/`)) {
      const entries = [...opts.files].map(([name, content]) => ({
        type: "file",
        path: name,
        size: isLfs(name) ? 135 : content.length,
        oid: isLfs(name) ? gitOid(Buffer.from(`version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(content)}\n`)) : gitOid(content),
        ...(isLfs(name) ? { lfs: { oid: sha256(content), size: content.length, pointerSize: 135 } } : {}),
      }));
      entries.push({ type: "file", path: "README.md", size: 5, oid: gitOid(Buffer.from("hello")) });
      entries.push({ type: "file", path: "pytorch_model.bin", size: 9, oid: gitOid(Buffer.from("not used!")) });
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(entries));
      return;
    }
    // /{repo}/resolve/{rev}/{file}
    const file = path.slice(resolve.length).split("/").slice(1).join("/");
    let content = opts.files.get(file);
    if (!content) {
      res.writeHead(404, { "x-error-code": "EntryNotFound" });
      res.end();
      return;
    }
    if (opts.corrupt === file) {
      content = Buffer.from(content);
      content[content.length >> 1]! ^= 0xff;
    }
    const etag = isLfs(file) ? sha256(opts.files.get(file)!) : gitOid(opts.files.get(file)!);
    const headers: Record<string, string> = { etag: `"${etag}"`, "x-repo-commit": commit, "accept-ranges": "bytes", "content-type": "application/octet-stream" };
    if (isLfs(file)) headers["x-linked-etag"] = `"${etag}"`;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? "");
    let start = 0;
    let end = content.length - 1;
    if (m) {
      start = Number(m[1]);
      if (m[2]) end = Math.min(Number(m[2]), end);
      res.writeHead(206, { ...headers, "content-range": `bytes ${start}-${end}/${content.length}`, "content-length": String(end - start + 1) });
    } else {
      res.writeHead(200, { ...headers, "content-length": String(content.length) });
    }
    const body = content.subarray(start, end + 1);
    if (opts.cutAfter?.path === file && !cutDone && body.length > opts.cutAfter.bytes) {
      cutDone = true;
      res.write(body.subarray(0, opts.cutAfter.bytes), () => setTimeout(() => res.destroy(), 20));
      return;
    }
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    commit,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
