import { APIError, SeventyAdmin } from "@seventy/sdk";

/** The admin API client for this origin with the tab's admin token. */
export function adminClient(token: string): SeventyAdmin {
  return new SeventyAdmin({ baseURL: location.origin, adminToken: token, maxRetries: 1, timeout: 15_000 });
}

/** Whether `token` opens the admin API (a 401 says no; other failures are thrown). */
export async function checkAdminToken(token: string): Promise<boolean> {
  try {
    await adminClient(token).nodes.list();
    return true;
  } catch (err) {
    if (err instanceof APIError && err.status === 401) return false;
    throw err;
  }
}

/** A message for an error, as the API or the network gave it (an APIError's starts with its status). */
export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
