/**
 * What test/e2e/Runbook.test.ts needs to run docs/RUNBOOK.md as written: the marked blocks of the file, its
 * expected-output matcher, and subprocesses (a script that runs to its end, a background process with its output in a
 * file, each in its own process group so it can be stopped with everything it started).
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";

/**
 * The blocks of a runbook marked by a line `<!-- e2e:NAME -->` (alone on its line) right before a fenced block, by
 * NAME: the block's text with the fence's indentation removed. Command blocks are ```bash, expected outputs ```text
 * named `NAME:out`.
 */
export function parseRunbook(text: string): Map<string, { lang: string; body: string }> {
  const lines = text.split("\n");
  const out = new Map<string, { lang: string; body: string }>();
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*<!-- e2e:([\w:-]+) -->\s*$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() === "") j++;
    const fence = /^(\s*)```(\w+)\s*$/.exec(lines[j] ?? "");
    if (!fence) throw new Error(`RUNBOOK: the marker e2e:${m[1]} (line ${i + 1}) is not followed by a fenced block`);
    const indent = fence[1];
    const body: string[] = [];
    for (j++; j < lines.length && lines[j].trim() !== "```"; j++) {
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j].trimStart());
    }
    if (j >= lines.length) throw new Error(`RUNBOOK: the block of e2e:${m[1]} is not closed`);
    if (out.has(m[1])) throw new Error(`RUNBOOK: e2e:${m[1]} is marked twice`);
    out.set(m[1], { lang: fence[2], body: body.join("\n") });
    i = j;
  }
  return out;
}

/** An expected-output line as a regex: `…` matches any text, everything else literally; both sides trimmed. */
function lineRegex(line: string): RegExp {
  const parts = line.trim().split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`);
}

/**
 * The expected lines (those that are not just `…`) that `output` does not show in this order, each matching a whole
 * (trimmed) line of it. Empty when all are there.
 */
export function missingLines(output: string, expected: string): string[] {
  const got = output.split("\n").map((l) => l.trim());
  const missing: string[] = [];
  let from = 0;
  for (const line of expected.split("\n")) {
    if (line.trim() === "" || line.trim() === "…") continue;
    const re = lineRegex(line);
    const k = got.findIndex((g, idx) => idx >= from && re.test(g));
    if (k < 0) missing.push(line.trim());
    else from = k + 1;
  }
  return missing;
}

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `script` with `bash -eo pipefail` in `cwd` and waits for it (up to `timeoutMs`, then kills its group). */
export function runScript(script: string, opts: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number }): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn("bash", ["-eo", "pipefail", "-c", script], { cwd: opts.cwd, env: opts.env, detached: true, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      killGroup(child, "SIGKILL");
      reject(new Error(`timed out after ${opts.timeoutMs} ms: ${script.split("\n")[0]}\n${stdout}\n${stderr}`));
    }, opts.timeoutMs);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A long-running process (`bash -c script`), its stdout and stderr appended to `logFile`, in its own process group. */
export function startBackground(script: string, opts: { cwd: string; env: NodeJS.ProcessEnv; logFile: string }): ChildProcess {
  const fd = fs.openSync(opts.logFile, "a");
  const child = spawn("bash", ["-c", script], { cwd: opts.cwd, env: opts.env, detached: true, stdio: ["ignore", fd, fd] });
  fs.closeSync(fd);
  return child;
}

/** Signals the process group of `child` (it was spawned detached: the group is its pid). */
export function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

/** Whether the process has exited. */
export const exited = (child: ChildProcess) => child.exitCode !== null || child.signalCode !== null;

/** Stops a background process group: `signal`, then SIGKILL after `graceMs`. Resolves when the leader has exited. */
export async function stop(child: ChildProcess, signal: NodeJS.Signals = "SIGTERM", graceMs = 15_000): Promise<void> {
  const pid = child.pid;
  if (pid === undefined) return;
  killGroup(child, signal);
  // every process of the group gets the signal at once; wait for all of them (the leader may exit first)
  const end = Date.now() + graceMs;
  while (groupAlive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 100));
  if (groupAlive(pid)) killGroup(child, "SIGKILL");
  if (!exited(child)) await new Promise<void>((r) => (exited(child) ? r() : child.once("exit", () => r())));
}

/** Whether any process of the group `pgid` is still alive. */
function groupAlive(pgid: number): boolean {
  try {
    process.kill(-pgid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls `check` every `everyMs` until it returns a value other than undefined, or throws `what` after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs: number, everyMs = 250): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** A free loopback port. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, "127.0.0.1", () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
    srv.on("error", reject);
  });
}
