import { errorBody } from "@seventy/sdk/protocol";

/**
 * An upstream engine's error answer in OpenAI's shape, status kept. Engines disagree on the body:
 * vLLM, SGLang and TensorRT-LLM send `{object: "error", message, type, param, code}`, llama.cpp and
 * newer vLLM `{error: {message, type, code}}`, FastAPI `{detail: …}`, a proxy in between plain text.
 */
export function normalizeUpstreamError(status: number, text: string): { status: number; body: ReturnType<typeof errorBody> } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  const obj = (json && typeof json === "object" ? json : {}) as Record<string, unknown>;
  const inner = (obj.error && typeof obj.error === "object" ? obj.error : obj) as Record<string, unknown>;
  const detail = obj.detail;
  const message =
    str(inner.message) ??
    str(obj.error) ??
    (typeof detail === "string" ? detail : Array.isArray(detail) ? detailMessage(detail) : undefined) ??
    (text.trim() ? text.trim().slice(0, 500) : `The model server answered ${status}.`);
  const code = inner.code;
  return {
    status,
    body: errorBody(status, message, {
      // Engines use numeric codes (the HTTP status) or names like "BadRequestError" for type: keep
      // only string codes, and let OpenAI's type follow from the status.
      code: typeof code === "string" ? code : status >= 500 ? "upstream_error" : null,
      param: str(inner.param) ?? null,
    }),
  };
}

const str = (v: unknown): string | undefined => (typeof v === "string" && v !== "" ? v : undefined);

function detailMessage(detail: unknown[]): string | undefined {
  const first = detail[0] as { msg?: unknown; loc?: unknown } | undefined;
  if (!first || typeof first.msg !== "string") return undefined;
  return Array.isArray(first.loc) ? `${first.loc.join(".")}: ${first.msg}` : first.msg;
}
