/**
 * Credentials of this browser tab. They live in sessionStorage (gone when the tab closes, never
 * shared with other tabs or sent by the browser on its own) and travel only as bearer headers:
 * never in a URL, never in a cookie.
 */
const ADMIN = "seventy.adminToken";
const PLAYGROUND_KEY = "seventy.playgroundKey";

function get(name: string): string | null {
  try {
    return sessionStorage.getItem(name);
  } catch {
    return null;
  }
}

function set(name: string, value: string | null): void {
  if (value === null) sessionStorage.removeItem(name);
  else sessionStorage.setItem(name, value);
}

export const session = {
  adminToken: () => get(ADMIN),
  setAdminToken: (token: string | null) => set(ADMIN, token),
  /** The API key the playground chats with, with its expiry (Unix seconds) when it was minted here. */
  playgroundKey(): { key: string; expiresAt: number | null } | null {
    const raw = get(PLAYGROUND_KEY);
    if (!raw) return null;
    try {
      const v = JSON.parse(raw) as { key: string; expiresAt: number | null };
      if (v.expiresAt !== null && v.expiresAt * 1000 <= Date.now()) return null;
      return v;
    } catch {
      return null;
    }
  },
  setPlaygroundKey: (v: { key: string; expiresAt: number | null } | null) => set(PLAYGROUND_KEY, v && JSON.stringify(v)),
};
