import * as z from "zod";

/** The OpenAI error body: `{ error: { message, type, param, code } }`. */
export const errorBodySchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable().optional(),
    code: z.union([z.string(), z.number()]).nullable().optional(),
  }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

/** The `type` OpenAI uses for each status; clients branch on status, people read `type`. */
export function errorTypeForStatus(status: number): string {
  switch (status) {
    case 400:
    case 404:
    case 413:
    case 422:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 408:
    case 504:
      return "timeout_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable_error";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

export function errorBody(
  status: number,
  message: string,
  opts: { param?: string | null; code?: string | null; type?: string } = {},
): ErrorBody {
  return {
    error: {
      message,
      type: opts.type ?? errorTypeForStatus(status),
      param: opts.param ?? null,
      code: opts.code ?? null,
    },
  };
}

/** `messages[0].content` style path, as OpenAI writes `param`. */
export function formatParamPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const part of path) {
    if (typeof part === "number") out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/**
 * For unions, zod reports "invalid_union"; dig into the branch that got furthest (through nested
 * unions too) for a precise path.
 */
function preciseIssue(issue: z.core.$ZodIssue): z.core.$ZodIssue {
  if (issue.code !== "invalid_union" || !("errors" in issue)) return issue;
  const branches = (issue as { errors: z.core.$ZodIssue[][] }).errors;
  let longest: z.core.$ZodIssue | undefined;
  for (const branch of branches) {
    for (const sub of branch) {
      // The branch that got furthest names the most precise parameter; a type mismatch at the
      // union's own level says least, so any other issue there wins over it.
      if (!longest || sub.path.length > longest.path.length) longest = sub;
      else if (sub.path.length === longest.path.length && longest.code === "invalid_type" && sub.code !== "invalid_type") longest = sub;
    }
  }
  if (!longest) return issue;
  const inner = preciseIssue(longest);
  return { ...inner, path: [...issue.path, ...inner.path] };
}

/** Turns the first zod issue into an OpenAI 400 body naming the parameter. */
export function zodErrorBody(error: z.ZodError): ErrorBody {
  const issue = error.issues[0];
  if (!issue) return errorBody(400, "Invalid request body.");
  const best = preciseIssue(issue);
  const param = formatParamPath(best.path);
  const what = param ? `'${param}'` : "the request body";
  let detail = best.message;
  if (best.code === "invalid_type" && "expected" in best) {
    detail = best.path.length > 0 && /received undefined/.test(best.message) ? "is required" : `expected ${String(best.expected)}`;
  }
  return errorBody(400, `Invalid value for ${what}: ${detail}.`, { param: param || null, code: "invalid_value" });
}
