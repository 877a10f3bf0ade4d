import { SeventyError } from "../core/errors.js";
import { readEnv } from "../internal/env.js";
import { Transport, type Fetch, type RequestOptions } from "../internal/transport.js";
import type {
  ApiKey,
  ApiKeyWithState,
  CreatedApiKey,
  DeletedApiKey,
  DeletedGpuNode,
  GpuNode,
  NodeRegisterParams,
  RegisteredGpuNode,
  KeyCreateParams,
  KeyUpdateParams,
  List,
  UsageParams,
  UsageReport,
  UsageSeries,
  UsageSeriesParams,
} from "../protocol/admin.js";

export interface AdminClientOptions {
  /** The edge's origin, e.g. `https://llm.example.com` (the admin API lives under `/admin`). Default: `SEVENTY_ADMIN_URL`. */
  baseURL?: string;
  /** Default: `SEVENTY_ADMIN_TOKEN`. */
  adminToken?: string;
  fetch?: Fetch;
  /** Retries of idempotent calls (everything but `keys.create`). Default 2. */
  maxRetries?: number;
  /** Milliseconds per attempt. Default 30 000. */
  timeout?: number;
}

/**
 * Manages the edge: API keys and their limits, the gpu-node pool, and usage.
 *
 * @example
 * const admin = new SeventyAdmin({ baseURL: "https://llm.example.com", adminToken });
 * const { key } = await admin.keys.create({ name: "mobile-app", limits: { rpm: 600, tpm: 200_000 } });
 */
export class SeventyAdmin {
  readonly keys: AdminKeys;
  readonly nodes: AdminNodes;
  readonly usage: AdminUsage;

  constructor(options: AdminClientOptions = {}) {
    const baseURL = options.baseURL ?? readEnv("SEVENTY_ADMIN_URL");
    const adminToken = options.adminToken ?? readEnv("SEVENTY_ADMIN_TOKEN");
    if (!baseURL) throw new SeventyError("Missing baseURL: pass { baseURL } or set SEVENTY_ADMIN_URL.");
    if (!adminToken) throw new SeventyError("Missing adminToken: pass { adminToken } or set SEVENTY_ADMIN_TOKEN.");
    const transport = new Transport({
      baseURL: `${baseURL.replace(/\/+$/, "")}/admin`,
      fetch: options.fetch ?? ((input, init) => fetch(input, init)),
      maxRetries: options.maxRetries ?? 2,
      timeout: options.timeout ?? 30_000,
      idleTimeout: 0,
      headers: { authorization: `Bearer ${adminToken}` },
    });
    this.keys = new AdminKeys(transport);
    this.nodes = new AdminNodes(transport);
    this.usage = new AdminUsage(transport);
  }
}

const id = (value: string) => encodeURIComponent(value);

export class AdminKeys {
  constructor(private readonly t: Transport) {}

  /** Creates a key; the answer's `key` is the secret, shown this once. Not retried (it is not idempotent). */
  create(params: KeyCreateParams, options?: RequestOptions): Promise<CreatedApiKey> {
    return this.t.json({ method: "POST", path: "/keys", body: params }, { maxRetries: 0, ...options });
  }

  list(options?: RequestOptions): Promise<List<ApiKey>> {
    return this.t.json({ method: "GET", path: "/keys" }, options);
  }

  /** One key, with its live limiter state (in flight, remaining requests and tokens). */
  retrieve(keyId: string, options?: RequestOptions): Promise<ApiKeyWithState> {
    return this.t.json({ method: "GET", path: `/keys/${id(keyId)}` }, options);
  }

  /** Changes name, models, limits (merged), budget, or disables the key. */
  update(keyId: string, params: KeyUpdateParams, options?: RequestOptions): Promise<ApiKey> {
    return this.t.json({ method: "PATCH", path: `/keys/${id(keyId)}`, body: params }, options);
  }

  /** Revokes the key for good; requests with it get 401 from then on. */
  revoke(keyId: string, options?: RequestOptions): Promise<DeletedApiKey> {
    return this.t.json({ method: "DELETE", path: `/keys/${id(keyId)}` }, options);
  }
}

export class AdminNodes {
  constructor(private readonly t: Transport) {}

  list(options?: RequestOptions): Promise<List<GpuNode>> {
    return this.t.json({ method: "GET", path: "/nodes" }, options);
  }

  /** Registers a node with the URL the edge may send its requests to; the answer holds its credential, shown once. */
  register(params: NodeRegisterParams, options?: RequestOptions): Promise<RegisteredGpuNode> {
    return this.t.json({ method: "POST", path: "/nodes", body: params }, options);
  }

  /** A new credential for the node; the old one stops working at once. */
  rotate(nodeId: string, options?: RequestOptions): Promise<RegisteredGpuNode> {
    return this.t.json({ method: "POST", path: `/nodes/${id(nodeId)}/rotate` }, options);
  }

  /** Removes the node from the pool and revokes its credential at once. */
  revoke(nodeId: string, options?: RequestOptions): Promise<DeletedGpuNode> {
    return this.t.json({ method: "DELETE", path: `/nodes/${id(nodeId)}` }, options);
  }

  /** Stops routing new requests to the node; its running streams finish. */
  drain(nodeId: string, options?: RequestOptions): Promise<GpuNode> {
    return this.t.json({ method: "POST", path: `/nodes/${id(nodeId)}/drain` }, options);
  }

  undrain(nodeId: string, options?: RequestOptions): Promise<GpuNode> {
    return this.t.json({ method: "POST", path: `/nodes/${id(nodeId)}/undrain` }, options);
  }
}

export class AdminUsage {
  constructor(private readonly t: Transport) {}

  /** Requests and tokens per UTC day, for one key or all keys. */
  retrieve(params: UsageParams = {}, options?: RequestOptions): Promise<UsageReport> {
    return this.t.json({ method: "GET", path: "/usage", query: { key: params.key, from: params.from, to: params.to } }, options);
  }

  /** Requests and tokens per key over the last hour (by minute) or the last 30 days (by day). */
  series(params: UsageSeriesParams, options?: RequestOptions): Promise<UsageSeries> {
    return this.t.json({ method: "GET", path: "/usage/series", query: { window: params.window } }, options);
  }
}
