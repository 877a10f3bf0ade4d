/**
 * The operations guide's commands and the shipped systemd unit against the CLI they call: every
 * `seventy-node` command in the README's Operations section and the unit's ExecStart parse with the
 * CLI's own flag tables, and the unit passes `systemd-analyze verify` where systemd is installed.
 */
import { spawnSync } from "node:child_process";
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { describe, expect, it } from "vitest";
import { COMMAND_OPTIONS } from "../../gpu-node/src/cli-options.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const UNIT = join(ROOT, "gpu-node", "deploy", "seventy-node.service");

/** Shell-ish words of a command line (quotes removed; enough for the documented commands). */
function words(line: string): string[] {
  return (line.match(/'[^']*'|"[^"]*"|\S+/g) ?? []).map((w) => w.replace(/^['"]|['"]$/g, ""));
}

/** Checks the words after `seventy-node` (or its script path) with the CLI's flag table for the command. */
function checkCommand(argv: string[]): string {
  const [command, ...rest] = argv;
  const options = COMMAND_OPTIONS[command!];
  if (!options) throw new Error(`unknown seventy-node command '${command}' in: ${argv.join(" ")}`);
  const end = rest.findIndex((w) => ["#", "&&", "||", "|", ";", "&"].includes(w) || w.startsWith("#"));
  const args = end < 0 ? rest : rest.slice(0, end);
  parseArgs({ args, options, strict: true, allowPositionals: command === "download" });
  return command!;
}

/** `seventy-node CMD …` lines in the sh code blocks of a Markdown text, continuations joined. */
function documentedCommands(markdown: string): string[][] {
  const out: string[][] = [];
  for (const block of markdown.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const lines = block[1]!.replace(/\\\n\s*/g, " ").split("\n");
    for (const line of lines) {
      const w = words(line);
      // The program is seventy-node (or its script run by node), after any VAR=value assignments.
      let at = 0;
      while (at < w.length && /^\w+=/.test(w[at]!)) at++;
      if (w[at] === "node" && w[at + 1]?.endsWith("/seventy-node.js")) at++;
      if (w[at] === "seventy-node" || w[at]?.endsWith("/seventy-node.js")) out.push(w.slice(at + 1));
    }
  }
  return out;
}

describe("the operations guide", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const ops = readme.slice(readme.indexOf("## Operations"), readme.indexOf("\n## ", readme.indexOf("## Operations") + 5));

  it("every seventy-node command in it parses with the CLI's flags", () => {
    const commands = documentedCommands(ops);
    const checked = commands.map(checkCommand);
    expect(new Set(checked)).toEqual(new Set(["download", "serve", "doctor"]));
    expect(commands.length).toBeGreaterThanOrEqual(5);
    // The flags a node behind a tunnel or proxy needs are among them.
    expect(commands.some((c) => c.includes("--public-url") && c.includes("--edge"))).toBe(true);
    expect(commands.some((c) => c.includes("--upstream"))).toBe(true);
  });

  it("registers each node with the URL it advertises and gives it its credential", () => {
    const blocks = [...ops.matchAll(/```sh\n([\s\S]*?)```/g)].map((b) => b[1]!.replace(/\\\n\s*/g, " "));
    const register = blocks.flatMap((b) => b.split("\n")).find((l) => /curl -X POST \S+\/admin\/nodes /.test(l));
    expect(register).toBeDefined();
    const url = /"url":"([^"]+)"/.exec(register!)![1]!;
    // A node started with --edge holds SEVENTY_NODE_CREDENTIAL and advertises the registered URL.
    const served = documentedCommands(ops).filter((c) => c[0] === "serve" && c.includes("--edge"));
    expect(served.length).toBeGreaterThanOrEqual(2);
    expect(served.some((c) => c[c.indexOf("--public-url") + 1] === url)).toBe(true);
    for (const b of blocks) for (const l of b.split("\n")) if (/seventy-node (serve|doctor) .*--edge/.test(l)) expect(l).toMatch(/^SEVENTY_NODE_CREDENTIAL=snc1\./);
    expect(readFileSync(UNIT, "utf8")).toMatch(/SEVENTY_NODE_CREDENTIAL/);
  });

  it("a misspelt flag would be caught", () => {
    expect(() => checkCommand(["serve", "--public-ur", "https://x"])).toThrow(/public-ur/);
    expect(() => checkCommand(["serve", "--model", "m", "#", "--not-checked"])).not.toThrow();
  });

  it("names the secrets the edge reads and the files it ships", () => {
    const env = readFileSync(join(ROOT, "edge", "src", "env.ts"), "utf8");
    for (const secret of ["ADMIN_TOKEN", "NODE_SECRET"]) {
      expect(ops).toContain(`wrangler secret put ${secret}`);
      expect(env).toMatch(new RegExp(`\\b${secret}\\??:`));
    }
    const example = readFileSync(join(ROOT, "gpu-node", "deploy", "node.env.example"), "utf8");
    for (const v of ["SEVENTY_NODE_CREDENTIAL=", "HF_TOKEN=", "SEVENTY_UPSTREAM_API_KEY="]) expect(example).toContain(v);
    // Nodes hold their own credential, never the edge's root secret.
    expect(example).not.toMatch(/^SEVENTY_NODE_SECRET=/m);
    expect(ops).not.toContain("SEVENTY_NODE_SECRET");
    expect(ops).toContain("gpu-node/deploy/seventy-node.service");
    expect(ops).toContain("gpu-node/deploy/node.env.example");
  });
});

describe("the systemd unit", () => {
  const unit = readFileSync(UNIT, "utf8");

  it("runs the CLI with flags it has", () => {
    const exec = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)![1]!.replace(/\\\n\s*/g, " ");
    const w = words(exec);
    expect(w[0]).toBe("/usr/bin/node");
    expect(w[1]).toBe("/opt/seventy/gpu-node/bin/seventy-node.js");
    expect(existsSync(join(ROOT, "gpu-node", "bin", "seventy-node.js"))).toBe(true);
    expect(checkCommand(w.slice(2))).toBe("serve");
    expect(unit).toMatch(/^EnvironmentFile=\/etc\/seventy\/node.env$/m);
    // Longer than the node's one-minute drain.
    expect(Number(/^TimeoutStopSec=(\d+)$/m.exec(unit)![1])).toBeGreaterThan(60);
  });

  it("passes systemd-analyze verify (where systemd is installed)", () => {
    const probe = spawnSync("systemd-analyze", ["--version"], { encoding: "utf8" });
    if (probe.error) {
      // No systemd on this machine: the flag check above still ran.
      expect((probe.error as NodeJS.ErrnoException).code).toBe("ENOENT");
      return;
    }
    const dir = mkdtempSync(join(tmpdir(), "seventy-unit-"));
    copyFileSync(UNIT, join(dir, "seventy-node.service"));
    // verify checks that ExecStart's program exists: the node binary running this test stands in.
    const r = spawnSync("systemd-analyze", ["verify", join(dir, "seventy-node.service")], { encoding: "utf8" });
    rmSync(dir, { recursive: true, force: true });
    const own = (r.stderr + r.stdout).split("\n").filter((l) => l.includes("seventy-node.service"));
    expect(own).toEqual([]);
    expect(r.status).toBe(0);
  });
});
