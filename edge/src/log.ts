/**
 * One JSON line per event. Callers pass identifiers and numbers only: never a prompt, a
 * completion, an API key or a secret.
 */
export type LogFields = Record<string, string | number | boolean | null | undefined>;

export function logInfo(event: string, fields: LogFields): void {
  console.log(JSON.stringify({ level: "info", event, ...fields }));
}

export function logError(event: string, fields: LogFields): void {
  console.error(JSON.stringify({ level: "error", event, ...fields }));
}
