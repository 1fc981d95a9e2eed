/**
 * Adversarial review of 16b4b2c (two-step orders). Each test is an attack by a trader, a keeper or an account owner
 * acting as keeper, on the production MarginEngine (productionFixture). Tests named "fixed (Dn):" are the review's
 * defects: each failed on 16b4b2c and asserts the behaviour the fix gives (README "Orders": the fill round is the one
 * after the feed's latest at the request, by id; one order that may add risk at a time and no margin release under
 * it; IM as of the fill round; a REDUCE only on a round after the owner's last action; an order whose fill cannot be
 * judged past its deadline expires). The others are regression tests of attacks the code resisted.
 */
import { expect } from "chai";
import { ethers, network } from "hardhat";
import type { ContractTransactionResponse } from "ethers";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";

import { USDC, E18, E8 } from "../helpers/fixtures";
import { FEE, HOUR, MAX, sel, base, at, ethRound, btcRound, request, openAt, conserved, floorIm, type F } from "../helpers/orders";
import { mulDivUp } from "../../lib/margin";
import { ACTION, MAJOR_MARKET, policyRatio, wad } from "../../deploy/params";
import { STATUS } from "../helpers/rebalance";
import type { IMarginEngine } from "../../typechain-types";

const sorted = (xs: bigint[]) => [...xs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));

/** Alice: 1,000 USDC margin, 10 ETH long at 2,000, 1,000 USDC reserve, TOP_UP|REDUCE policy trigger 2 / target 3
 *  (USDC top-up). ETH IM volatility floor 0 (as in the author's "guarded" setup), no funding. */
async function guarded() {
  const f = await base();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, imVolFloor: 0n, maxFundingRate: 0n });
  await f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(9_000));
  await f.vault.connect(f.alice).deposit(1, f.usdc, USDC(1_000));
  await openAt(f, f.ethMarket, E18(10), 2000);
  await f.engine.connect(f.alice).setRebalancePolicy(1, {
    actions: ACTION.TOP_UP | ACTION.REDUCE, cooldown: 0, triggerRatio: wad("2"), targetRatio: wad("3"),
    releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [await f.usdc.getAddress()],
  });
  return f;
}

describe("Review of 16b4b2c: two-step orders", () => {
  describe("claim 1: the fill round is after the request and not the trader's choice", () => {
    it("a round mined in the request's own block, after the request, is not the fill round (its updatedAt is not later)", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      await network.provider.send("evm_setAutomine", [false]);
      let req: ContractTransactionResponse, rnd: ContractTransactionResponse;
      try {
        req = await f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + HOUR, false,
          { gasLimit: 1_000_000, maxPriorityFeePerGas: 3_000_000_000n, maxFeePerGas: 100_000_000_000n });
        rnd = await f.ethFeed.setAnswer(E8(2100), { gasLimit: 300_000, maxPriorityFeePerGas: 1_000_000_000n, maxFeePerGas: 100_000_000_000n });
        await network.provider.send("evm_mine", [t]);
      } finally {
        await network.provider.send("evm_setAutomine", [true]);
      }
      const [r1, r2] = [await req.wait(), await rnd.wait()];
      expect(r1!.blockNumber).to.equal(r2!.blockNumber);
      expect(r1!.index).to.be.lessThan(r2!.index);
      const [latest] = await f.ethFeed.latestRoundData();
      expect((await f.engine.order(1)).afterRound).to.equal(latest - 1n);
      expect((await f.ethFeed.latestRoundData())[3]).to.equal(BigInt(t));
      await expect(f.engine.connect(f.keeper).executeOrder(1)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(1n, latest - 1n);
      await ethRound(f, 2050, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderExecuted").withArgs(1n, 1n, f.keeper.address, E18(2050), t + 5);
    });

    it("a proxy phase change: the next id in the request's phase if it exists, else no fill (OrderRoundUnavailable)", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1));
      await ethRound(f, 2005, t + 5); // the next round of phase 0, after the request
      const P = 1n << 64n;
      await at(t + 10);
      await f.ethFeed.setRound(P | 1n, E8(2010), t + 10, t + 10);
      await at(t + 20);
      await f.ethFeed.setRound(P | 2n, E8(2020), t + 20, t + 20);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(2005), t + 5);
      // Requested at phase 1's second round: the feed moves to phase 2 (a new aggregator, with a history of its own)
      // before phase 1 has a third. Nothing in phase 2 is owed to the order: it is cancelled, never priced there.
      const id2 = await request(f, t + 30, f.ethMarket, -E18(1), { reduceOnly: true });
      await at(t + 40);
      await f.ethFeed.setRound((2n * P) | 1n, E8(2030), t + 40, t + 40);
      await at(t + 50);
      await f.ethFeed.setRound((2n * P) | 2n, E8(2040), t + 50, t + 50);
      await expect(f.engine.connect(f.keeper).executeOrder(id2))
        .to.emit(f.engine, "OrderCancelled").withArgs(id2, 1n, f.keeper.address, sel(f.engine, "OrderRoundUnavailable"));
    });

    it("16 rounds after the request, a late execution still fills at the first of them", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1));
      for (let i = 0; i < 16; i++) await ethRound(f, 2000 + 10 * i, t + 10 * (i + 1));
      await expect(f.engine.connect(f.alice).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.alice.address, E18(2000), t + 10);
    });

    it("fixed (D3): after 17+ rounds the fill round does not slide: the executor cannot pick a later, public price", async () => {
      // orderFee is 0 as deployed (deploy/system.ts never sets it): the trader is the only one paid to execute.
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1));
      for (let i = 0; i < 17; i++) await ethRound(f, 2000 + 10 * i, t + 10 * (i + 1));
      await expect(f.engine.connect(f.alice).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.alice.address, E18(2000), t + 10);
    });

    it("fixed (D5): a round already on chain at the request (updatedAt stamped ahead of block time) is never the fill round", async () => {
      const f = await loadFixture(base);
      const t0 = (await time.latest()) + 10;
      const [rid] = await f.ethFeed.latestRoundData();
      await at(t0);
      await f.ethFeed.setRound(rid + 1n, E8(2100), t0 + 100, t0 + 100); // public from t0 on
      // An order that may add risk needs a price at its request (its open interest is reserved against the cap,
      // finding N3): none while the latest round is stamped ahead. A reduce-only order needs none, and its fill round
      // is chosen by the same rule.
      await at(t0 + 1);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t0 + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(await f.weth.getAddress());
      const id = await request(f, t0 + 2, f.ethMarket, E18(1), { reduceOnly: true });
      await at(t0 + 100);
      await expect(f.engine.connect(f.alice).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(id, rid + 1n);
    });

    it("fixed (D1): after seeing the fill round the owner cannot cancel his increase by releasing margin", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(10));
      await ethRound(f, 2000, t + 10); // the fill round
      await ethRound(f, 1900, t + 20); // the market moves on: a fill at 2,000 is a 1,000 USD loss
      await f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(10_000)).catch(() => undefined);
      await expect(f.engine.connect(f.alice).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.alice.address, E18(2000), t + 10);
    });

    it("fixed (D1): after seeing the fill round the owner cannot cancel his increase by setting a REDUCE trigger at today's health", async () => {
      const f = await loadFixture(base);
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, imVolFloor: 0n, maxFundingRate: 0n });
      await f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(9_000));
      const t = await openAt(f, f.ethMarket, E18(10), 2000);
      const id = await request(f, t, f.ethMarket, E18(5));
      await ethRound(f, 2000, t + 10);
      const h = (await f.engine.accountState(1)).health;
      expect(h).to.be.lessThan(wad("9"));
      // At today's health, to the millionth a policy keeps (rounded down: not below it yet).
      await f.engine.connect(f.alice).setRebalancePolicy(1, {
        actions: ACTION.REDUCE, cooldown: 0, triggerRatio: policyRatio(h), targetRatio: policyRatio(h) + wad("1"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [],
      });
      await expect(f.engine.connect(f.alice).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.alice.address, E18(2000), t + 10);
    });

    it("out-of-gas griefing: no gas limit turns a fill that needs a collateral oracle read into a cancellation", async () => {
      const f = await loadFixture(base);
      await f.vault.connect(f.bob).createAccount(); // account 2: WBTC margin only (an oracle read inside the fill)
      await f.wbtc.mint(f.bob.address, 50_000_000n);
      await f.wbtc.connect(f.bob).approve(f.vault, 50_000_000n);
      await f.vault.connect(f.bob).depositMargin(2, f.wbtc, 50_000_000n);
      await f.usdc.mint(f.bob.address, USDC(10));
      await f.usdc.connect(f.bob).approve(f.vault, USDC(10));
      await f.vault.connect(f.bob).deposit(2, f.usdc, USDC(10));
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(20), { who: f.bob, acct: 2n });
      await ethRound(f, 2000, t + 10);
      const needed = await f.engine.connect(f.keeper).executeOrder.estimateGas(id);
      let reverted = 0;
      for (let gas = 120_000n; gas < needed; gas += 1_000n) {
        const tx = await f.engine.connect(f.keeper).executeOrder(id, { gasLimit: gas }).catch((e: Error) => e);
        const receipt = tx instanceof Error ? null : await ethers.provider.getTransactionReceipt(tx.hash);
        if (receipt?.status === 1) {
          const ev = receipt.logs.map((l) => f.engine.interface.parseLog(l)).find((p) => p?.name === "OrderExecuted" || p?.name === "OrderCancelled");
          expect(ev!.name).to.equal("OrderExecuted");
          expect((await f.engine.position(2, f.ethMarket)).size).to.equal(E18(20));
          expect(reverted).to.be.greaterThan(0);
          return;
        }
        reverted++;
        expect(await f.engine.pendingOrders(2)).to.deep.equal([id]);
      }
      expect(reverted).to.be.greaterThan(100);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(2, f.ethMarket)).size).to.equal(E18(20));
    });
  });

  describe("claim 2: the owner as keeper gets no REDUCE at a price he knows", () => {
    it("below the trigger: an operator's withdrawal, a release or a policy swap buys no REDUCE at the current round", async () => {
      const f = await loadFixture(guarded);
      await f.weth.mint(f.alice.address, E18(2));
      await f.weth.connect(f.alice).approve(f.vault, E18(2));
      await f.vault.connect(f.alice).depositMargin(1, f.weth, E18(1) / 10n);
      await f.vault.connect(f.alice).setOperator(1, f.bob.address, true);
      const t = (await time.latest()) + 10;
      await ethRound(f, 1940, t);
      expect((await f.engine.accountState(1)).health).to.be.lessThan(wad("2"));
      // The operator empties the top-up reserve, the owner releases WETH margin and swaps in a REDUCE-only policy:
      // all allowed, and none of it closes anything at the round the owner has seen.
      await expect(f.vault.connect(f.bob).withdraw(1, f.usdc, await f.vault.reserveOf(1, f.usdc), f.bob.address)).to.emit(f.vault, "Withdrawn");
      await expect(f.vault.connect(f.alice).releaseMargin(1, f.weth, E18(1) / 1000n)).to.emit(f.vault, "MarginReleased");
      let [, , plan] = await f.rebalancer.needsRebalance(1);
      expect(Number(plan.action) & ACTION.REDUCE).to.equal(0);
      await f.engine.connect(f.alice).setRebalancePolicy(1, {
        actions: ACTION.REDUCE, cooldown: 0, triggerRatio: wad("4"), targetRatio: wad("5"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [],
      });
      await expect(f.rebalancer.connect(f.alice).rebalance(1)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      await expect(f.engine.connect(f.alice).liquidate(1)).to.be.revertedWithCustomError(f.engine, "NotLiquidatable");
      // The next round: the REDUCE, at that round's price.
      await ethRound(f, 1930, t + 10);
      [, , plan] = await f.rebalancer.needsRebalance(1);
      expect(plan.action).to.equal(BigInt(ACTION.REDUCE));
      await expect(f.rebalancer.connect(f.alice).rebalance(1))
        .to.emit(f.engine, "PositionModified").withArgs(1n, f.ethMarket, anyValue, anyValue, E18(1930), anyValue, anyValue);
    });

    it("fixed (D6): below the trigger, order fees escrowed from the USDC top-up reserve do not turn the top-up into a REDUCE", async () => {
      const f = await loadFixture(guarded);
      await f.engine.setOrderFee(USDC(100));
      // Above the trigger the owner may keep any reserve: 1,009.5 USDC, enough for the top-up the move below calls for.
      await f.vault.connect(f.alice).withdraw(1, f.usdc, USDC(9_000), f.alice.address);
      expect(await f.vault.reserveOf(1, f.usdc)).to.equal(USDC(1_009) + FEE);
      const t = (await time.latest()) + 10;
      await ethRound(f, 1950, t);
      const [, , before] = await f.rebalancer.needsRebalance(1);
      expect(before.action).to.equal(BigInt(ACTION.TOP_UP));
      expect(await f.vault.reserveOf(1, f.usdc)).to.be.greaterThan(before.amounts[0]);
      // Reduce-only orders on a market without a position: they add no risk, cancel at the next BTC round
      // (NothingToReduce), and the owner executing them himself is credited the fees back.
      for (let i = 0; i < 6; i++) {
        await at(t + 1 + i);
        await f.engine.connect(f.alice).requestOrder(1, f.btcMarket, -E18(1), 0n, t + HOUR, true).catch(() => undefined);
      }
      const [, , after] = await f.rebalancer.needsRebalance(1);
      expect(Number(after.action) & ACTION.REDUCE).to.equal(0);
    });

    it("fixed (D2): a REDUCE trigger set a hair below today's health that funding crosses gives no REDUCE at the price of the set", async () => {
      const f = await loadFixture(guarded);
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, imVolFloor: 0n }); // funding on
      await f.engine.connect(f.alice).setRebalancePolicy(1, { actions: 0, cooldown: 0, triggerRatio: 0n, targetRatio: 0n, releaseRatio: 0n, maxFeeUsd: 0n, topUpAssets: [] });
      const h0 = (await f.engine.accountState(1)).health;
      await time.increase(600);
      const h1 = (await f.engine.accountState(1)).health;
      const perSecond = (h0 - h1) / 600n;
      expect(perSecond).to.be.greaterThan(0n); // the lone long pays funding: health drifts down every second
      // A hair below today's health: the next whole millionth (what a policy keeps) at least 30 s of drift down.
      const trigger = policyRatio(h1 - 30n * perSecond);
      const crossing = (h1 - trigger) / perSecond + 60n; // seconds until funding has taken health below it, and a minute
      await f.engine.connect(f.alice).setRebalancePolicy(1, {
        actions: ACTION.REDUCE, cooldown: 0, triggerRatio: trigger, targetRatio: wad("9"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [],
      });
      await time.increase(crossing); // no new round: the ETH price is still the one published before the policy
      expect((await f.engine.accountState(1)).health).to.be.lessThan(trigger); // funding has crossed the trigger
      const [, status, plan] = await f.rebalancer.needsRebalance(1);
      expect(status).to.equal(STATUS.NoAction); // below its trigger, and REDUCE waits for a round after the policy
      expect(Number(plan.action) & ACTION.REDUCE).to.equal(0);
    });
  });

  describe("claim 3: money", () => {
    it("escrow + reserves + margins + pool = the engine's USDC through requests, fills, cancels and claims", async () => {
      const f = await loadFixture(base);
      await f.vault.connect(f.bob).createAccount();
      await f.usdc.mint(f.bob.address, USDC(5_005));
      await f.usdc.connect(f.bob).approve(f.vault, USDC(5_005));
      await f.vault.connect(f.bob).depositMargin(2, f.usdc, USDC(5_000));
      await f.vault.connect(f.bob).deposit(2, f.usdc, USDC(5));
      const t = (await time.latest()) + 10;
      const a = await request(f, t, f.ethMarket, E18(5));
      const b = await request(f, t + 1, f.ethMarket, -E18(3), { who: f.bob, acct: 2n });
      const c = await request(f, t + 2, f.btcMarket, -E18(1), { reduceOnly: true });
      await conserved(f, [1n, 2n]);
      expect(await f.engine.orderEscrow()).to.equal(3n * FEE);
      await ethRound(f, 2003, t + 10);
      await btcRound(f, 30_000, t + 11);
      for (const id of [a, b, c]) await f.engine.connect(f.keeper).executeOrder(id);
      // backed at the request (the least IM of the 5 + y ETH it leaves: y the largest size within the equity), but
      // the fill's trading fee takes the equity below that IM: BelowInitialMargin at the fill
      const equity = (await f.engine.accountState(1)).equity;
      const leaves = (y: bigint) => ((E18(5) + y) * 2003n);
      let [lo, hi] = [0n, E18(100)];
      while (hi - lo > 1n) {
        const mid = (lo + hi) / 2n;
        if (floorIm(leaves(mid)) <= equity) lo = mid;
        else hi = mid;
      }
      const fee = mulDivUp(mulDivUp(lo, 2003n * E18(1), E18(1)), MAJOR_MARKET.feeRate, E18(1));
      expect(equity - fee).to.be.lessThan(floorIm(leaves(lo)));
      await at(t + 19);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, lo + 1n, MAX, t + HOUR, false)).to.be.revertedWithCustomError(f.engine, "BelowInitialMargin");
      const d = await request(f, t + 20, f.ethMarket, lo);
      await ethRound(f, 2003, t + 22);
      await expect(f.engine.connect(f.keeper).executeOrder(d))
        .to.emit(f.engine, "OrderCancelled").withArgs(d, 1n, f.keeper.address, sel(f.engine, "BelowInitialMargin"));
      await conserved(f, [1n, 2n]);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(4n * FEE);
      const close = await request(f, t + 30, f.ethMarket, -E18(5), { reduceOnly: true });
      await ethRound(f, 2017, t + 40);
      await f.engine.connect(f.bob).executeOrder(close);
      await conserved(f, [1n, 2n]);
      await f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address);
      await f.engine.connect(f.bob).claimKeeperRewards(f.bob.address);
      expect(await f.usdc.balanceOf(f.keeper.address)).to.equal(4n * FEE);
      expect(await f.usdc.balanceOf(f.bob.address)).to.equal(FEE);
      await conserved(f, [1n, 2n]);
    });

    it("a cancelled fill leaves position, balances, debt and the market's funding state as before, less the fee", async () => {
      const f = await loadFixture(base);
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET }); // funding on
      const t = await openAt(f, f.ethMarket, E18(5), 2000);
      const snap = async () => [
        await f.engine.position(1, f.ethMarket), await f.engine.marketState(f.ethMarket), await f.vault.marginOf(1, f.usdc),
        await f.engine.totalDebtUsd(), await f.vault.marginMask(1), await f.engine.positionMask(1),
      ];
      const before = await snap();
      const reserve = await f.vault.reserveOf(1, f.usdc);
      const id = await request(f, t + 100, f.ethMarket, E18(1), { limit: E18(1999) });
      await ethRound(f, 2000, t + 200);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "PriceNotAcceptable"));
      expect(await snap()).to.deep.equal(before);
      expect(await f.vault.reserveOf(1, f.usdc)).to.equal(reserve - FEE);
    });

    it("rounding favours the protocol: a fee of 3.333...3 USD takes 3,333,334 USDC units", async () => {
      const f = await loadFixture(base);
      const m0 = await f.vault.marginOf(1, f.usdc);
      const size = 3_333_333_333_333_333_333n; // 3.33 ETH: 6,666.66 USD notional, fee 3.333333333333333333 USD
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, size);
      await ethRound(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "PositionModified").withArgs(1n, f.ethMarket, size, size, E18(2000), 0n, 3_333_333_333_333_333_333n);
      expect(m0 - (await f.vault.marginOf(1, f.usdc))).to.equal(3_333_334n);
      expect((await f.engine.accountState(1)).settlement).to.equal(0n);
    });
  });

  describe("claim 4: liveness", () => {
    it("the pending list stays exact under any execution order; settled ids are gone for good", async () => {
      const f = await loadFixture(base);
      await openAt(f, f.ethMarket, E18(4), 2000);
      const t0 = await openAt(f, f.btcMarket, E18(4) / 100n, 30_000);
      const t = t0 + 10;
      // One order that may add risk, seven reduce-only ones.
      const ids: bigint[] = [await request(f, t, f.ethMarket, E18(1))];
      for (let i = 1; i < 8; i++) {
        ids.push(await request(f, t + i, i % 2 ? f.btcMarket : f.ethMarket, i % 2 ? -E18(1) / 1000n : -E18(1) / 10n, { reduceOnly: true }));
      }
      await ethRound(f, 2000, t + 20);
      await btcRound(f, 30_000, t + 21);
      let left = [...ids];
      for (const k of [4, 1, 7, 0, 6, 2, 5, 3]) {
        await f.engine.connect(f.keeper).executeOrder(ids[k]);
        left = left.filter((x) => x !== ids[k]);
        expect(sorted(await f.engine.pendingOrders(1))).to.deep.equal(left);
        expect(await f.engine.orderEscrow()).to.equal(BigInt(left.length) * FEE);
        expect((await f.engine.order(ids[k])).deadline).to.equal(0n);
        await expect(f.engine.connect(f.bob).executeOrder(ids[k])).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(ids[k]);
      }
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(10n * FEE);
      expect((await f.engine.position(1, f.ethMarket)).size).to.equal(E18(47) / 10n);
      expect((await f.engine.position(1, f.btcMarket)).size).to.equal(E18(36) / 1000n);
    });

    it("8 orders whose fill rounds never come expire at their deadlines and free the slots for a close", async () => {
      const f = await loadFixture(base);
      const t0 = await openAt(f, f.btcMarket, E18(1) / 10n, 30_000);
      const t = t0 + 10;
      const ids: bigint[] = [await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 })];
      for (let i = 1; i < 8; i++) ids.push(await request(f, t + i, f.ethMarket, -E18(1), { deadline: t + 60, reduceOnly: true }));
      await at(t + 30);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.btcMarket, -E18(1), 0n, t + HOUR, true))
        .to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders").withArgs(1n, 8);
      await at(t + 61);
      for (const id of ids) {
        await expect(f.engine.connect(f.keeper).executeOrder(id))
          .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      }
      const close = await request(f, t + 100, f.btcMarket, -E18(1), { reduceOnly: true });
      await btcRound(f, 30_000, t + 110);
      await expect(f.engine.connect(f.keeper).executeOrder(close)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(1, f.btcMarket)).size).to.equal(0n);
    });

    it("fixed (D4): an order whose fill round came but whose oracle then fails waits until its deadline, then expires; closing elsewhere stays possible", async () => {
      const f = await loadFixture(base);
      const t0 = await openAt(f, f.btcMarket, E18(1) / 10n, 30_000);
      const t = t0 + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 3 * HOUR });
      await ethRound(f, 2000, t + 10); // the fill round, well before the deadline; then the ETH feed stops
      await btcRound(f, 30_000, t + 2 * HOUR); // BTC stays live
      await at(t + 2 * HOUR + 100); // ETH stale (2 h heartbeat), the deadline not passed: the order waits
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OracleUnhealthy");
      const close = await request(f, t + 2 * HOUR + 200, f.btcMarket, -E18(1), { reduceOnly: true });
      await btcRound(f, 30_000, t + 2 * HOUR + 300);
      await expect(f.engine.connect(f.keeper).executeOrder(close)).to.emit(f.engine, "OrderExecuted");
      await at(t + 3 * HOUR + 1); // past the deadline: the fill can no longer be judged in time
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      expect(await f.engine.pendingOrders(1)).to.deep.equal([]);
    });
  });
});
