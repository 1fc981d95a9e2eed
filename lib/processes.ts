/**
 * Subprocesses: a script run to its end, a background process with its output in a file (each in its own process
 * group, so it is stopped with everything it started), and a `hardhat node` of this repository on a free port — what
 * the end-to-end runbook test, the forked-mainnet suite and the keeper's scan benchmark start and stop.
 */
import { spawn, type ChildProcess } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { JsonRpcProvider } from "ethers";

/** The repository's root (where `npx hardhat node` finds hardhat.config.ts). */
export const ROOT = path.resolve(__dirname, "..");

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

/** The environment of a `hardhat node` child: chain id 1 (or `BALLAST_NODE_CHAIN_ID` as `extra` sets it), no inherited Ballast/keeper variables, no colours. */
export function nodeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BALLAST_NODE_CHAIN_ID: "1", FORCE_COLOR: "0", NO_COLOR: "1", ...extra };
  for (const k of Object.keys(env)) if (k.startsWith("KEEPER_") || k === "HARDHAT_NETWORK") delete env[k];
  if (!extra.BALLAST_NODE_INITIAL_DATE) delete env.BALLAST_NODE_INITIAL_DATE;
  return env;
}

/** Starts `npx hardhat node <args>` on a free loopback port in its own process group; resolves once it answers. */
export async function startNode(
  args: string[],
  env: NodeJS.ProcessEnv,
  logFile: string,
  chainId = 1,
): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = startBackground(`exec npx hardhat node --hostname 127.0.0.1 --port ${port} ${args.join(" ")}`, { cwd: ROOT, env, logFile });
  const probe = new JsonRpcProvider(url, chainId, { staticNetwork: true });
  try {
    await waitFor(`the node on port ${port} (log: ${logFile})`, async () => {
      if (child.exitCode !== null) throw new Error(`the node exited ${child.exitCode}:\n${fs.readFileSync(logFile, "utf8")}`);
      try {
        return (await probe.send("eth_chainId", [])) as string;
      } catch {
        return undefined;
      }
    }, 120_000, 250);
  } catch (e) {
    await stop(child, "SIGTERM");
    throw e;
  } finally {
    probe.destroy();
  }
  return { child, url };
}
