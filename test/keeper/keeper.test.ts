/**
 * The keeper end to end on the in-process Hardhat network: cycles run in-process with --once semantics against the
 * production engine (two-step orders), with real and fake (down, lagging) endpoints.
 */
import { expect } from "chai";
import { network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { requestOrder } from "../../lib/orders";
import type { IMarginEngine, IRebalancer } from "../../typechain-types";
import { baseFee, endpoint, GWEI, keeper, keeperWallet, setEth, tmpDb, W, world, type World, E18 } from "./world";

const K10 = keeperWallet(10).address;
const K11 = keeperWallet(11).address;

/** Events of the engine in blocks [from, latest]. */
async function events(f: World, name: "Rebalanced" | "Liquidated" | "OrderExecuted", from: number) {
  const c = (name === "Rebalanced" ? f.rebalancer : f.engine) as unknown as IRebalancer & IMarginEngine;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const logs = await c.queryFilter((c.filters as any)[name](), from);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return logs as unknown as { blockNumber: number; args: Record<string, any> }[];
}

const outcomes = (r: { results: { kind: string; ids: bigint[]; outcome: string; reason?: string }[] }) =>
  r.results.map((x) => `${x.kind}:${x.ids.join(",")}:${x.outcome}${x.reason ? `:${x.reason}` : ""}`);

describe("keeper (in-process network)", function () {
  /** 0.1 gwei: every action of the tests is profitable at it. */
  const calm = () => baseFee(GWEI / 10n);

  it("rebalances a price drop in the next blocks (health back at target) and liquidates an account under 1", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f);
    await setEth(f, 1634n);
    await calm();
    const before = await network.provider.send("eth_blockNumber", []).then(Number);
    const [h0] = await f.engine.healthBatch(f.ids);
    expect(h0.slice(0, 4).every((h) => h >= W && h < f.policy.triggerRatio)).to.equal(true);
    expect(h0[4] < W).to.equal(true);

    const r = await k.cycle();
    expect(outcomes(r)).to.deep.equal(["liquidate:5:sent", "rebalanceBatch:1,2,3,4:sent"]);
    const liq = await events(f, "Liquidated", before + 1);
    expect(liq.map((e) => [e.args.accountId, e.args.liquidator, e.args.fraction, e.blockNumber])).to.deep.equal([[5n, K10, W, before + 1]]);
    const reb = await events(f, "Rebalanced", before + 1);
    const [h1] = await f.engine.healthBatch(f.ids);
    expect(reb.map((e) => [e.args.accountId, e.args.keeper, e.args.healthBefore, e.args.healthAfter, e.blockNumber])).to.deep.equal(
      [0, 1, 2, 3].map((i) => [f.ids[i], K10, h0[i], h1[i], before + 2]),
    );
    for (const i of [0, 1, 2, 3]) expect(h1[i] >= f.policy.targetRatio && h1[i] < f.policy.targetRatio + W / 10n, `health ${h1[i]}`).to.equal(true);
    expect(await f.engine.keeperRewardsOf(K10)).to.be.greaterThan(0n);
    expect(k.store.journal().map((j) => [j.key, j.status])).to.deep.equal([
      ["liquidate:5", "mined"], ["rebalance:1", "mined"], ["rebalance:2", "mined"], ["rebalance:3", "mined"], ["rebalance:4", "mined"],
    ]);
    expect(lines.filter((l) => l.msg === "mined").length).to.equal(2);
    // the next cycle finds nothing to do
    expect(outcomes(await k.cycle())).to.deep.equal([]);
    expect(k.metrics.healthy(120)).to.equal(true);
    expect(await k.metrics.registry.metrics()).to.contain(`keeper_actions_total{kind="rebalanceBatch",outcome="sent"} 1`);
    await k.close();
  });

  it("executes a pending order at the first round after the request, not before", async () => {
    const f = await loadFixture(world);
    const { k } = await keeper(f);
    await calm();
    const { orderId } = await requestOrder(f.engine, f.alice, { accountId: 1n, marketId: f.ethMarket, sizeDelta: -E18(1) });
    const r1 = await k.cycle();
    expect(outcomes(r1)).to.deep.equal([]);
    expect(r1.plan.waits).to.deep.equal([{ key: `order:${orderId}`, reason: "not ready: no oracle round after the request yet" }]);
    const [, answer] = await f.ethFeed.latestRoundData();
    await f.ethFeed.setAnswer(answer);
    const from = (await network.provider.send("eth_blockNumber", []).then(Number)) + 1;
    const r2 = await k.cycle();
    expect(outcomes(r2)).to.deep.equal([`executeOrder:${orderId}:sent`]);
    const ex = await events(f, "OrderExecuted", from);
    expect(ex.map((e) => [e.args.orderId, e.args.accountId, e.args.keeper, e.args.price])).to.deep.equal([[orderId, 1n, K10, 2000n * W]]);
    expect(await f.engine.pendingOrders(1n)).to.deep.equal([]);
    expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(9));
    expect(outcomes(await k.cycle())).to.deep.equal([]);
    await k.close();
  });

  it("two keepers on shards 0/2 and 1/2 never act on the same account", async () => {
    const f = await loadFixture(world);
    const a = await keeper(f, { wallet: 10, over: { shard: "0/2" } });
    const b = await keeper(f, { wallet: 11, over: { shard: "1/2" } });
    await setEth(f, 1634n);
    await calm();
    const from = (await network.provider.send("eth_blockNumber", []).then(Number)) + 1;
    // ids 1, 2, 5 hash to shard 0; 3, 4 to shard 1
    expect(outcomes(await a.k.cycle())).to.deep.equal(["liquidate:5:sent", "rebalanceBatch:1,2:sent"]);
    expect(outcomes(await b.k.cycle())).to.deep.equal(["rebalanceBatch:3,4:sent"]);
    expect(outcomes(await a.k.cycle())).to.deep.equal([]);
    expect(outcomes(await b.k.cycle())).to.deep.equal([]);
    const reb = await events(f, "Rebalanced", from);
    expect(reb.map((e) => [e.args.accountId, e.args.keeper])).to.deep.equal([[1n, K10], [2n, K10], [3n, K11], [4n, K11]]);
    expect((await events(f, "Liquidated", from)).map((e) => [e.args.accountId, e.args.liquidator])).to.deep.equal([[5n, K10]]);
    await a.k.close();
    await b.k.close();
  });

  it("a restart resumes from the cursor and never sends twice (journal)", async () => {
    const f = await loadFixture(world);
    const db = tmpDb();
    const first = await keeper(f, { db });
    await calm();
    await first.k.cycle();
    const cursor = first.k.store.cursor()!;
    await setEth(f, 1634n);
    await calm();
    await network.provider.send("evm_setAutomine", [false]);
    try {
      // sent, not mined: then the keeper dies
      expect(outcomes(await first.k.cycle())).to.deep.equal(["liquidate:5:sent", "rebalanceBatch:1,2,3,4:sent"]);
      await first.k.close();
      const second = await keeper(f, { db });
      expect(second.k.store.cursor()!.block >= cursor.block).to.equal(true);
      const r = await second.k.cycle();
      // the same actions are still due on chain, but already pending in the journal: nothing is sent
      expect(outcomes(r)).to.deep.equal([]);
      expect(r.plan.actions).to.deep.equal([]);
      expect(await network.provider.send("eth_getTransactionCount", [K10, "pending"])).to.equal("0x2");
      await network.provider.send("evm_mine", []);
      await network.provider.send("evm_setAutomine", [true]);
      expect(outcomes(await second.k.cycle())).to.deep.equal([]);
      expect(second.k.store.journal().map((j) => [j.key, j.nonce, j.status])).to.deep.equal([
        ["liquidate:5", 0, "mined"], ["rebalance:1", 1, "mined"], ["rebalance:2", 1, "mined"], ["rebalance:3", 1, "mined"], ["rebalance:4", 1, "mined"],
      ]);
      expect((await f.engine.healthBatch(f.ids))[0].slice(0, 4).every((h) => h >= f.policy.targetRatio)).to.equal(true);
      await second.k.close();
    } finally {
      await network.provider.send("evm_setAutomine", [true]);
    }
  });

  it("does not send an action whose simulation reverts", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f);
    await calm();
    await k.cycle();
    const nonce = await network.provider.send("eth_getTransactionCount", [K10, "latest"]);
    const act = { ids: [1n], targets: [{ key: "liquidate:1", round: "0" }], valueUsd: W, costUsd: 0n, gas: 1 };
    expect(await k.executor.execute({ kind: "liquidate", ...act })).to.deep.include({ outcome: "benign", reason: "NotLiquidatable" });
    // a market oracle gone stale: the revert is not benign, still nothing is sent
    await time.increase(3 * 3600);
    const r = await k.executor.execute({ kind: "rebalance", ...act, targets: [{ key: "rebalance:1", round: "0" }] });
    expect(r.outcome).to.equal("reverted");
    expect(r.reason).to.equal("OracleUnhealthy");
    expect(await network.provider.send("eth_getTransactionCount", [K10, "latest"])).to.equal(nonce);
    expect(k.store.journal()).to.deep.equal([]);
    expect(lines.filter((l) => l.msg === "simulation reverted: not sent").map((l) => l.reason)).to.deep.equal(["OracleUnhealthy"]);
    await k.close();
  });

  it("a competing keeper that wins is a benign no-op, logged", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f);
    await setEth(f, 1634n);
    await calm();
    const { plan } = await k.prepare();
    expect(plan.actions.map((a) => a.kind)).to.deep.equal(["liquidate", "rebalanceBatch"]);
    // the competitor gets there first
    await f.engine.connect(f.bob).liquidate(5n);
    await f.rebalancer.connect(f.bob).rebalanceBatch(f.ids.slice(0, 4));
    const results = await k.execute(plan);
    expect(outcomes({ results })).to.deep.equal([
      "liquidate:5:benign:NotLiquidatable",
      "rebalanceBatch:1,2,3,4:benign:NothingToRebalance (the batch would rebalance no account)",
    ]);
    expect(lines.filter((l) => String(l.msg).includes("benign no-op")).map((l) => l.reason)).to.deep.equal([
      "NotLiquidatable",
      "NothingToRebalance (the batch would rebalance no account)",
    ]);
    expect(await network.provider.send("eth_getTransactionCount", [K10, "latest"])).to.equal("0x0");
    await k.close();
  });

  it("fails over from a primary RPC that is down to the second", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f, { endpoints: [endpoint("down", { down: true }), endpoint("second")] });
    await setEth(f, 1650n);
    await calm();
    expect(outcomes(await k.cycle())).to.deep.equal(["liquidate:5:sent"]);
    expect(k.pool.current()).to.equal("second");
    expect(lines.filter((l) => l.msg === "rpc endpoint failed; backing off").map((l) => [l.endpoint, l.failures])).to.deep.equal([["down", 1]]);
    await k.close();
  });

  it("does not trust an RPC lagging more than maxLagBlocks behind the best", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f, { endpoints: [endpoint("lagging", { lag: 5 }), endpoint("good")], over: { maxLagBlocks: 2 } });
    await setEth(f, 1650n);
    await calm();
    const head = await network.provider.send("eth_blockNumber", []).then(Number);
    const r = await k.cycle();
    expect(r.block).to.equal(head);
    expect(k.pool.trusted()).to.deep.equal([1]);
    expect(k.pool.current()).to.equal("good");
    expect(outcomes(r)).to.deep.equal(["liquidate:5:sent"]);
    expect(lines.filter((l) => l.msg === "rpc endpoint lags: not trusted").map((l) => [l.endpoint, l.head, l.best])[0]).to.deep.equal(["lagging", head - 5, head]);
    await k.close();
  });

  it("waits through a gas spike while unprofitable and acts once the fee covers the cost", async () => {
    const f = await loadFixture(world);
    const { k } = await keeper(f, { over: { shard: "1/2" } }); // accounts 3 and 4 (no liquidation in this shard)
    await setEth(f, 1634n);
    await baseFee(200n * GWEI);
    const r1 = await k.cycle();
    expect(outcomes(r1)).to.deep.equal([]);
    // fee = min(50, 1 + 600k × 200 gwei × 1,634) = 50 USD; gas = 500k × 200 gwei × 1,634 = 163.40 USD
    expect(r1.plan.waits).to.deep.equal([3n, 4n].map((id) => ({
      key: `rebalance:${id}`,
      reason: "unprofitable: fee 50.00 USD < gas 163.40 USD + min profit 0.00 USD at base fee 200 gwei",
    })));
    expect(await network.provider.send("eth_getTransactionCount", [K10, "latest"])).to.equal("0x0");
    await baseFee(GWEI);
    const r2 = await k.cycle();
    expect(r2.plan.waits).to.deep.equal([]);
    expect(outcomes(r2)).to.deep.equal(["rebalanceBatch:3,4:sent"]);
    await k.close();
  });

  it("replaces a stuck transaction at the same nonce with a fee bumped by bumpPercent", async () => {
    const f = await loadFixture(world);
    const { k, lines } = await keeper(f, { over: { stuckAfterMs: 0 } });
    await setEth(f, 1650n);
    await calm();
    await network.provider.send("evm_setAutomine", [false]);
    try {
      expect(outcomes(await k.cycle())).to.deep.equal(["liquidate:5:sent"]);
      const j = k.store.journal();
      expect(j.map((r) => [r.key, r.nonce, r.status])).to.deep.equal([["liquidate:5", 0, "replaced"], ["liquidate:5", 0, "pending"]]);
      expect(j[1].maxFeePerGas).to.equal((j[0].maxFeePerGas * 115n + 99n) / 100n);
      expect(j[1].priorityFee).to.equal((j[0].priorityFee * 115n + 99n) / 100n);
      expect(lines.filter((l) => l.msg === "stuck: replaced at the same nonce with a bumped fee").length).to.equal(1);
      await network.provider.send("evm_mine", []);
      await network.provider.send("evm_setAutomine", [true]);
      await k.cycle();
      expect(k.store.journal().map((r) => [r.hash, r.status])).to.deep.equal([[j[0].hash, "dropped"], [j[1].hash, "mined"]]);
      const [liq] = await events(f, "Liquidated", 0);
      expect(liq.args.liquidator).to.equal(K10);
    } finally {
      await network.provider.send("evm_setAutomine", [true]);
    }
    await k.close();
  });

  it("serves /metrics and /healthz (503 once no new block was processed for healthzStaleSeconds)", async () => {
    const f = await loadFixture(world);
    const { k } = await keeper(f);
    const server = await k.metrics.serve(0, 120);
    const port = (server.address() as { port: number }).port;
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).to.equal(503);
    const r = await k.cycle();
    const h = await fetch(`http://127.0.0.1:${port}/healthz`);
    expect(h.status).to.equal(200);
    expect(await h.json()).to.deep.equal({ ok: true, lastBlock: r.block, staleSeconds: 120 });
    // the first cycle built the health mirror: one BallastLens call read the five accounts
    expect(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text())
      .to.contain(`keeper_last_block ${r.block}`)
      .and.contain("keeper_mirror_calls_total 1")
      .and.contain("keeper_mirror_reads_total 5");
    expect(k.metrics.healthy(120, Date.now() + 121_000)).to.equal(false);
    await new Promise((res) => server.close(res));
    await k.close();
  });
});
