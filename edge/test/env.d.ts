import type { Env as EdgeEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends EdgeEnv {}
    interface GlobalProps {
      mainModule: typeof import("../src/index");
    }
  }
}

export {};
