import type { Env } from "./env";

/** Hono's type parameter for the whole app: bindings plus per-request variables. */
export interface AppEnv {
  Bindings: Env;
  Variables: { requestId: string };
}
