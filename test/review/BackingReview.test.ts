/**
 * Independent review of 5b47429: the backing check of a two-step order request (MarginEngine._checkBacking,
 * AccountLogic.floorInitialMargin; review findings M1, M2) and the keeper-paid rule of a rebalance REDUCE
 * (PlanLogic._mayReduce; finding N5). Each test is an attack on the production MarginEngine (productionFixture via
 * test/helpers/orders.ts: pool capital 1,000,000 USDC, ETH 2,000, BTC 30,000, MAJOR_MARKET caps 500,000 USD per side,
 * a 0.5 USDC order fee, no funding).
 *
 * Tests named "fixed (Mx):" failed on 5b47429 and assert the behaviour of the fix (M3: |Δ| is backed on top of the
 * position, not within it; M4: no REDUCE while the gas asset is unpriced); tests named "resisted:" are regression
 * tests of attacks the code resisted.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { USDC, E18, E8 } from "../helpers/fixtures";
import { HOUR, MAX, base, at, ethRound, btcRound, request, openAt, conserved, floorIm, type F } from "../helpers/orders";
import { pinBaseFee, STATUS } from "../helpers/rebalance";
import { ACTION, DEFAULT_REBALANCER, DEFAULT_RISK, MAJOR_MARKET, policyRatio, wad } from "../../deploy/params";

type Signer = F["alice"];
const GWEI = 10n ** 9n;

/** `who` opens an account (id returned) with `margin` USDC of margin and a 10 USDC reserve. */
async function trader(f: F, who: Signer, margin: bigint): Promise<bigint> {
  const id = (await f.vault.accountCount()) + 1n;
  await f.vault.connect(who).createAccount();
  await f.usdc.mint(who.address, margin + USDC(10));
  await f.usdc.connect(who).approve(f.vault, margin + USDC(10));
  await f.vault.connect(who).depositMargin(id, f.usdc, margin);
  await f.vault.connect(who).deposit(id, f.usdc, USDC(10));
  return id;
}

async function addMargin(f: F, who: Signer, acct: bigint, amount: bigint) {
  await f.usdc.mint(who.address, amount);
  await f.usdc.connect(who).approve(f.vault, amount);
  await f.vault.connect(who).depositMargin(acct, f.usdc, amount);
}

const policy = (actions: number, trigger: bigint, maxFeeUsd: bigint, topUpAssets: string[] = []) => ({
  actions, cooldown: 0, triggerRatio: policyRatio(trigger), targetRatio: policyRatio(trigger) + wad("1"), releaseRatio: 0n, maxFeeUsd, topUpAssets,
});

/**
 * base() with the BTC market's IM floor at 0 (as OrdersReview2's `levered` does for ETH) and alice holding 5 BTC long
 * at 30,000 on 6,000 USDC of margin (no ETH position, health about 2.3); returns a time after it.
 */
async function btcHolder(f: F): Promise<number> {
  await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...MAJOR_MARKET, imVolFloor: 0n, maxFundingRate: 0n });
  await f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(4_000));
  return openAt(f, f.btcMarket, E18(5), 30_000);
}

describe("Review of 5b47429: the backing check and the paid REDUCE", () => {
  describe("backing of a request (_checkBacking / floorInitialMargin)", () => {
    it("fixed (M3): a position's margin also backs a reservation of the same size on the other side — an unfillable sell squats the short cap for one order fee", async () => {
      const f = await loadFixture(base);
      // bob (account 2): 45,000 USDC of margin, opens 120 ETH long at 2,000 (240,000 USD: fee 120 USD).
      const bob = await trader(f, f.bob, USDC(45_000));
      let t = (await time.latest()) + 10;
      const open = await request(f, t, f.ethMarket, E18(120), { who: f.bob, acct: bob });
      await ethRound(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(open)).to.emit(f.engine, "OrderExecuted");
      const equity = (await f.engine.accountState(bob)).equity;
      expect(equity).to.equal(E18(44_880));
      // The account is "fully used" in M1's sense: it backs its 120 ETH long at the σ floor, but not 120 ETH more on
      // the same side (M1 fixed) — nor, a fortiori, the long and a short of 120 ETH side by side.
      expect(floorIm(E18(240_000))).to.be.lte(equity);
      expect(floorIm(E18(480_000))).to.be.gt(equity);
      expect(floorIm(E18(240_000), E18(240_000))).to.be.gt(equity);
      t += 10;
      await at(t);
      await expect(f.engine.connect(f.bob).requestOrder(bob, f.ethMarket, E18(120), MAX, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(bob, equity, floorIm(E18(480_000)));
      // The attack: a sell of 120 ETH, not reduce-only, with a limit no price meets (a sell refuses any price below
      // MAX): it can never fill, so the long stays. Backed for max(|120 − 120|, 120) = 120 ETH — the margin the long
      // already uses — it reserves 120 ETH of the SHORT side's cap until its round (on 5b47429: accepted, reserving
      // [0, 120]). Any keeper cancels it at the next round (PriceNotAcceptable) and bob asks again; if bob executes it
      // himself he even gets the order fee back. Two hedged accounts (one long, one short) squat both sides this way.
      // Fixed: backed for the long and the reservation (240 ETH at the σ floor), which the account does not have.
      await at(t + 1);
      await expect(f.engine.connect(f.bob).requestOrder(bob, f.ethMarket, -E18(120), MAX, t + 1 + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(bob, equity, floorIm(E18(480_000)));
      // Correct: whatever the squat reserves, a real short within the cap is not crowded out by a reservation that
      // costs bob no margin beyond his long's. alice (60,000 USDC of margin: backs 131 ETH short at the σ floor) asks
      // to sell 131 ETH: 262,000 USD, within the 500,000 cap on a short side with nothing open.
      await addMargin(f, f.alice, 1n, USDC(50_000));
      expect(floorIm(E18(262_000))).to.be.lte((await f.engine.accountState(1)).equity);
      // 5b47429: OpenInterestCap(ETH, 502,000 USD = (120 + 131) × 2,000, 500,000 USD)
      await request(f, (await time.latest()) + 1, f.ethMarket, -E18(131));
      expect((await f.engine.pendingOpenInterest(f.ethMarket))[1]).to.be.gte(E18(131));
    });

    it("resisted: collateral whose oracle is invalid backs nothing — a stale BTC price cannot inflate the backing", async () => {
      const f = await loadFixture(base);
      // alice: 100 USDC of margin and 1 WBTC (27,000 USD at 30,000 × 0.9 while priced)
      await f.wbtc.mint(f.alice.address, 10n ** 8n);
      await f.wbtc.connect(f.alice).approve(f.vault, 10n ** 8n);
      await f.vault.connect(f.alice).depositMargin(1, f.wbtc, 10n ** 8n);
      await f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(9_900));
      expect((await f.engine.accountState(1)).equity).to.equal(E18(27_100));
      // BTC's last round is older than its 2 h heartbeat; ETH is fresh
      const t = (await time.latest()) + 2 * HOUR + 100;
      await ethRound(f, 2000, t - 50);
      const before = [await f.engine.lastOrderId(), await f.engine.pendingOpenInterest(f.ethMarket), await f.vault.reserveOf(1, f.usdc)];
      await at(t);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(1n, E18(100), floorIm(E18(2000)));
      expect([await f.engine.lastOrderId(), await f.engine.pendingOpenInterest(f.ethMarket), await f.vault.reserveOf(1, f.usdc)]).to.deep.equal(before);
      // a fresh BTC round and the same request is backed
      await btcRound(f, 30_000, t + 10);
      await request(f, t + 11, f.ethMarket, E18(1));
      expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(1), 0n]);
    });

    it("resisted: after the request the backing cannot leave — owner's or operator's release OrderPending, reserve withdrawal moves no equity, no RELEASE", async () => {
      const f = await loadFixture(base);
      await f.vault.connect(f.alice).setOperator(1, f.bob.address, true);
      const t = (await time.latest()) + 10;
      // 25 ETH (50,000 USD): within what 10,000 USDC of equity backs at the σ floor
      const size = E18(25);
      expect(floorIm(E18(50_000))).to.be.lte(E18(10_000));
      const id = await request(f, t, f.ethMarket, size);
      const equity = (await f.engine.accountState(1)).equity;
      await expect(f.vault.connect(f.alice).releaseMargin(1, f.usdc, USDC(1)))
        .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, id);
      await expect(f.vault.connect(f.bob).releaseMargin(1, f.usdc, USDC(1)))
        .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, id);
      // a second order that may add risk, even on another market, waits too
      await expect(f.engine.connect(f.bob).requestOrder(1, f.btcMarket, -E18(1) / 10n, 0n, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, id);
      await f.vault.connect(f.bob).withdraw(1, f.usdc, USDC(9), f.bob.address); // the reserve is not equity
      expect((await f.engine.accountState(1)).equity).to.equal(equity);
      // a RELEASE policy finds nothing to do while the order waits (and the account has no position anyway)
      await f.engine.connect(f.alice).setRebalancePolicy(1, { ...policy(ACTION.RELEASE, wad("1.3"), wad("50"), [await f.usdc.getAddress()]), releaseRatio: wad("3") });
      expect((await f.rebalancer.needsRebalance(1))[0]).to.equal(false);
      await ethRound(f, 2000, (await time.latest()) + 1);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(1, f.ethMarket)).size).to.equal(size);
      await conserved(f, [1n]);
    });

    it("resisted: a cross-market increase counts the other market's position at its σ floor (M1 across markets)", async () => {
      const f = await loadFixture(base);
      // alice: 1 BTC long (30,000 USD); a 20 ETH buy (40,000 USD) is backed only with the BTC position's floor IM too
      const t = await openAt(f, f.btcMarket, E18(1), 30_000);
      const equity = (await f.engine.accountState(1)).equity;
      const needed = floorIm(E18(30_000), E18(40_000));
      expect(floorIm(E18(40_000))).to.be.lte(equity); // enough for the ETH order alone
      expect(needed).to.be.gt(equity);
      await at(t);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(20), MAX, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(1n, equity, needed);
    });
  });

  describe("a REDUCE acts only while its keeper is paid in full (_mayReduce)", () => {
    it("fixed (M4): with the gas asset unpriced (WETH breaker tripped by a >25 % ETH move) the 'uncapped' fee is the 1 USD flat part — a REDUCE nobody is paid to run is again its owner's option", async () => {
      const f = await loadFixture(base);
      const t0 = await btcHolder(f);
      const h = (await f.engine.accountState(1)).health;
      // A paid REDUCE policy (50 USD cap) whose trigger is above health: with WETH priced, keepers run it at once
      // after the first BTC round (fee 1 + 600,000 gas × 20 gwei × ETH price, well within 50 USD).
      // ETH crashes 30 % in one round: the router's breaker (maxJumpBps 2,500) trips WETH for its 1 h cooldown.
      await ethRound(f, 1400, t0);
      await at(t0 + 1);
      await f.oracle.poke(await f.weth.getAddress());
      expect((await f.oracle.tryPrice(await f.weth.getAddress()))[0]).to.equal(false);
      await at(t0 + 2);
      await f.engine.connect(f.alice).setRebalancePolicy(1, policy(ACTION.REDUCE, h + wad("0.5"), wad("50")));
      await btcRound(f, 30_000, t0 + 10); // a round after the owner's action
      // At 20 gwei the keeper's gas is 600,000 × 20 gwei = 0.012 ETH (16.8 USD at the last ETH price); the fee the
      // engine would pay is the flat 1 USD only (no valid gas-asset price), so for _mayReduce the keeper is "paid in
      // full" — no keeper runs it at a loss, and the owner runs it himself whenever the BTC round suits him, for the
      // rest of the breaker's hour: N5 reopened (on 5b47429 `keeperFee(50 USD)` is 1 USD here). Every REDUCE policy of
      // an account without an ETH position is in this state while the gas asset is unpriced (a breaker trip, a stale
      // WETH feed), whatever its maxFeeUsd. Here he picks a later block of the same round.
      await at(t0 + 1_800);
      await pinBaseFee(20n * GWEI);
      // Correct: a REDUCE whose keeper's gas cannot be priced is not shown to be paid in full: it does not act.
      // 5b47429: Rebalanced (REDUCE), the owner credited 1 USDC.
      await expect(f.rebalancer.connect(f.alice).rebalance(1, { maxFeePerGas: 40n * GWEI }))
        .to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      expect((await f.engine.position(1, f.btcMarket)).size).to.equal(E18(5));
    });

    it("resisted: an unpaid REDUCE (maxFeeUsd 0) does not act through rebalanceBatch, performUpkeep or checkUpkeep either", async () => {
      const f = await loadFixture(base);
      const t0 = await btcHolder(f);
      const h = (await f.engine.accountState(1)).health;
      await at(t0);
      await f.engine.connect(f.alice).setRebalancePolicy(1, policy(ACTION.REDUCE, h + wad("0.5"), 0n));
      await btcRound(f, 30_000, t0 + 10);
      await ethRound(f, 2000, t0 + 11);
      const [needed, status] = await f.rebalancer.needsRebalance(1);
      expect([needed, status]).to.deep.equal([false, STATUS.NoAction]);
      const [upkeep] = await f.rebalancer.checkUpkeep("0x");
      expect(upkeep).to.equal(false);
      await pinBaseFee(GWEI);
      await expect(f.rebalancer.connect(f.alice).rebalanceBatch([1n], { maxFeePerGas: 2n * GWEI }))
        .to.emit(f.rebalancer, "RebalanceSkipped").withArgs(1n, STATUS.NoAction);
      await pinBaseFee(GWEI);
      const data = ethers.AbiCoder.defaultAbiCoder().encode(["uint256[]"], [[1n]]);
      await expect(f.rebalancer.connect(f.alice).performUpkeep(data, { maxFeePerGas: 2n * GWEI }))
        .to.emit(f.rebalancer, "RebalanceSkipped").withArgs(1n, STATUS.NoAction);
      // gas free (base fee 0): the fee is the flat 1 USD, still above a 0 cap
      await pinBaseFee(0n);
      await expect(f.rebalancer.connect(f.alice).rebalance(1, { maxFeePerGas: GWEI }))
        .to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      expect((await f.engine.position(1, f.btcMarket)).size).to.equal(E18(5));
    });

    it("resisted: REDUCE_FIRST with an unpaid keeper tops up instead; paid, it reduces without spending the reserve", async () => {
      const f = await loadFixture(base);
      const t0 = await btcHolder(f);
      const h = (await f.engine.accountState(1)).health;
      const usdc = await f.usdc.getAddress();
      const actions = ACTION.TOP_UP | ACTION.REDUCE | ACTION.REDUCE_FIRST;
      await at(t0);
      await f.engine.connect(f.alice).setRebalancePolicy(1, policy(actions, h + wad("0.5"), 0n, [usdc]));
      await btcRound(f, 30_000, t0 + 10);
      const reserve = await f.vault.reserveOf(1, f.usdc);
      expect(reserve).to.equal(USDC(40_095) / 10n); // 10 USDC + the 4,000 released, less the order fee of the open
      await pinBaseFee(GWEI);
      // unpaid: REDUCE_FIRST does not apply (a REDUCE may not act now), the reserve tops up, fee 0
      expect(await f.rebalancer.connect(f.alice).rebalance.staticCall(1, { maxFeePerGas: 2n * GWEI })).to.deep.equal([BigInt(ACTION.TOP_UP), 0n]);
      await pinBaseFee(GWEI);
      await expect(f.rebalancer.connect(f.alice).rebalance(1, { maxFeePerGas: 2n * GWEI })).to.emit(f.rebalancer, "Rebalanced");
      const left = await f.vault.reserveOf(1, f.usdc);
      expect(left).to.be.lessThan(reserve);
      expect((await f.engine.position(1, f.btcMarket)).size).to.equal(E18(5));
      // paid in full (50 USD cap), after a round following the new policy (trigger above the topped-up health):
      // REDUCE alone, the reserve untouched
      const h2 = (await f.engine.accountState(1)).health;
      const t1 = (await time.latest()) + 10;
      await at(t1);
      await f.engine.connect(f.alice).setRebalancePolicy(1, policy(actions, h2 + wad("0.5"), wad("50"), [usdc]));
      await btcRound(f, 30_000, t1 + 10);
      await ethRound(f, 2000, t1 + 11);
      await pinBaseFee(GWEI);
      await expect(f.rebalancer.connect(f.keeper).rebalance(1, { maxFeePerGas: 2n * GWEI })).to.emit(f.rebalancer, "Rebalanced");
      expect(await f.vault.reserveOf(1, f.usdc)).to.equal(left);
      expect((await f.engine.position(1, f.btcMarket)).size).to.be.lessThan(E18(5));
      await conserved(f, [1n]);
    });
  });
});
