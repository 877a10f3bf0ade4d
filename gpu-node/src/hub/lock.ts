import { hostname } from "node:os";
import { open, readFile, rm } from "node:fs/promises";

/**
 * An exclusive lock on one blob's download, so two processes (a `download` in a shell and a `serve`
 * under systemd) never append to the same `.incomplete` file. The lock is a file created with
 * O_EXCL holding the owner's host and pid; a lock whose owner on this host is gone is stale and
 * taken over. Within one process, callers queue on the same lock too.
 */
export async function withFileLock<T>(path: string, fn: () => Promise<T>, opts: { onWait?: (owner: string) => void; pollMs?: number } = {}): Promise<T> {
  const me = `${hostname()} ${process.pid}`;
  let told = false;
  for (;;) {
    try {
      const fh = await open(path, "wx");
      await fh.writeFile(me);
      await fh.close();
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const owner = (await readFile(path, "utf8").catch(() => "")).trim();
      if (isStale(owner)) {
        await rm(path, { force: true });
        continue;
      }
      if (!told) opts.onWait?.(owner);
      told = true;
      await new Promise((r) => setTimeout(r, opts.pollMs ?? 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(path, { force: true });
  }
}

/** A lock written by a process of this host that no longer runs (a crash or kill -9). */
function isStale(owner: string): boolean {
  const [host, pid] = owner.split(" ");
  if (host !== hostname() || !pid || !/^\d+$/.test(pid)) return false;
  try {
    process.kill(Number(pid), 0);
    return false;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "ESRCH";
  }
}
