import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type * as XGrammar from "@mlc-ai/web-xgrammar";

export type XGrammarModule = typeof XGrammar;

let loaded: XGrammarModule | null = null;

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
  // eslint-disable-next-line @typescript-eslint/no-implied-eval -- evaluating the package's own bundle, see above
  new Function("exports", "module", "require", "__filename", readFileSync(file, "utf8"))(mod.exports, mod, require, file);
  loaded = mod.exports as unknown as XGrammarModule;
  return loaded;
}
