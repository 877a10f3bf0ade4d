#!/usr/bin/env node
// The CLI is compiled to dist/ by the workspace's build (npm's prepare step runs it on install).
import "../dist/cli.js";
