// Bundles the dashboard and the playground into static assets the edge serves (wrangler.toml
// `[assets]`): public/ copied as is, each page's script bundled with @seventy/sdk, hono/jsx/dom and
// uPlot, so the pages load nothing from anywhere but the edge.
//
//   node edge/dashboard/build.mjs   (part of `npm run build`)
import { build } from "esbuild";
import { cp, mkdir, rename, rm } from "node:fs/promises";
import { fileURLToPath } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const out = `${here}dist`;
// Built aside (in the ignored .cache/, on the same disk) and swapped in whole, so a wrangler dev
// already serving dist/ never sees half a build.
const staging = fileURLToPath(new URL(`../../.cache/dashboard-build-${process.pid}`, import.meta.url));

await rm(staging, { recursive: true, force: true });
await mkdir(staging, { recursive: true });
try {
  await cp(`${here}public`, staging, { recursive: true });
  await build({
    entryPoints: { dashboard: `${here}src/dashboard.tsx`, playground: `${here}src/playground.tsx` },
    outdir: `${staging}/ui`,
    bundle: true,
    minify: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    jsx: "automatic",
    jsxImportSource: "hono/jsx/dom",
    legalComments: "linked",
    logLevel: "warning",
  });
  await rm(out, { recursive: true, force: true });
  await rename(staging, out);
} catch (err) {
  await rm(staging, { recursive: true, force: true });
  throw err;
}
