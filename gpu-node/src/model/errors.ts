/**
 * Errors of the model-directory layer. Every problem with what is on disk (config.json, safetensors
 * headers, shards, tokenizer files) becomes one `ModelDirError` whose message is a single line that
 * names the file and the field or tensor at fault, so a CLI can print it as is.
 */
export class ModelDirError extends Error {
  override readonly name = "ModelDirError";
  /** The file (or directory) at fault. */
  readonly file: string;
  /** The field or tensor at fault, where there is one. */
  readonly field?: string;

  constructor(file: string, detail: string, options: { field?: string; cause?: unknown } = {}) {
    super(oneLine(`${file}: ${detail}`), options.cause === undefined ? undefined : { cause: options.cause });
    this.file = file;
    if (options.field !== undefined) this.field = options.field;
  }
}

/** A chat template refused the conversation (`raise_exception(...)`) or failed to render. */
export class ChatTemplateError extends Error {
  override readonly name = "ChatTemplateError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(oneLine(message), options);
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, " ").trim();
}

/** Short, single-line rendering of a JSON value for error messages. */
export function describeValue(v: unknown): string {
  if (v === undefined) return "undefined";
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
