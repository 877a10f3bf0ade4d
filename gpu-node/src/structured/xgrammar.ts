import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

export type XGrammarModule = typeof XGrammar;

/** The matcher with the synchronous mask fill this loader adds (see below). */
export type FastGrammarMatcher = XGrammar.GrammarMatcher & { fillNextTokenBitmask(out: Int32Array): void };

let loaded: XGrammarModule | null = null;
let lastError = "";

/** The engine's last error message (e.g. where a grammar fails to parse), then forgets it. */
export function takeXGrammarError(): string {
  const e = lastError.replace(/^\[FATAL\] [^:]*:\d+: /, "");
  lastError = "";
  return e;
}

/**
 * `@mlc-ai/web-xgrammar` (xgrammar compiled to WebAssembly) as a module object.
 *
 * The package ships one UMD bundle under `"type": "module"`: imported as ESM it exports nothing and
 * its Emscripten glue calls `require` and `__filename`, which ESM scope lacks. So the bundle is run
 * the way Node runs CommonJS, with `exports`, `module`, `require` and `__filename` as parameters; the
 * WebAssembly binary is embedded in it. Loaded once per process (or worker thread).
 */
export function loadXGrammar(): XGrammarModule {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const file = require.resolve("@mlc-ai/web-xgrammar");
  const mod = { exports: {} as Record<string, unknown> };
  // The glue's one dynamic `import('module')` is handed in as a parameter too: code made by
  // `new Function` has no module to resolve imports from under loaders such as vitest's.
  // Its error printer is handed in as well: a grammar that fails to parse makes the engine print the
  // reason (with a piece of the user's grammar) to stderr and throw a bare "Aborted()"; the reason
  // belongs in the 400 instead of the node's log.
  //
  // And the matcher gets a synchronous `fillNextTokenBitmask(out)`: the package's async
  // getNextTokenBitmask() copies the mask into a fresh array per call (16 KB per sequence per token
  // at 128k vocabulary), garbage that lands on the engine's critical path as collector pauses.
  const patches: Array<[string, string]> = [
    ["await import('module')", "nodeModule"],
    ['var err=Module["printErr"]||console.error.bind(console);', "var err=printErr;"],
    [
      "      async getNextTokenBitmask() {",
      "      fillNextTokenBitmask(out) { const v = this.handle.GetNextTokenBitmask(this.vocab_size); out.set(binding.vecIntToView(v)); v.delete(); }\n      async getNextTokenBitmask() {",
    ],
  ];
  let source = readFileSync(file, "utf8");
  for (const [from, to] of patches) {
    if (!source.includes(from)) throw new Error(`@mlc-ai/web-xgrammar: unexpected bundle (no ${JSON.stringify(from)}); pin the tested version`);
    source = source.replace(from, to);
  }
  // The first line is the reason; "Aborted()" follows it.
  const printErr = (text: string) => {
    if (!lastError) lastError = String(text);
  };
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- evaluating the package's own bundle, see above
  new Function("exports", "module", "require", "__filename", "nodeModule", "printErr", source)(mod.exports, mod, require, file, { createRequire }, printErr);
  loaded = mod.exports as unknown as XGrammarModule;
  return loaded;
}
