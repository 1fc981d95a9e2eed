/**
 * The keeper under faults on the in-process Hardhat network: a reorg that drops a block with the keeper's
 * transaction, a transaction dropped from the pool (nonce gap), a crash mid-cycle (before and after the broadcast),
 * --dry-run, the run() loop stopped by a signal, and the blocks from a price push to the rebalance being mined.
 */
import net from "node:net";
import { expect } from "chai";
import { network } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";

import { runUntilSignal } from "../../keeper/keeper";
import type { IMarginEngine, IRebalancer } from "../../typechain-types";
import { baseFee, E8, GWEI, keeper, keeperWallet, setEth, tmpDb, world, type World } from "./world";

const K10 = keeperWallet(10).address;

async function events(f: World, name: "Rebalanced" | "Liquidated", from: number) {
  const c = (name === "Rebalanced" ? f.rebalancer : f.engine) as unknown as IRebalancer & IMarginEngine;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const logs = await c.queryFilter((c.filters as any)[name](), from);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return logs as unknown as { blockNumber: number; args: Record<string, any> }[];
}

const outcomes = (r: { results: { kind: string; ids: bigint[]; outcome: string; reason?: string }[] }) =>
  r.results.map((x) => `${x.kind}:${x.ids.join(",")}:${x.outcome}${x.reason ? `:${x.reason}` : ""}`);

const head = () => network.provider.send("eth_blockNumber", []).then(Number);
const nonceOf = (who: string, tag: "latest" | "pending" = "latest") => network.provider.send("eth_getTransactionCount", [who, tag]).then(Number);
const blockHash = async (n: number) => ((await network.provider.send("eth_getBlockByNumber", ["0x" + n.toString(16), false])) as { hash: string }).hash;
const automine = (on: boolean) => network.provider.send("evm_setAutomine", [on]);
/** 0.1 gwei: every action of the tests is profitable at it. */
const calm = () => baseFee(GWEI / 10n);

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** The handler the keeper installed for `sig` (the last one registered), called in-process. */
function deliver(sig: "SIGINT" | "SIGTERM"): void {
  const h = process.listeners(sig).at(-1) as ((s: string) => void) | undefined;
  if (!h) throw new Error(`no ${sig} handler`);
  h(sig);
}

describe("keeper under faults (in-process network)", function () {
  afterEach(async () => {
    await automine(true);
  });

  describe("reorg", () => {
    /**
     * The keeper rebalances accounts 3 and 4 (shard 1/2) in block fork+1 and indexes that block; then blocks after
     * `fork` are dropped (evm_revert) and a different chain of the same height is mined.
     */
    async function reorged(onNewChain: (f: World) => Promise<void>) {
      const f = await loadFixture(world);
      const { k, lines } = await keeper(f, { over: { shard: "1/2" } });
      await calm();
      await k.cycle();
      await setEth(f, 1634n);
      await calm();
      const fork = await head();
      const snap = await network.provider.send("evm_snapshot", []);
      const r1 = await k.cycle();
      expect(outcomes(r1)).to.deep.equal(["rebalanceBatch:3,4:sent"]);
      const sent = k.store.journal();
      expect(sent.map((j) => [j.key, j.nonce, j.status, j.block])).to.deep.equal([
        ["rebalance:3", 0, "mined", fork + 1],
        ["rebalance:4", 0, "mined", fork + 1],
      ]);
      expect(outcomes(await k.cycle())).to.deep.equal([]);
      const dropped = await blockHash(fork + 1);
      expect(k.store.cursor()).to.deep.equal({ block: fork + 1, hash: dropped });

      // the reorg: fork+1 (with the keeper's transaction) is dropped; the new chain is two blocks long
      expect(await network.provider.send("evm_revert", [snap])).to.equal(true);
      await onNewChain(f);
      while ((await head()) < fork + 2) await network.provider.send("evm_mine", []);
      expect(await head()).to.equal(fork + 2);
      expect(await blockHash(fork + 1)).to.not.equal(dropped);
      expect(await network.provider.send("eth_getTransactionReceipt", [sent[0].hash])).to.equal(null);
      expect(await nonceOf(K10)).to.equal(0);
      return { f, k, lines, fork, hash: sent[0].hash };
    }

    it("detects the fork by block hash, rewinds, re-checks the dropped rebalance and sends it once more (one new transaction)", async () => {
      const { f, k, lines, fork, hash } = await reorged(async () => undefined);
      const r = await k.cycle();
      expect(lines.filter((l) => l.msg === "reorg detected: re-reading from the fork").map((l) => [l.cursor, l.fork, l.reorgedTxs])).to.deep.equal([
        [fork + 1, fork, [hash]],
      ]);
      expect(lines.filter((l) => l.msg === "reorged out and gone: the nonce is resynced and the action checked again").map((l) => l.hash)).to.deep.equal([hash]);
      expect(outcomes(r)).to.deep.equal(["rebalanceBatch:3,4:sent"]);
      expect(r.results[0].nonce).to.equal(0);
      expect(k.store.journal().map((j) => [j.key, j.nonce, j.status, j.block, j.note])).to.deep.equal([
        ["rebalance:3", 0, "dropped", null, "reorged out and not in the node's pool"],
        ["rebalance:4", 0, "dropped", null, "reorged out and not in the node's pool"],
        ["rebalance:3", 0, "mined", fork + 3, null],
        ["rebalance:4", 0, "mined", fork + 3, null],
      ]);
      // on the new chain each account is rebalanced exactly once, by the one new transaction
      const reb = await events(f, "Rebalanced", fork + 1);
      expect(reb.map((e) => [e.args.accountId, e.args.keeper, e.blockNumber])).to.deep.equal([
        [3n, K10, fork + 3],
        [4n, K10, fork + 3],
      ]);
      expect(await nonceOf(K10)).to.equal(1);
      const [h] = await f.engine.healthBatch([3n, 4n]);
      expect(h.every((x) => x >= f.policy.targetRatio)).to.equal(true);
      expect(k.store.cursor()).to.deep.equal({ block: fork + 2, hash: await blockHash(fork + 2) });
      expect(await k.metrics.registry.metrics()).to.contain("keeper_reorgs_total 1");
      expect(outcomes(await k.cycle())).to.deep.equal([]);
      expect(await nonceOf(K10)).to.equal(1);
      await k.close();
    });

    it("sends nothing when the new chain no longer needs the dropped rebalance (a competitor did it)", async () => {
      const { f, k, fork } = await reorged(async (f) => {
        await f.rebalancer.connect(f.bob).rebalanceBatch([3n, 4n]);
      });
      const r = await k.cycle();
      expect(outcomes(r)).to.deep.equal([]);
      expect(r.plan.actions).to.deep.equal([]);
      expect(k.store.journal().map((j) => [j.key, j.status])).to.deep.equal([
        ["rebalance:3", "dropped"],
        ["rebalance:4", "dropped"],
      ]);
      expect(await nonceOf(K10, "pending")).to.equal(0);
      const reb = await events(f, "Rebalanced", fork + 1);
      expect(reb.map((e) => [e.args.accountId, e.args.keeper, e.blockNumber])).to.deep.equal([
        [3n, f.bob.address, fork + 1],
        [4n, f.bob.address, fork + 1],
      ]);
      await k.close();
    });
  });

  it("a transaction dropped from the pool leaves no nonce gap: the nonce manager resyncs and the next send reuses it", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f);
    await setEth(f, 1634n);
    await calm();
    await automine(false);
    const r1 = await k.cycle();
    expect(outcomes(r1)).to.deep.equal(["liquidate:5:sent", "rebalanceBatch:1,2,3,4:sent"]);
    expect(r1.results.map((r) => r.nonce)).to.deep.equal([0, 1]);
    const lost = r1.results[0].hash!;
    expect(await network.provider.send("hardhat_dropTransaction", [lost])).to.equal(true);
    // nonce 0 is free again, nonce 1 waits behind the gap
    expect(await nonceOf(K10, "pending")).to.equal(0);

    const r2 = await k.cycle();
    expect(lines.filter((l) => l.msg === "dropped from the node's pool: the nonce is resynced and the action checked again").map((l) => [l.hash, l.nonce])).to.deep.equal([
      [lost, 0],
    ]);
    // the liquidation is still due: sent again at nonce 0 (the gap), not at 2
    expect(outcomes(r2)).to.deep.equal(["liquidate:5:sent"]);
    expect(r2.results[0].nonce).to.equal(0);
    expect(await nonceOf(K10, "pending")).to.equal(2);
    await network.provider.send("evm_mine", []);
    await automine(true);
    expect(outcomes(await k.cycle())).to.deep.equal([]);
    expect(k.store.journal().map((j) => [j.key, j.nonce, j.status])).to.deep.equal([
      ["liquidate:5", 0, "dropped"],
      ["rebalance:1", 1, "mined"],
      ["rebalance:2", 1, "mined"],
      ["rebalance:3", 1, "mined"],
      ["rebalance:4", 1, "mined"],
      ["liquidate:5", 0, "mined"],
    ]);
    expect(await nonceOf(K10)).to.equal(2);
    expect((await events(f, "Liquidated", 0)).map((e) => [e.args.accountId, e.args.liquidator])).to.deep.equal([[5n, K10]]);
    expect((await events(f, "Rebalanced", 0)).map((e) => e.args.accountId)).to.deep.equal([1n, 2n, 3n, 4n]);
    await k.close();
  });

  describe("crash mid-cycle", () => {
    it("killed after the broadcast, before the journal learns the receipt: the restarted keeper sends nothing twice", async () => {
      const f = await loadFixture(world);
      const db = tmpDb();
      const crash = () => {
        throw new Error("killed after the broadcast");
      };
      const first = await keeper(f, { db, deps: { hooks: { afterBroadcast: crash } } });
      await setEth(f, 1634n);
      await calm();
      let err: Error | undefined;
      await first.k.cycle().catch((e: Error) => (err = e));
      expect(err?.message).to.equal("killed after the broadcast");
      // the liquidation is mined (automine) but the journal still says pending; the batch was never sent
      expect(first.k.store.journal().map((j) => [j.key, j.nonce, j.status])).to.deep.equal([["liquidate:5", 0, "pending"]]);
      expect(await nonceOf(K10)).to.equal(1);
      await first.k.close();

      const second = await keeper(f, { db });
      const r = await second.k.cycle();
      expect(outcomes(r)).to.deep.equal(["rebalanceBatch:1,2,3,4:sent"]);
      expect(r.results[0].nonce).to.equal(1);
      expect(await nonceOf(K10)).to.equal(2);
      expect(outcomes(await second.k.cycle())).to.deep.equal([]);
      expect(await nonceOf(K10)).to.equal(2);
      expect(second.k.store.journal().map((j) => [j.key, j.nonce, j.status])).to.deep.equal([
        ["liquidate:5", 0, "mined"],
        ["rebalance:1", 1, "mined"],
        ["rebalance:2", 1, "mined"],
        ["rebalance:3", 1, "mined"],
        ["rebalance:4", 1, "mined"],
      ]);
      expect((await events(f, "Liquidated", 0)).length).to.equal(1);
      await second.k.close();
    });

    it("killed after journaling, before the broadcast: the restarted keeper drops the entry, re-checks and sends once", async () => {
      const f = await loadFixture(world);
      const db = tmpDb();
      const first = await keeper(f, {
        db,
        deps: {
          hooks: {
            beforeBroadcast: () => {
              throw new Error("killed before the broadcast");
            },
          },
        },
      });
      await setEth(f, 1634n);
      await calm();
      let err: Error | undefined;
      await first.k.cycle().catch((e: Error) => (err = e));
      expect(err?.message).to.equal("killed before the broadcast");
      expect(first.k.store.journal().map((j) => [j.key, j.nonce, j.status])).to.deep.equal([["liquidate:5", 0, "pending"]]);
      expect(await nonceOf(K10, "pending")).to.equal(0);
      await first.k.close();

      const second = await keeper(f, { db });
      const r = await second.k.cycle();
      expect(outcomes(r)).to.deep.equal(["liquidate:5:sent", "rebalanceBatch:1,2,3,4:sent"]);
      expect(r.results.map((x) => x.nonce)).to.deep.equal([0, 1]);
      expect(outcomes(await second.k.cycle())).to.deep.equal([]);
      expect(await nonceOf(K10)).to.equal(2);
      expect(second.k.store.journal().map((j) => [j.key, j.nonce, j.status])).to.deep.equal([
        ["liquidate:5", 0, "dropped"],
        ["liquidate:5", 0, "mined"],
        ["rebalance:1", 1, "mined"],
        ["rebalance:2", 1, "mined"],
        ["rebalance:3", 1, "mined"],
        ["rebalance:4", 1, "mined"],
      ]);
      expect((await events(f, "Liquidated", 0)).length).to.equal(1);
      await second.k.close();
    });
  });

  it("--dry-run: a cycle that finds work simulates, logs the plan, and sends nothing (nonce unchanged, journal empty)", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f, { deps: { dryRun: true } });
    await setEth(f, 1634n);
    await calm();
    const [h0] = await f.engine.healthBatch(f.ids);
    for (let i = 0; i < 2; i++) {
      const r = await k.cycle();
      expect(outcomes(r)).to.deep.equal(["liquidate:5:dry-run", "rebalanceBatch:1,2,3,4:dry-run"]);
    }
    expect(lines.filter((l) => l.msg === "plan").map((l) => [l.dryRun, l.actions])).to.deep.equal([
      [true, ["liquidate:5", "rebalanceBatch:1,2,3,4"]],
      [true, ["liquidate:5", "rebalanceBatch:1,2,3,4"]],
    ]);
    const would = lines.filter((l) => l.msg === "dry run: would send");
    expect(would.map((l) => [l.action, l.ids])).to.deep.equal([
      ["liquidate", ["5"]], ["rebalanceBatch", ["1", "2", "3", "4"]], ["liquidate", ["5"]], ["rebalanceBatch", ["1", "2", "3", "4"]],
    ]);
    // simulated: the gas of each was estimated
    for (const l of would) expect(BigInt(l.gasLimit as string) > 21_000n).to.equal(true);
    expect(await nonceOf(K10, "latest")).to.equal(0);
    expect(await nonceOf(K10, "pending")).to.equal(0);
    expect(k.store.journal()).to.deep.equal([]);
    expect((await f.engine.healthBatch(f.ids))[0]).to.deep.equal(h0);
    await k.close();
  });

  describe("run() loop", () => {
    it("processes new blocks and stops on SIGTERM within one poll interval, closing the DB and the metrics server", async () => {
      const f = await loadFixture(world);
      const port = await freePort();
      const pollIntervalMs = 300;
      const { k, lines } = await keeper(f, { over: { pollIntervalMs, metricsPort: port, shard: "1/2" } });
      await calm();
      const before = { int: process.listenerCount("SIGINT"), term: process.listenerCount("SIGTERM") };
      const loop = runUntilSignal(k);
      expect([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")]).to.deep.equal([before.int + 1, before.term + 1]);
      const h0 = await head();
      await waitFor("the first cycle", () => lines.some((l) => l.msg === "cycle done" && l.block === h0));
      await setEth(f, 1634n);
      await waitFor("the rebalance", () => k.store.journal().some((j) => j.status === "mined"));
      const h1 = await head();
      await waitFor("the cycle at the new head", () => lines.some((l) => l.msg === "cycle done" && l.block === h1));
      const hz = await fetch(`http://127.0.0.1:${port}/healthz`);
      expect(hz.status).to.equal(200);
      expect(await hz.json()).to.deep.equal({ ok: true, lastBlock: h1, staleSeconds: 120 });
      expect(k.store.journal().map((j) => [j.key, j.status])).to.deep.equal([["rebalance:3", "mined"], ["rebalance:4", "mined"]]);

      const t0 = Date.now();
      deliver("SIGTERM");
      await loop;
      const took = Date.now() - t0;
      expect(took, `stopped in ${took} ms`).to.be.lessThan(pollIntervalMs);
      expect(lines.filter((l) => l.msg === "stopping").map((l) => l.signal)).to.deep.equal(["SIGTERM"]);
      expect(lines.at(-1)!.msg).to.equal("keeper stopped");
      expect(k.store.db.open).to.equal(false);
      let refused = false;
      await fetch(`http://127.0.0.1:${port}/metrics`).catch(() => (refused = true));
      expect(refused).to.equal(true);
      expect([process.listenerCount("SIGINT"), process.listenerCount("SIGTERM")]).to.deep.equal([before.int, before.term]);
    });

    it("stops when an injected AbortSignal aborts (what the signal handlers use)", async () => {
      const f = await loadFixture(world);
      const pollIntervalMs = 300;
      const { k, lines } = await keeper(f, { over: { pollIntervalMs } });
      const ac = new AbortController();
      const loop = runUntilSignal(k, { signal: ac.signal });
      const h0 = await head();
      await waitFor("the first cycle", () => lines.some((l) => l.msg === "cycle done" && l.block === h0));
      const t0 = Date.now();
      ac.abort();
      await loop;
      expect(Date.now() - t0).to.be.lessThan(pollIntervalMs);
      expect(k.store.db.open).to.equal(false);
    });

    it("a price push is rebalanced in the next block when the keeper polls each block (latency: 1 block)", async () => {
      const f = await loadFixture(world);
      // shard 1/2: accounts 3 and 4 need a rebalance, no liquidation goes first
      const { k, lines } = await keeper(f, { over: { pollIntervalMs: 50, shard: "1/2" } });
      await calm();
      const loop = runUntilSignal(k);
      const h0 = await head();
      await waitFor("the first cycle", () => lines.some((l) => l.msg === "cycle done" && l.block === h0));
      // one block: a new ETH round (not poked); the keeper's views and its transaction read it
      await f.ethFeed.setAnswer(E8(1634n));
      const push = await head();
      await waitFor("the rebalance", () => k.store.journal().some((j) => j.status === "mined"));
      const reb = await events(f, "Rebalanced", push);
      expect(reb.map((e) => [e.args.accountId, e.args.keeper, e.blockNumber - push])).to.deep.equal([
        [3n, K10, 1],
        [4n, K10, 1],
      ]);
      deliver("SIGINT");
      await loop;
      expect(lines.filter((l) => l.msg === "stopping").map((l) => l.signal)).to.deep.equal(["SIGINT"]);
    });
  });
});
