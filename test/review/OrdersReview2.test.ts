/**
 * Adversarial re-review of 4213d54 (fixes D1-D6 of OrdersReview.test.ts). Each test is an attack on the production
 * MarginEngine (productionFixture). Tests named "fixed (Nn):" failed on 4213d54 and assert the behaviour of the fix
 * (the fill round must also be published after the request; another phase or feed is not searched; a dead feed
 * cannot hold an order past its deadline); the others are regression tests of attacks the code resisted. Two more
 * findings of this review: an LP who traded could fail his own fill's open-interest check by withdrawing capital (N3,
 * fixed since: pending orders reserve open interest at the request, OrdersReviewN3.test.ts), and a REDUCE policy
 * nobody is paid to run is a standing option for its owner to close at the current round when he likes (N5, fixed
 * since: a REDUCE acts only while its keeper is paid in full, so keepers run it at the first block it may act).
 */
import { expect } from "chai";
import { ethers, network } from "hardhat";
import type { ContractTransactionResponse } from "ethers";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { USDC, E18, E8 } from "../helpers/fixtures";
import { FEE, HOUR, MAX, sel, base, at, ethRound, btcRound, request, openAt, conserved, type F } from "../helpers/orders";
import { ACTION, CRYPTO_FEED, DEFAULT_REBALANCER, MAJOR_MARKET, policyRatio, wad } from "../../deploy/params";
import { pinBaseFee } from "../helpers/rebalance";
import { MockAggregator__factory, NoHistoryAggregator__factory, type IMarginEngine } from "../../typechain-types";

/** Executes `id` as the keeper; returns the settling event (OrderExecuted / OrderCancelled) as parsed. */
async function settleOrder(f: F, id: bigint) {
  const rc = await (await f.engine.connect(f.keeper).executeOrder(id)).wait();
  const evs = rc!.logs.map((l) => { try { return f.engine.interface.parseLog(l); } catch { return null; } });
  return evs.find((e) => e?.name === "OrderExecuted" || e?.name === "OrderCancelled")!;
}
/** Alice: 1,000 USDC margin, 10 ETH long at 2,000, 1,000 USDC reserve, ETH IM volatility floor 0. */
async function levered() {
  const f = await base();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, imVolFloor: 0n, maxFundingRate: 0n });
  await f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(9_000));
  await f.vault.connect(f.alice).deposit(1, f.usdc, USDC(1_000));
  await openAt(f, f.ethMarket, E18(10), 2000);
  return f;
}
const reduceOnlyPolicy = (health: bigint, maxFeeUsd: bigint) => ({
  actions: ACTION.REDUCE, cooldown: 0, triggerRatio: policyRatio(health), targetRatio: policyRatio(health) + wad("1"), releaseRatio: 0n, maxFeeUsd, topUpAssets: [],
});

describe("Re-review of 4213d54: orders and owner-as-keeper", () => {
  describe("claim 1: the trader cannot pick his fill price", () => {
    it("fixed (N1): a proxy phase change to an aggregator with history never fills at a round published before the request", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(4));
      expect((await f.engine.order(id)).afterRound).to.equal(1n); // phase 0, round 1
      // confirmAggregator: phase 1 is an aggregator that has run for a day (as Chainlink deploys them). Its round 1,
      // 1,500 a day before the request, was public (proposedGetRoundData) before the trader asked.
      const P = 1n << 64n;
      await at(t + 5);
      await f.ethFeed.setRound(P | 1n, E8(1500), t - 86_400, t - 86_400);
      await at(t + 6);
      await f.ethFeed.setRound(P | 700n, E8(2000), t + 6, t + 6);
      const ev = await settleOrder(f, id); // 4213d54: OrderExecuted at 1,500, roundUpdatedAt t - 1 day (+2,000 USD at once)
      // Correct: never a fill at a round older than the request (cancel, or the first round of the phase after it).
      if (ev.name === "OrderExecuted") expect(ev.args[4]).to.be.greaterThanOrEqual(BigInt(t));
    });

    it("fixed (N2): after governance replaces the market's feed, the order is not priced from the new feed's old history", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(4));
      // The new feed (another proxy, its own numbering): round 2 is a month old, 1,200.
      const feed = await new MockAggregator__factory(f.deployer).deploy(8);
      await feed.setRound(2n, E8(1200), t - 30 * 86_400, t - 30 * 86_400);
      await feed.setRound(90n, E8(2000), t - 20, t - 20);
      await at(t + 30);
      await f.oracle.setFeed(await f.weth.getAddress(), { feed: await feed.getAddress(), ...CRYPTO_FEED });
      const ev = await settleOrder(f, id); // 4213d54: OrderExecuted at 1,200, a month-old round (+3,200 USD at once)
      if (ev.name === "OrderExecuted") expect(ev.args[4]).to.be.greaterThanOrEqual(BigInt(t));
    });

    it("a round mined in the request's block before it is the recorded round, never the fill; the one after it is", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const gas = (tip: bigint) => ({ gasLimit: 1_000_000, maxPriorityFeePerGas: tip, maxFeePerGas: 100_000_000_000n });
      await network.provider.send("evm_setAutomine", [false]);
      let txs: ContractTransactionResponse[];
      try {
        txs = [
          await f.ethFeed.setAnswer(E8(2100), gas(5_000_000_000n)), // seen by the trader (same block, first)
          await f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + HOUR, false, gas(3_000_000_000n)),
          await f.btcFeed.setAnswer(E8(31_000), gas(2_000_000_000n)),
        ];
        await network.provider.send("evm_mine", [t]);
      } finally {
        await network.provider.send("evm_setAutomine", [true]);
      }
      const rcs = await Promise.all(txs.map((x) => x.wait()));
      expect(rcs.map((r) => r!.blockNumber)).to.deep.equal(Array(3).fill(rcs[0]!.blockNumber));
      expect(rcs[0]!.index).to.be.lessThan(rcs[1]!.index);
      expect((await f.engine.order(1)).afterRound).to.equal(2n);
      await expect(f.engine.connect(f.alice).executeOrder(1)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(1n, 2n);
      await ethRound(f, 2050, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderExecuted").withArgs(1n, 1n, f.keeper.address, E18(2050), t + 5);
    });

    it("a feed without history: the owed round, once passed over, cancels (OrderRoundUnavailable), never a later price", async () => {
      const f = await loadFixture(base);
      const feed = await new NoHistoryAggregator__factory(f.deployer).deploy(8);
      const t = (await time.latest()) + 10;
      await feed.setRound(5n, E8(2000), t - 5, t - 5);
      await f.oracle.setFeed(await f.weth.getAddress(), { feed: await feed.getAddress(), ...CRYPTO_FEED });
      const id = await request(f, t, f.ethMarket, E18(1));
      await at(t + 10);
      await feed.setRound(6n, E8(1950), t + 10, t + 10); // the fill round; no one executes before the next
      await at(t + 20);
      await feed.setRound(7n, E8(2100), t + 20, t + 20);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderRoundUnavailable"));
      expect((await f.engine.position(1, f.ethMarket)).size).to.equal(0n);
    });

    it("collateral whose oracle is down, posted after an adverse fill round, counts as zero: the fill is not stalled into expiry", async () => {
      const f = await loadFixture(base);
      await f.wbtc.mint(f.alice.address, 1_000n);
      await f.wbtc.connect(f.alice).approve(f.vault, 1_000n);
      const t = (await time.latest()) + 2 * HOUR + 100; // BTC's last round is older than its 2 h heartbeat
      await ethRound(f, 2000, t - 50);
      const id = await request(f, t, f.ethMarket, E18(10), { deadline: t + 60 });
      await ethRound(f, 2000, t + 10); // the fill round
      await ethRound(f, 1900, t + 20); // the market moves on: a fill at 2,000 costs 1,000 USD
      await at(t + 30);
      await f.vault.connect(f.alice).depositMargin(1, f.wbtc, 1_000n);
      await f.vault.connect(f.alice).postMargin(1, f.usdc, USDC(1)).catch(() => undefined);
      await at(t + 61); // past the deadline: only an unhealthy oracle the fill needs would expire it
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(2000), t + 10);
      expect((await f.engine.position(1, f.ethMarket)).size).to.equal(E18(10));
      await conserved(f, [1n]);
    });

    it("fixed (N4): a market feed that reverts does not hold a risk order, and the margin of an account without positions, past the deadline", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 });
      await f.ethFeed.setReverting(true); // a deprecated / broken feed
      await at(t + HOUR);
      // Correct (README INV_EXIT: no position, no debt -> everything can leave whatever the oracles say): past its
      // deadline the order expires, then the margin is released.
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      await expect(f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(10_000))).to.emit(f.vault, "MarginReleased");
    });
  });

  describe("claim 2: the owner as keeper gets no REDUCE at a price he already knows", () => {
    it("a REDUCE waits for a round of every held market after the owner's last act; a held feed that does not update blocks it, not liquidation", async () => {
      const f = await loadFixture(levered);
      const t0 = await openAt(f, f.btcMarket, E18(1) / 100n, 30_000);
      const h = (await f.engine.accountState(1)).health;
      const t = t0 + 10;
      await at(t);
      await f.engine.connect(f.alice).setRebalancePolicy(1, reduceOnlyPolicy(h + wad("0.5"), wad("50")));
      await ethRound(f, 2000, t + 10); // ETH has a later round, BTC does not
      let [, , plan] = await f.rebalancer.needsRebalance(1);
      expect(plan.action).to.equal(0n);
      await expect(f.rebalancer.connect(f.keeper).rebalance(1)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      // An operator's dust withdrawal stamps again: a BTC round after it is needed, and an ETH one too.
      await f.vault.connect(f.alice).setOperator(1, f.bob.address, true);
      await at(t + 20);
      await f.vault.connect(f.bob).withdraw(1, f.usdc, 1n, f.bob.address);
      await btcRound(f, 30_000, t + 30);
      [, , plan] = await f.rebalancer.needsRebalance(1);
      expect(plan.action).to.equal(0n);
      await ethRound(f, 2000, t + 40);
      [, , plan] = await f.rebalancer.needsRebalance(1);
      expect(plan.action).to.equal(BigInt(ACTION.REDUCE));
      // Stamp again; ETH then crashes with no BTC round: no REDUCE, no rescue, but the liquidation is there.
      await at(t + 50);
      await f.vault.connect(f.alice).withdraw(1, f.usdc, 1n, f.alice.address);
      await ethRound(f, 1920, t + 60);
      expect((await f.engine.accountState(1)).health).to.be.lessThan(wad("1"));
      await expect(f.rebalancer.connect(f.keeper).rebalance(1)).to.be.revertedWithCustomError(f.rebalancer, "Liquidatable");
      await expect(f.engine.connect(f.keeper).liquidate(1)).to.emit(f.engine, "Liquidated");
    });

    it("fixed (N5): a REDUCE acts only while its keeper is paid in full — one nobody is paid to run is not the owner's option", async () => {
      const f = await loadFixture(levered);
      const h = (await f.engine.accountState(1)).health;
      // Uncapped keeper fee at a 1 gwei base fee, ETH 2,000: 1 USD + 600,000 gas × 1 gwei × 2,000 USD = 2.2 USD.
      const GWEI = 10n ** 9n;
      const uncapped = DEFAULT_REBALANCER.baseFeeUsd + (BigInt(DEFAULT_REBALANCER.gasUnits) * GWEI * E18(2000)) / E18(1);
      expect(uncapped).to.equal(wad("2.2"));
      let t = (await time.latest()) + 10;
      await at(t);
      // maxFeeUsd 0: the trigger is above health, a round comes after the policy — and still no REDUCE, for anyone
      await f.engine.connect(f.alice).setRebalancePolicy(1, reduceOnlyPolicy(h + wad("0.5"), 0n));
      await ethRound(f, 2000, t + 10);
      await pinBaseFee(GWEI);
      await expect(f.rebalancer.connect(f.alice).rebalance(1, { maxFeePerGas: 2n * GWEI })).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      // maxFeeUsd exactly the fee at 1 gwei: one wei of base fee more and the keeper would be short — no REDUCE
      t = (await time.latest()) + 10;
      await at(t);
      await f.engine.connect(f.alice).setRebalancePolicy(1, reduceOnlyPolicy(h + wad("0.5"), uncapped));
      await ethRound(f, 2000, t + 10);
      await pinBaseFee(GWEI + 1n);
      await expect(f.rebalancer.connect(f.alice).rebalance(1, { maxFeePerGas: 2n * GWEI })).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      // at 1 gwei it is paid in full: any keeper runs it at once (here the owner), fee 2.2 USD
      await pinBaseFee(GWEI);
      const before = await f.engine.keeperRewardsOf(f.alice.address);
      await expect(f.rebalancer.connect(f.alice).rebalance(1, { maxFeePerGas: 2n * GWEI })).to.emit(f.rebalancer, "Rebalanced");
      expect((await f.engine.keeperRewardsOf(f.alice.address)) - before).to.equal(USDC(22) / 10n);
      expect((await f.engine.position(1, f.ethMarket)).size).to.be.lessThan(E18(10));
    });

    it("levers that do not stamp cannot lower health: a stranger's deposit and margin deposit, settle, an LP withdrawal", async () => {
      const f = await loadFixture(levered);
      await f.engine.connect(f.alice).setRebalancePolicy(1, reduceOnlyPolicy(wad("1.2"), wad("50")));
      const before = await f.engine.accountState(1);
      await f.usdc.mint(f.bob.address, USDC(100));
      await f.usdc.connect(f.bob).approve(f.vault, USDC(100));
      await f.vault.connect(f.bob).deposit(1, f.usdc, USDC(50));
      await f.vault.connect(f.bob).depositMargin(1, f.usdc, USDC(50));
      await f.engine.connect(f.bob).settle(1);
      await time.increase(1_000); // past the LP's hold period
      await f.pool.connect(f.lp).withdraw(USDC(100_000), f.lp.address, f.lp.address);
      const after = await f.engine.accountState(1);
      expect(after.health).to.be.greaterThan(before.health);
      expect(after.maintenanceMargin).to.equal(before.maintenanceMargin);
      expect(after.equity - before.equity).to.equal(wad("50"));
    });
  });

  describe("claim 3: liveness and money", () => {
    it("with a risk order pending: a reduce-only close fills, a release waits (OrderPending) until the order settles; USDC conserved", async () => {
      const f = await loadFixture(base);
      const t0 = await openAt(f, f.btcMarket, E18(1) / 10n, 30_000);
      const t = t0 + 10;
      const risk = await request(f, t, f.ethMarket, E18(2), { deadline: t + 60 });
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, risk);
      const close = await request(f, t + 2, f.btcMarket, -E18(1), { reduceOnly: true });
      await expect(f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(1)))
        .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, risk);
      await btcRound(f, 30_100, t + 10);
      await expect(f.engine.connect(f.keeper).executeOrder(close))
        .to.emit(f.engine, "OrderExecuted").withArgs(close, 1n, f.keeper.address, E18(30_100), t + 10);
      expect((await f.engine.position(1, f.btcMarket)).size).to.equal(0n);
      await conserved(f, [1n]);
      await at(t + 61); // no ETH round came: the risk order expires, the release goes through
      await expect(f.engine.connect(f.keeper).executeOrder(risk))
        .to.emit(f.engine, "OrderCancelled").withArgs(risk, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      const m = await f.vault.marginOf(1, f.usdc);
      await expect(f.vault.connect(f.alice).releaseMargin(1, f.usdc, m)).to.emit(f.vault, "MarginReleased").withArgs(1n, await f.usdc.getAddress(), m);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(3n * FEE); // the open, the close, the expiry
      await conserved(f, [1n]);
    });
  });
});
