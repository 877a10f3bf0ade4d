import {
  responseCreateRequestSchema,
  zodErrorBody,
  type ResponseItem,
  type ResponseObject,
} from "@seventy/sdk/protocol";
import type { Context } from "hono";
import type { AppEnv } from "../app-env";
import { ApiError, apiErrorFromBody } from "../errors";
import { limiterFor } from "../limits/key-limiter";
import { logError } from "../log";
import { reservationFor } from "../limits/reservation";
import { authenticate, type ProxiedApi, type ProxiedRequest } from "../routes/v1";
import { responsesPrefixHash, storedItems } from "./items";
import { responseStoreFor, storeLimits } from "./store";
import { ResponsesScanner } from "./stream";

/** The most conversation (JSON bytes) previous_response_id may bring along to a node. */
const MAX_PREVIOUS_BYTES = 4 << 20;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The conversation up to and including response `id`, from the key's store (a 400 naming the missing link). */
async function previousItems(c: Context<AppEnv>, keyHash: string, id: string, model: string): Promise<ResponseItem[]> {
  // Only a key that works may look into its store (and no stray key creates one).
  await authenticate(limiterFor(c.env, keyHash), model);
  const found = await responseStoreFor(c.env, keyHash).conversation(id, storeLimits(c.env), MAX_PREVIOUS_BYTES);
  if (found.ok) return found.items;
  throw new ApiError(
    400,
    found.reason === "not_found"
      ? `Previous response with id '${found.missing}' not found.`
      : `The conversation up to '${found.missing}' is longer than this edge forwards (${MAX_PREVIOUS_BYTES} bytes); start a new one.`,
    { param: "previous_response_id", code: found.reason === "not_found" ? "previous_response_not_found" : "context_length_exceeded" },
  );
}

function parseResponse(body: Uint8Array): ResponseObject | null {
  try {
    return JSON.parse(decoder.decode(body)) as ResponseObject;
  } catch {
    return null;
  }
}

/**
 * POST /v1/responses at the edge: the chat pipeline (`complete`: auth, limits, routing with prefix
 * affinity, failover, metering) plus the Responses API's state. previous_response_id is resolved
 * from the key's ResponseStore and sent to the node as `previous_items`; a finished response is
 * stored (unless `store: false`) before its last byte reaches the client, so the next turn can
 * continue it on any node.
 */
export const responsesApi: ProxiedApi = {
  path: "/v1/responses",
  async prepare(raw, body, c, keyHash, cfg): Promise<ProxiedRequest> {
    const result = responseCreateRequestSchema.safeParse(raw);
    if (!result.success) throw apiErrorFromBody(400, zodErrorBody(result.error));
    const req = result.data;
    if (req.previous_items !== undefined) {
      throw new ApiError(400, "Unknown parameter: 'previous_items'. Continue a conversation with 'previous_response_id'.", {
        param: "previous_items",
        code: "unknown_parameter",
      });
    }
    const previous = req.previous_response_id === undefined ? null : await previousItems(c, keyHash, req.previous_response_id, req.model);
    const newItems = storedItems(req.input);
    const upstreamBody = previous ? encoder.encode(JSON.stringify({ ...(raw as object), previous_items: previous })) : body;

    const store = req.store !== false;
    const save = async (response: ResponseObject) => {
      const record = { response, input: newItems, previousId: req.previous_response_id ?? null };
      try {
        if (await responseStoreFor(c.env, keyHash).save(record, storeLimits(c.env))) return;
        logError("response_not_stored", { request_id: c.get("requestId"), reason: "refused" });
      } catch (err) {
        logError("response_not_stored", { request_id: c.get("requestId"), reason: err instanceof Error ? err.name : "unknown" });
      }
    };
    const scanner = new ResponsesScanner(cfg.maxEventBytes);
    return {
      model: req.model,
      stream: req.stream === true,
      prefixHash: responsesPrefixHash(req.instructions, [...(previous ?? []), ...newItems], cfg.affinityPrefixChars),
      // The conversation the node renders is the body it is sent (with the resolved previous items).
      reservation: (defaultMaxTokens, maxModelLen) =>
        reservationFor(upstreamBody.byteLength, { max_tokens: req.max_output_tokens, n: 1 }, defaultMaxTokens, maxModelLen),
      upstreamBody,
      // Responses always carry usage in their last event: nothing to strip.
      stripUsage: false,
      streamProtocol: {
        metered: { scanner, cutOffEvent: (message, code) => scanner.cutOffEvent(message, code) },
        scanner: () => new ResponsesScanner(cfg.maxEventBytes),
      },
      onAnswer: store
        ? {
            async buffered(b) {
              const response = parseResponse(b);
              if (response) await save(response);
            },
            stream: (out) => storeOnCompletion(out, scanner, save),
          }
        : undefined,
    };
  },
};

/**
 * Passes a metered stream on, holding back the piece that carries the final response until that
 * response is stored.
 */
function storeOnCompletion(
  metered: ReadableStream<Uint8Array>,
  scanner: ResponsesScanner,
  save: (r: ResponseObject) => Promise<void>,
): ReadableStream<Uint8Array> {
  const reader = metered.getReader();
  let saved = false;
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        const r = await reader.read();
        if (r.done) return controller.close();
        if (scanner.final && !saved) {
          saved = true;
          await save(scanner.final);
        }
        controller.enqueue(r.value);
      },
      cancel(reason) {
        return reader.cancel(reason);
      },
    },
    { highWaterMark: 0 },
  );
}
