import { fileURLToPath } from "node:url";
import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

// Tests share one tiny model, made once by the global setup; the variable reaches setup and workers alike.
process.env.SEVENTY_CACHE_DIR = fileURLToPath(new URL("./.cache/test", import.meta.url));

export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: "node",
          environment: "node",
          include: ["sdk/src/**/*.test.ts", "gpu-node/src/**/*.test.ts", "test/**/*.test.ts", "examples/**/*.test.ts"],
          globalSetup: ["test/global-setup.ts"],
          testTimeout: 60_000,
          hookTimeout: 120_000,
        },
      },
      {
        // The edge worker's units and Durable Objects, inside workerd.
        plugins: [
          cloudflareTest({
            main: "./edge/src/index.ts",
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                ADMIN_TOKEN: "test-admin-token",
                NODE_SECRET: "test-node-secret",
                UPSTREAM_TIMEOUT_MS: "300",
                CONNECT_TIMEOUT_MS: "300",
                REQUEST_TIMEOUT_MS: "1000",
                CANCEL_DRAIN_MS: "300",
                MAX_RESPONSE_BYTES: "65536",
                CORS_ORIGINS: "https://app.example",
                LOG_LEVEL: "error",
              },
            },
          }),
        ],
        test: {
          name: "edge",
          include: ["edge/test/**/*.test.ts"],
        },
      },
    ],
  },
});
