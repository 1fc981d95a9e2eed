/**
 * The forked-mainnet suite's upstream: mainnet (MAINNET_RPC_URL set) or a local replica of it (a `hardhat node` with
 * chain id 1, seeded by lib/fork/replica.ts), and forking it — in process (hardhat_reset with forking) or in a
 * `hardhat node --fork` child process. Both modes go through the same calls; only the URL and the block differ, and
 * here both use FORK_BLOCK (the replica carries its seeded state to that block number).
 *
 * Forking quirk: Hardhat picks the EVM rules of a forked block from the hardfork history it knows for the upstream's
 * chain id. Chain id 1 has mainnet's, so a replica forked at its natural low block numbers (a few dozen) would be
 * Frontier, and Hardhat refuses to fork chain 1 before Spurious Dragon. The replica therefore carries its state to
 * block FORK_BLOCK (19,000,000: Shanghai, as on mainnet), and keeps REPLICA_SAFE_DEPTH empty blocks above it (Hardhat
 * forks chain 1 only that far below the head). Calls AT the fork block would still run under Shanghai (no MCOPY,
 * TSTORE: the 0.8.28/Cancun stand-ins could not run there), so `forkInProcess` mines one block before the first call:
 * every later call and transaction runs in a local block, under the configured hardfork. The same holds on mainnet,
 * where Ballast (Cancun: transient storage) can only run in local blocks.
 */
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { JsonRpcProvider } from "ethers";
import { network } from "hardhat";
import { reset } from "@nomicfoundation/hardhat-network-helpers";

import { FORK_BLOCK, REPLICA_DATE } from "../../lib/fork/mainnet";
import { seedReplica, type ReplicaReport } from "../../lib/fork/replica";
import { freePort, startBackground, stop, waitFor } from "../e2e/runbook";

export const ROOT = path.resolve(__dirname, "..", "..");

export interface Upstream {
  mode: "mainnet" | "replica";
  url: string;
  block: number;
  /** the replica's seeding report (replica mode) */
  replica?: ReplicaReport;
  stop(): Promise<void>;
}

/** The environment of a `hardhat node` child: chain id 1, no inherited Ballast/keeper variables, no colours. */
export function nodeEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, BALLAST_NODE_CHAIN_ID: "1", FORCE_COLOR: "0", NO_COLOR: "1", ...extra };
  for (const k of Object.keys(env)) if (k.startsWith("KEEPER_") || k === "HARDHAT_NETWORK") delete env[k];
  if (!extra.BALLAST_NODE_INITIAL_DATE) delete env.BALLAST_NODE_INITIAL_DATE;
  return env;
}

/** Starts `npx hardhat node <args>` on a free loopback port in its own process group; resolves once it answers. */
export async function startNode(args: string[], env: NodeJS.ProcessEnv, logFile: string): Promise<{ child: ChildProcess; url: string }> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = startBackground(`exec npx hardhat node --hostname 127.0.0.1 --port ${port} ${args.join(" ")}`, { cwd: ROOT, env, logFile });
  const probe = new JsonRpcProvider(url, 1, { staticNetwork: true });
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

/** The block both modes fork: FORK_BLOCK, or the FORK_BLOCK environment variable. */
export function forkBlock(): number {
  const v = process.env.FORK_BLOCK;
  if (!v) return FORK_BLOCK;
  if (!/^\d+$/.test(v)) throw new Error(`FORK_BLOCK must be a block number, not "${v}"`);
  return Number(v);
}

/** Hardhat caches a forked upstream's answers per host:port and chain id (cache/hardhat-network-fork): answers an
 *  earlier replica gave on the same port are another chain's, so they go before a new replica is forked. */
function forgetCachedAnswers(url: string) {
  const key = url.replace(/^https?:\/\//, "").replace(/\/$/, "").replace(":", "_");
  fs.rmSync(path.join(ROOT, "cache", "hardhat-network-fork", "rpc_cache", key), { recursive: true, force: true });
}

/**
 * The upstream: mainnet at the pinned block when MAINNET_RPC_URL is set; otherwise a fresh replica (a `hardhat node`
 * child with chain id 1 dated REPLICA_DATE, seeded). Logs which.
 */
export async function startUpstream(tmp: string, log: (l: string) => void): Promise<Upstream> {
  const block = forkBlock();
  const mainnet = process.env.MAINNET_RPC_URL;
  if (mainnet) {
    log(`upstream: mainnet (MAINNET_RPC_URL) at block ${block}`);
    return { mode: "mainnet", url: mainnet, block, stop: async () => undefined };
  }
  const { child, url } = await startNode([], nodeEnv({ BALLAST_NODE_INITIAL_DATE: REPLICA_DATE }), path.join(tmp, "replica-node.log"));
  try {
    forgetCachedAnswers(url);
    const t0 = Date.now();
    const replica = await seedReplica(url, () => undefined, block);
    log(`upstream: local mainnet replica at ${url} (no network), seeded in ${((Date.now() - t0) / 1000).toFixed(1)} s; fork block ${replica.block}`);
    return { mode: "replica", url, block: replica.block, replica, stop: () => stop(child, "SIGTERM") };
  } catch (e) {
    await stop(child, "SIGTERM");
    throw e;
  }
}

/** Forks `url` at `block` in process (as one forks mainnet), then mines one block (the hardfork quirk, see the header). */
export async function forkInProcess(url: string, block: number): Promise<void> {
  await reset(url, block);
  await network.provider.send("evm_mine", []);
}

/** The in-process network back to its configured state (no fork; fixtures' snapshots cleared). */
export async function restoreInProcess(): Promise<void> {
  await reset();
}

/** `hardhat node --fork <url> --fork-block-number <block>` (chain id 1) as a child process. */
export async function startForkNode(url: string, block: number, logFile: string) {
  return startNode(["--fork", url, "--fork-block-number", String(block)], nodeEnv(), logFile);
}
