import type { ResponseValidator } from "../lib/validate.js";
import type { Transport } from "./transport.js";

/** What resources need from the client: plain data, so they stay one-line delegations. */
export interface ClientContext {
  readonly transport: Transport;
  readonly validate: ResponseValidator | undefined;
}
