import type { ChildProcess } from "node:child_process";

export interface GroupChild extends ChildProcess {
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  output(): string;
}

export const ROOT: string;
export function wranglerEnv(): NodeJS.ProcessEnv;
export function freePort(): Promise<number>;
export function sleep(ms: number): Promise<void>;
export function waitFor<T>(check: () => T | Promise<T>, opts?: { timeoutMs?: number; intervalMs?: number; what?: string }): Promise<NonNullable<T>>;
export function spawnGroup(cmd: string, args: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string; echo?: string | null }): GroupChild;
export function stopGroup(child: GroupChild | undefined, signal?: NodeJS.Signals, graceMs?: number): Promise<void>;

export interface Started {
  url: string;
  child: GroupChild;
  stop(): Promise<void>;
}

export function readWranglerToml(): Promise<{ vars: Record<string, string>; compatibilityDate: string; compatibilityFlags: string[]; assetsDirectory: string | null; objects: Record<string, string> }>;
export function buildBundle(outdir: string): Promise<number>;
export function workerdConfig(opts: {
  dir: string;
  name?: string;
  port: number;
  bundle: string;
  assets?: string | null;
  vars: Record<string, string>;
  compatibilityDate: string;
  compatibilityFlags: string[];
  objects?: Record<string, string>;
}): Promise<string>;

export function startEdge(opts: {
  port: number;
  /** Only for runner "wrangler". */
  inspectorPort?: number;
  /** "workerd" (default): the deploy bundle under bare workerd; "wrangler": wrangler dev. */
  runner?: "workerd" | "wrangler";
  adminToken: string;
  nodeSecret: string;
  vars?: Record<string, string>;
  stateDir: string;
  echo?: string | null;
  /** wrangler's own log level (worker console output shows at "info"). */
  logLevel?: "debug" | "info" | "log" | "warn" | "error" | "none";
  timeoutMs?: number;
}): Promise<Started>;

/** Registers a node (id, http://127.0.0.1:port) with the edge's admin API; returns its credential. */
export function registerNode(edgeUrl: string, adminToken: string, opts: { id: string; port: number }): Promise<string>;

export function startNode(opts: {
  port: number;
  edgeUrl?: string;
  /** The node's credential from registerNode (SEVENTY_NODE_CREDENTIAL); its id is the node's id. */
  credential?: string;
  nodeId?: string;
  engine?: "reference" | "simulated" | "native" | "upstream";
  args?: string[];
  env?: Record<string, string>;
  echo?: string | null;
  timeoutMs?: number;
}): Promise<Started & { id: string | undefined }>;

export function adminCall(edgeUrl: string, token: string, method: string, path: string, json?: unknown): Promise<any>;

export function waitForNodes(
  edgeUrl: string,
  token: string,
  ids: string[],
  opts?: { status?: string; timeoutMs?: number },
): Promise<{ id: string; status: string; url: string }[]>;
