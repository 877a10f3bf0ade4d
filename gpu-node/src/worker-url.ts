import { existsSync } from "node:fs";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * The URL of a compiled worker script next to `base` (a module's `import.meta.url`). When running
 * from TypeScript sources (tests), the built copy in dist/ is used: workers load plain JavaScript.
 *
 * @example new Worker(workerScriptUrl("./tokenizer-thread.js", import.meta.url))
 */
export function workerScriptUrl(relative: string, base: string): URL {
  const here = new URL(relative, base);
  if (existsSync(fileURLToPath(here))) return here;
  const built = fileURLToPath(here).replace(/([\\/])src([\\/])(?!.*[\\/]src[\\/])/, "$1dist$2");
  if (!existsSync(built)) throw new Error(`the worker script is not built (${built}): run npm run build`);
  return pathToFileURL(built);
}
