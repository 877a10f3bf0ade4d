interface EnvHost {
  process?: { env?: Record<string, string | undefined> };
  Deno?: { env?: { get(name: string): string | undefined } };
}

/** An environment variable in Node, Bun or Deno; undefined in browsers and Workers (pass options there). */
export function readEnv(name: string): string | undefined {
  const host = globalThis as EnvHost;
  try {
    return host.process?.env?.[name] ?? host.Deno?.env?.get(name) ?? undefined;
  } catch {
    return undefined; // Deno without --allow-env
  }
}
