import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time, takeSnapshot } from "@nomicfoundation/hardhat-network-helpers";

import { DEFAULT_RISK, MAJOR_MARKET, wad } from "../../deploy/params";
import { USDC, E18 } from "../helpers/fixtures";
import { mulDivUp, sqrtHorizon, USDC_SCALE, WAD, wDivDown, wMulUp } from "../helpers/marginMath";
import { mmr, notionalOf, positionRequirements, requirements, tradeFee } from "../helpers/engineMath";
import {
  ACTION,
  lowHealth,
  STATUS,
  BASE_FEE,
  countedValue,
  expectedFee,
  fundReserve,
  moveEthUntil,
  openLong,
  pinBaseFee,
  rebalanceFixture,
  reduceFraction,
  setEth,
  targetRequirement,
  topUpAmount,
  type PolicyIn,
  type RebalanceFixture,
} from "../helpers/rebalance";

const R = DEFAULT_RISK.keeperReward;
const HAIRCUT_WETH = wad("0.9");
const T = wad("3"); // fixture target


async function withPolicy(f: RebalanceFixture, change: Partial<PolicyIn>): Promise<PolicyIn> {
  const policy = { ...f.policy, ...change };
  await f.engine.connect(f.alice).setRebalancePolicy(f.id, policy);
  return policy;
}

/** σ and σ_mm of ETH at the latest block, as the engine reads them. */
async function vols(f: RebalanceFixture) {
  const [target, maintenance] = await f.oracle.volatilities(f.weth);
  return { target, maintenance };
}

async function withdrawReserve(f: RebalanceFixture, keepUsdc: bigint, keepWeth: bigint) {
  const usdc = await f.vault.reserveOf(f.id, f.usdc);
  const weth = await f.vault.reserveOf(f.id, f.weth);
  if (usdc > keepUsdc) await f.vault.connect(f.alice).withdraw(f.id, f.usdc, usdc - keepUsdc, f.alice.address);
  if (weth > keepWeth) await f.vault.connect(f.alice).withdraw(f.id, f.weth, weth - keepWeth, f.alice.address);
}

describe("Rebalancer", () => {
  describe("rebalance › TOP_UP", () => {
    it("tops up from the USDC reserve exactly to target when health falls below trigger", async () => {
      const f = await loadFixture(rebalanceFixture);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const st = await f.engine.accountState(f.id);
      const fee = expectedFee(E18(px), f.policy.maxFeeUsd);
      const need = targetRequirement(T, st.maintenanceMargin) - (st.equity - fee);
      const amount = topUpAmount(need, WAD, 6, WAD);
      expect(amount).to.be.lessThan(USDC(1_000)); // the USDC reserve covers it: WETH stays untouched
      const margin0 = await f.vault.marginOf(f.id, f.usdc);
      const keeper0 = await f.engine.keeperRewardsOf(f.keeper.address);

      await pinBaseFee();
      const tx = f.rebalancer.connect(f.keeper).rebalance(f.id);
      await (await tx).wait();
      const now = await f.engine.accountState(f.id);

      // Equity gains exactly the top-up and pays exactly the fee; the requirement does not move.
      expect(now.maintenanceMargin).to.equal(st.maintenanceMargin);
      expect(now.equity).to.equal(st.equity - fee + amount * USDC_SCALE);
      expect(now.health).to.equal(wDivDown(now.equity, now.maintenanceMargin));
      // Target reached, overshooting by less than one USDC unit of equity (rounding for the protocol).
      expect(now.health).to.be.gte(T);
      expect(now.equity - targetRequirement(T, st.maintenanceMargin)).to.be.lessThan(USDC_SCALE);
      await expect(tx)
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(f.id, ACTION.TOP_UP, st.health, now.health, amount * USDC_SCALE, 0n, 0n, fee, f.keeper.address);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(1_000) - amount);
      expect(await f.vault.reserveOf(f.id, f.weth)).to.equal(E18(2));
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(margin0 + amount - fee / USDC_SCALE);
      // The fee is credited to the keeper inside the engine (claimable), not transferred.
      await expect(tx)
        .to.emit(f.engine, "KeeperRewardCredited")
        .withArgs(f.keeper.address, fee / USDC_SCALE, keeper0 + fee / USDC_SCALE);
      expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(keeper0 + fee / USDC_SCALE);
      expect(await f.engine.totalKeeperRewards()).to.equal(keeper0 + fee / USDC_SCALE);
      expect(await f.engine.lastRebalanceAt(f.id)).to.equal(await time.latest());
      // With no settlement balance, the fee leaves USDC margin for the pool's balance (where credited rewards are held)
      // in one move: one MarginDebited to the pool, no SettlementChanged round trip.
      const rc = await (await tx).wait();
      const settled = rc!.logs.map((l) => f.engine.interface.parseLog(l)).filter((e) => e?.name === "SettlementChanged");
      expect(settled).to.deep.equal([]);
      const debited = rc!.logs
        .map((l) => f.vault.interface.parseLog(l))
        .filter((e) => e?.name === "MarginDebited")
        .map((e) => [...e!.args]);
      expect(debited).to.deep.equal([[f.id, await f.usdc.getAddress(), await f.pool.getAddress(), fee / USDC_SCALE]]);
      expect(now.settlement).to.equal(0n);
    });

    it("rescues an account just above 1 (between liquidation and trigger)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await moveEthUntil(f, f.id, 2000n, -1n, (h) => h >= WAD && h < wad("1.1"));
      const before = await f.engine.accountState(f.id);
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      const now = await f.engine.accountState(f.id);
      expect(before.health).to.be.lessThan(wad("1.1"));
      expect(now.health).to.be.gte(T);
      await expect(f.engine.connect(f.keeper).liquidate(f.id))
        .to.be.revertedWithCustomError(f.engine, "NotLiquidatable")
        .withArgs(f.id, now.health);
    });

    it("tops up across two assets in the owner's order, counting the WETH haircut", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withdrawReserve(f, USDC(100), E18(2)); // 100 USDC first, the rest must come from WETH
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const pxWad = E18(px);
      const st = await f.engine.accountState(f.id);
      const fee = expectedFee(pxWad, f.policy.maxFeeUsd);
      const need = targetRequirement(T, st.maintenanceMargin) - (st.equity - fee);
      const wethAmount = topUpAmount(need - E18(100), pxWad, 18, HAIRCUT_WETH);
      const wethValue = countedValue(wethAmount, pxWad, 18, HAIRCUT_WETH);

      await pinBaseFee();
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id))
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(f.id, ACTION.TOP_UP, st.health, (h: bigint) => h >= T, E18(100) + wethValue, 0n, 0n, fee, f.keeper.address);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(0n);
      expect(await f.vault.reserveOf(f.id, f.weth)).to.equal(E18(2) - wethAmount);
      expect(await f.vault.marginOf(f.id, f.weth)).to.equal(wethAmount);
      const now = await f.engine.accountState(f.id);
      // USDC 100 at face value, WETH at price × 0.9; the fee leaves through the USDC margin.
      expect(now.equity).to.be.gte(st.equity - fee + E18(100) + wethValue);
      expect(now.equity - (st.equity - fee + E18(100) + wethValue)).to.be.lessThan(10n); // floor steps of C
      expect(now.health).to.be.gte(T);
    });

    it("follows the owner's order: WETH first when the policy lists it first", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { topUpAssets: [await f.weth.getAddress(), await f.usdc.getAddress()] });
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const st = await f.engine.accountState(f.id);
      const fee = expectedFee(E18(px), f.policy.maxFeeUsd);
      const need = targetRequirement(T, st.maintenanceMargin) - (st.equity - fee);
      const wethAmount = topUpAmount(need, E18(px), 18, HAIRCUT_WETH);
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      expect(await f.vault.reserveOf(f.id, f.weth)).to.equal(E18(2) - wethAmount);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(1_000));
      expect((await f.engine.accountState(f.id)).health).to.be.gte(T);
    });
  });

  describe("rebalance › REDUCE", () => {
    it("with a reserve too small, tops up all of it, then reduces by the formula's f and lands on target", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withdrawReserve(f, USDC(50), 0n);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const [st, closeFee] = await f.engine.rebalanceInputs(f.id);
      const fee = expectedFee(E18(px), f.policy.maxFeeUsd);
      const equityAfterTopUp = st.equity - fee + E18(50);
      const fr = reduceFraction(T, st.maintenanceMargin, R, equityAfterTopUp, closeFee);
      expect(fr).to.be.greaterThan(0n);
      expect(fr).to.be.lessThan(WAD);
      const closed = mulDivUp(E18(10), fr, WAD);

      await pinBaseFee();
      const tx = f.rebalancer.connect(f.keeper).rebalance(f.id);
      await (await tx).wait();

      // The mirror of what the reduce leaves: the rest of the position re-enters at the price, the whole
      // PnL, the fee and the trading fee on the closed size settle against USDC margin (rounded up).
      const pxWad = E18(px);
      const sizeLeft = E18(10) - closed;
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(sizeLeft);
      const closeTradeFee = tradeFee(closed, pxWad, MAJOR_MARKET.feeRate);
      const owedUsd = -(st.unrealisedPnl - fee - closeTradeFee);
      const owedUnits = mulDivUp(owedUsd, 1n, USDC_SCALE);
      const equity = st.collateral + E18(50) - owedUnits * USDC_SCALE;
      // Requirements never read pool capital: the fee and the settlement that moved it change nothing here.
      const req = positionRequirements(
        MAJOR_MARKET,
        sizeLeft,
        pxWad,
        await vols(f),
        sqrtHorizon(DEFAULT_RISK.volHorizon),
      );
      const health = wDivDown(equity, req.mm + R);
      const now = await f.engine.accountState(f.id);
      expect(now.equity).to.equal(equity);
      expect(now.maintenanceMargin).to.equal(req.mm + R);
      expect(now.health).to.equal(health);
      // Lands on target: at or above it, the overshoot coming only from the size term of the rate. The plan
      // holds the rate at its value before the reduce; at that rate the account lands on target to 1e-6, and the
      // size term, falling with the notional, lifts it above (by 0.021 here: with σ at its floor the size term is
      // a larger share of the rate than it was when every price step moved σ).
      const oldRate = mmr(MAJOR_MARKET, st.notional, (await vols(f)).maintenance, sqrtHorizon(DEFAULT_RISK.volHorizon));
      const atOldRate = wDivDown(equity, wMulUp(req.notional, oldRate) + R);
      expect(atOldRate).to.be.gte(T).and.lessThan(T + 10n ** 12n);
      expect(health).to.be.greaterThan(atOldRate);
      expect(health).to.be.lessThan(T + wad("0.03"));
      // The engine checks and reports that same health after: the top-up and the closed notional apart.
      await expect(tx)
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(f.id, ACTION.TOP_UP | ACTION.REDUCE, st.health, health, E18(50), wMulUp(st.notional, fr), 0n, fee, f.keeper.address);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(0n);
    });

    it("with REDUCE not allowed, tops up what the reserve has and leaves the position alone", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { actions: ACTION.TOP_UP });
      await withdrawReserve(f, USDC(50), 0n);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const st = await f.engine.accountState(f.id);
      const fee = expectedFee(E18(px), f.policy.maxFeeUsd);
      await pinBaseFee();
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id))
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(f.id, ACTION.TOP_UP, st.health, (h: bigint) => h > st.health && h < T, E18(50), 0n, 0n, fee, f.keeper.address);
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(E18(10));
      const now = await f.engine.accountState(f.id);
      expect(now.equity).to.equal(st.equity - fee + E18(50));
    });

    it("with an empty reserve and REDUCE not allowed, there is nothing to do", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { actions: ACTION.TOP_UP });
      await withdrawReserve(f, 0n, 0n);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id)).to.be.revertedWithCustomError(
        f.rebalancer,
        "NothingToRebalance",
      );
      const [needed, status] = await f.rebalancer.needsRebalance(f.id);
      expect([needed, status]).to.deep.equal([false, STATUS.NoAction]);
    });
  });

  describe("rebalance › RELEASE", () => {
    it("releases excess USDC margin to the reserve down to target", async () => {
      const f = await loadFixture(rebalanceFixture);
      // No IM volatility floor here: with it IM is ~10.9 × MM in a calm market, above any target a policy may set
      // (at most 10), so a release stops at IM (the next test's rule), never at target × MM, the rule under test.
      const noFloor = { ...MAJOR_MARKET, maxFundingRate: 0n, imVolFloor: 0n };
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...noFloor });
      const st = await f.engine.accountState(f.id); // 4,000 USDC on a 10 ETH long: health far above 6
      expect(st.health).to.be.greaterThan(wad("6"));
      const fee = expectedFee(E18(2000), f.policy.maxFeeUsd);
      const floor = targetRequirement(T, st.maintenanceMargin);
      expect(floor).to.be.greaterThan(st.initialMargin);
      // Down to target × MM plus one USDC unit kept (the settle after the fee may take a sub-unit balance with it).
      const kept = floor + USDC_SCALE;
      const amount = (st.equity - fee - kept) / USDC_SCALE;
      const reserve0 = await f.vault.reserveOf(f.id, f.usdc);

      await pinBaseFee();
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id))
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(f.id, ACTION.RELEASE, st.health, (h: bigint) => h >= T, 0n, 0n, amount * USDC_SCALE, fee, f.keeper.address);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(reserve0 + amount);
      const now = await f.engine.accountState(f.id);
      expect(now.equity).to.equal(st.equity - fee - amount * USDC_SCALE);
      expect(now.equity).to.be.gte(kept); // never below target: one unit to spare ...
      expect(now.equity - kept).to.be.lessThan(USDC_SCALE); // ... and within a token unit of it
    });

    it("never releases below initial margin, even when target × MM is lower", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { triggerRatio: wad("1.1"), targetRatio: wad("1.2"), releaseRatio: wad("2") });
      const st = await f.engine.accountState(f.id);
      expect(targetRequirement(wad("1.2"), st.maintenanceMargin)).to.be.lessThan(st.initialMargin);
      const fee = expectedFee(E18(2000), f.policy.maxFeeUsd);
      // Down to IM plus one USDC unit kept (the settle after the fee may take a sub-unit balance with it).
      const kept = st.initialMargin + USDC_SCALE;
      const amount = (st.equity - fee - kept) / USDC_SCALE;
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      const now = await f.engine.accountState(f.id);
      expect(now.equity).to.equal(st.equity - fee - amount * USDC_SCALE);
      expect(now.equity).to.be.gte(kept);
      expect(now.equity - kept).to.be.lessThan(USDC_SCALE);
    });

    it("does not release the idle margin of an account without positions (nothing is at risk)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.engine.connect(f.alice).modifyPosition(f.id, f.ethMarket, -E18(10), 0n);
      expect(await f.engine.positionMask(f.id)).to.equal(0n);
      await expect(f.rebalancer.rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.InBand);
    });

    it("does not release when RELEASE is not allowed, however high health is", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { actions: ACTION.TOP_UP | ACTION.REDUCE });
      await expect(f.rebalancer.rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.InBand);
    });
  });

  describe("rebalance › keeper fee", () => {
    it("is baseFee + gasUnits × block.basefee × ETH price, capped by the policy; the gas price bid adds nothing", async () => {
      const f = await loadFixture(rebalanceFixture);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const fee = expectedFee(E18(px), f.policy.maxFeeUsd);
      // 1 USD + 600,000 gas × 10 gwei × price: about 12 USD at ~1,900, below the 50 USD cap.
      expect(fee).to.equal(wad("1") + (600_000n * BASE_FEE * E18(px)) / WAD - (((600_000n * BASE_FEE * E18(px)) / WAD + wad("1")) % USDC_SCALE));
      const keeper0 = await f.engine.keeperRewardsOf(f.keeper.address);
      await pinBaseFee();
      // A keeper bidding 1,000 gwei of priority fee is paid the same as one bidding nothing.
      await f.rebalancer.connect(f.keeper).rebalance(f.id, { maxFeePerGas: 10n ** 12n, maxPriorityFeePerGas: 10n ** 12n - BASE_FEE });
      expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(keeper0 + fee / USDC_SCALE);
    });

    it("is capped by maxFeeUsd when the base fee spikes", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { maxFeeUsd: wad("5") });
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const keeper0 = await f.engine.keeperRewardsOf(f.keeper.address);
      await pinBaseFee(10n ** 12n); // 1,000 gwei: uncapped the fee would be ~1,100 USD
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(keeper0 + USDC(5));
    });
  });

  describe("rebalance › eligibility", () => {
    it("reverts NothingToRebalance inside the band, with needsRebalance saying InBand", async () => {
      const f = await loadFixture(rebalanceFixture);
      await moveEthUntil(f, f.id, 2000n, -5n, (h) => h >= wad("2") && h <= wad("6"));
      await expect(f.rebalancer.rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      const [needed, status, plan] = await f.rebalancer.needsRebalance(f.id);
      expect([needed, status, plan.action]).to.deep.equal([false, STATUS.InBand, 0n]);
    });

    it("honours the cooldown: a second rebalance waits for it", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { cooldown: 3600 });
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id); // RELEASE from the fixture's high health
      const at = await time.latest();
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await expect(f.rebalancer.rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Cooldown);
      await time.increaseTo(at + 3600);
      await setEth(f, BigInt((await f.ethFeed.latestRoundData())[1]) / 10n ** 8n); // fresh round after the wait
      expect((await f.rebalancer.needsRebalance(f.id))[0]).to.equal(true);
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id)).to.emit(f.rebalancer, "Rebalanced");
    });

    it("leaves an account below 1 that its reserve cannot rescue to liquidation: Liquidatable, and liquidate still works", async () => {
      // Below 1 only a rescue from the reserve may act (test/rebalancer/Rescue.test.ts); without a reserve, or
      // without TOP_UP in the policy, the account is the liquidator's.
      const f = await loadFixture(rebalanceFixture);
      await withdrawReserve(f, 0n, 0n);
      const beforeCrash = await takeSnapshot();
      await moveEthUntil(f, f.id, 2000n, -5n, (h) => h < WAD);
      let h = (await f.engine.accountState(f.id)).health;
      expect(await f.engine.rescueAvailable(f.id)).to.equal(false);
      await expect(f.rebalancer.rebalance(f.id))
        .to.be.revertedWithCustomError(f.rebalancer, "Liquidatable")
        .withArgs(f.id, h);
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Liquidatable);
      // A policy without TOP_UP: Liquidatable whatever the reserve holds. (Set in band, before the same crash: a
      // policy that may REDUCE cannot be set below its trigger, BelowRebalanceTrigger.)
      await beforeCrash.restore();
      await withPolicy(f, { actions: ACTION.REDUCE | ACTION.RELEASE });
      await moveEthUntil(f, f.id, 2000n, -5n, (h) => h < WAD);
      h = (await f.engine.accountState(f.id)).health;
      await fundReserve(f, f.alice, f.id, USDC(1_000), E18(2));
      expect(await f.engine.rescueAvailable(f.id)).to.equal(false);
      await expect(f.rebalancer.rebalance(f.id))
        .to.be.revertedWithCustomError(f.rebalancer, "Liquidatable")
        .withArgs(f.id, h);
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Liquidatable);
      await expect(f.engine.connect(f.keeper).liquidate(f.id)).to.emit(f.engine, "Liquidated");
    });

    it("reverts OracleUnhealthy when a price the account needs is stale", async () => {
      const f = await loadFixture(rebalanceFixture);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await time.increase(2 * 3600 + 1); // past the feed's heartbeat
      await expect(f.rebalancer.rebalance(f.id))
        .to.be.revertedWithCustomError(f.rebalancer, "OracleUnhealthy")
        .withArgs(await f.weth.getAddress());
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.OracleUnhealthy);
    });

    it("rejects accounts that did not opt in, and accounts whose owner opted out", async () => {
      const f = await loadFixture(rebalanceFixture);
      const bobId = await openLong(f, f.bob, USDC(4_000), E18(10));
      await expect(f.rebalancer.rebalance(bobId))
        .to.be.revertedWithCustomError(f.rebalancer, "NotOptedIn")
        .withArgs(bobId);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Ready);
      // actions 0 opts out: the policy is cleared, and the account is no longer the rebalancer's to touch.
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...f.policy, actions: 0 });
      expect((await f.engine.rebalancePolicy(f.id)).triggerRatio).to.equal(0n);
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.NotOptedIn);
      await expect(f.rebalancer.rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NotOptedIn").withArgs(f.id);
    });
  });

  describe("rebalanceBatch and Chainlink Automation", () => {
    async function mixed() {
      const f = await loadFixture(rebalanceFixture);
      const inBand = await openLong(f, f.bob, USDC(40_000), E18(10)); // opted in, far above trigger, release off
      await f.engine.connect(f.bob).setRebalancePolicy(inBand, { ...f.policy, releaseRatio: 0n, actions: ACTION.TOP_UP });
      const notOptedIn = await openLong(f, f.bob, USDC(4_000), E18(10));
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      return { f, inBand, notOptedIn };
    }

    it("rebalanceBatch rebalances the eligible and skips the rest without reverting", async () => {
      const { f, inBand, notOptedIn } = await mixed();
      const ids = [notOptedIn, f.id, inBand, 999n];
      expect(await f.rebalancer.connect(f.keeper).rebalanceBatch.staticCall(ids)).to.equal(1n);
      await pinBaseFee();
      const tx = f.rebalancer.connect(f.keeper).rebalanceBatch(ids);
      await expect(tx).to.emit(f.rebalancer, "Rebalanced");
      await expect(tx).to.emit(f.rebalancer, "RebalanceSkipped").withArgs(notOptedIn, STATUS.NotOptedIn);
      await expect(tx).to.emit(f.rebalancer, "RebalanceSkipped").withArgs(inBand, STATUS.InBand);
      await expect(tx).to.emit(f.rebalancer, "RebalanceSkipped").withArgs(999n, STATUS.NotOptedIn);
      expect((await f.engine.accountState(f.id)).health).to.be.gte(T);
    });

    it("checkUpkeep finds exactly the accounts that need it and performUpkeep rebalances them", async () => {
      const { f } = await mixed();
      const window = ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "uint256"], [1n, 10n]);
      const [needed, data] = await f.rebalancer.checkUpkeep(window);
      expect(needed).to.equal(true);
      expect(ethers.AbiCoder.defaultAbiCoder().decode(["uint256[]"], data)[0]).to.deep.equal([f.id]);
      await pinBaseFee();
      await expect(f.rebalancer.connect(f.keeper).performUpkeep(data)).to.emit(f.rebalancer, "Rebalanced");
      const [again] = await f.rebalancer.checkUpkeep(window);
      expect(again).to.equal(false);
      // A window past the registry (even one whose end would overflow) finds nothing.
      const beyond = ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "uint256"], [ethers.MaxUint256, 10n]);
      expect(await f.rebalancer.checkUpkeep(beyond)).to.deep.equal([false, ethers.AbiCoder.defaultAbiCoder().encode(["uint256[]"], [[]])]);
      // performUpkeep re-validates: replaying the same data now skips the account.
      await expect(f.rebalancer.connect(f.keeper).performUpkeep(data))
        .to.emit(f.rebalancer, "RebalanceSkipped")
        .withArgs(f.id, STATUS.InBand);
    });

    it("performUpkeep credits the owner's fee recipient (Chainlink's forwarder cannot claim), which claims it from the pool", async () => {
      const { f } = await mixed();
      await expect(f.rebalancer.connect(f.keeper).setUpkeepFeeRecipient(f.keeper.address))
        .to.be.revertedWithCustomError(f.rebalancer, "OwnableUnauthorizedAccount")
        .withArgs(f.keeper.address);
      await expect(f.rebalancer.setUpkeepFeeRecipient(f.deployer.address))
        .to.emit(f.rebalancer, "UpkeepFeeRecipientSet")
        .withArgs(f.deployer.address);
      const [, data] = await f.rebalancer.checkUpkeep(ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "uint256"], [1n, 10n]));
      const px = BigInt((await f.ethFeed.latestRoundData())[1]) * 10n ** 10n;
      const fee = expectedFee(px, f.policy.maxFeeUsd);
      const d0 = await f.engine.keeperRewardsOf(f.deployer.address);
      const k0 = await f.engine.keeperRewardsOf(f.keeper.address);
      await pinBaseFee();
      await expect(f.rebalancer.connect(f.keeper).performUpkeep(data))
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(f.id, ACTION.TOP_UP, (h: bigint) => h < wad("2"), (h: bigint) => h >= T, (v: bigint) => v > 0n, 0n, 0n, fee, f.deployer.address);
      expect(d0).to.equal(0n);
      expect(await f.engine.keeperRewardsOf(f.deployer.address)).to.equal(fee / USDC_SCALE);
      expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(k0);
      // The recipient claims what it was credited: the pool pays it, LP capital does not move.
      const capital0 = await f.pool.capital();
      const pool0 = await f.engine.poolBalance();
      await expect(f.engine.connect(f.deployer).claimKeeperRewards(f.bob.address))
        .to.emit(f.engine, "KeeperRewardsClaimed")
        .withArgs(f.deployer.address, f.bob.address, fee / USDC_SCALE);
      expect(await f.engine.poolBalance()).to.equal(pool0 - fee / USDC_SCALE);
      expect(await f.pool.capital()).to.equal(capital0);
      expect(await f.engine.keeperRewardsOf(f.deployer.address)).to.equal(0n);
      await expect(f.engine.connect(f.deployer).claimKeeperRewards(f.deployer.address))
        .to.be.revertedWithCustomError(f.engine, "NothingToClaim")
        .withArgs(f.deployer.address);
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(ethers.ZeroAddress)).to.be.revertedWithCustomError(f.engine, "ZeroAddress");
    });

    it("two keepers racing for one account: the second is a cheap revert and the fee is paid once", async () => {
      const f = await loadFixture(rebalanceFixture);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const k0 = await f.engine.keeperRewardsOf(f.keeper.address);
      const b0 = await f.usdc.balanceOf(f.bob.address);
      await network.provider.send("evm_setAutomine", [false]);
      try {
        const first = await f.rebalancer.connect(f.keeper).rebalance(f.id, { gasLimit: 2_000_000 });
        const second = await f.rebalancer.connect(f.bob).rebalance(f.id, { gasLimit: 2_000_000 });
        await network.provider.send("evm_mine", []);
        const r1 = await ethers.provider.getTransactionReceipt(first.hash);
        const r2 = await ethers.provider.getTransactionReceipt(second.hash);
        expect(r1!.status).to.equal(1);
        expect(r2!.status).to.equal(0);
        // The loser stops at the one-rebalance-per-block gate: two storage reads, no oracle touched.
        expect(r2!.gasUsed).to.be.lessThan(60_000n);
      } finally {
        await network.provider.send("evm_setAutomine", [true]);
      }
      const block = await ethers.provider.getBlock("latest");
      const ethPx = BigInt((await f.ethFeed.latestRoundData())[1]) * 10n ** 10n;
      const fee = expectedFee(ethPx, f.policy.maxFeeUsd, block!.baseFeePerGas!);
      expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(k0 + fee / USDC_SCALE);
      expect(await f.usdc.balanceOf(f.bob.address)).to.equal(b0);
    });
  });

  describe("policy", () => {
    const cases: Array<[string, (p: PolicyIn) => PolicyIn, string]> = [
      ["trigger at or below 1", (p) => ({ ...p, triggerRatio: WAD }), "PolicyTriggerTooLow"],
      ["target closer than the band to trigger", (p) => ({ ...p, targetRatio: p.triggerRatio + wad("0.04") }), "PolicyBandTooNarrow"],
      ["target above 10", (p) => ({ ...p, targetRatio: wad("10.5"), releaseRatio: 0n, actions: ACTION.TOP_UP }), "PolicyTargetTooHigh"],
      ["release closer than the band to target", (p) => ({ ...p, releaseRatio: p.targetRatio + wad("0.01") }), "PolicyBandTooNarrow"],
      ["an unknown action bit", (p) => ({ ...p, actions: 16 }), "PolicyUnknownActions"],
      ["reduce-first without reduce", (p) => ({ ...p, actions: ACTION.TOP_UP | ACTION.REDUCE_FIRST }), "PolicyUnknownActions"],
      ["RELEASE with release off", (p) => ({ ...p, releaseRatio: 0n }), "PolicyReleaseRatioMissing"],
      ["TOP_UP with no assets", (p) => ({ ...p, topUpAssets: [] }), "PolicyTopUpAssetsMissing"],
      ["a cooldown above a day", (p) => ({ ...p, cooldown: 86_401 }), "PolicyCooldownTooLong"],
      ["a fee cap above 1,000 USD", (p) => ({ ...p, maxFeeUsd: wad("1000.000001") }), "PolicyFeeTooHigh"],
      ["release above 16", (p) => ({ ...p, releaseRatio: wad("16.000001") }), "PolicyReleaseTooHigh"],
      ["a trigger finer than a millionth", (p) => ({ ...p, triggerRatio: p.triggerRatio + 1n }), "PolicyRatioPrecision"],
      ["a target finer than a millionth", (p) => ({ ...p, targetRatio: p.targetRatio - 10n ** 11n }), "PolicyRatioPrecision"],
      ["a release finer than a millionth", (p) => ({ ...p, releaseRatio: p.releaseRatio + 10n ** 12n + 1n }), "PolicyRatioPrecision"],
    ];
    for (const [what, make, error] of cases) {
      it(`rejects ${what} with ${error} and keeps the old policy`, async () => {
        const f = await loadFixture(rebalanceFixture);
        await expect(f.engine.connect(f.alice).setRebalancePolicy(f.id, make(f.policy))).to.be.revertedWithCustomError(
          f.engine,
          error,
        );
        expect((await f.engine.rebalancePolicy(f.id)).targetRatio).to.equal(T);
      });
    }

    it("rejects unlisted, duplicate and too many assets by name", async () => {
      const f = await loadFixture(rebalanceFixture);
      const e = f.engine.connect(f.alice);
      const usdc = await f.usdc.getAddress();
      await expect(e.setRebalancePolicy(f.id, { ...f.policy, topUpAssets: [f.alice.address] }))
        .to.be.revertedWithCustomError(f.engine, "PolicyAssetNotListed")
        .withArgs(f.alice.address);
      await expect(e.setRebalancePolicy(f.id, { ...f.policy, topUpAssets: [usdc, usdc] }))
        .to.be.revertedWithCustomError(f.engine, "PolicyDuplicateAsset")
        .withArgs(usdc);
      await expect(e.setRebalancePolicy(f.id, { ...f.policy, topUpAssets: Array(9).fill(usdc) }))
        .to.be.revertedWithCustomError(f.engine, "PolicyTooManyAssets")
        .withArgs(9, 8);
    });

    it("names the ratio the policy slot cannot keep exactly (millionths) and the release above 16, with their values", async () => {
      const f = await loadFixture(rebalanceFixture);
      const e = f.engine.connect(f.alice);
      const fine = wad("2") + 999_999_999_999n; // 2.000000999…: one wei short of the next millionth
      await expect(e.setRebalancePolicy(f.id, { ...f.policy, triggerRatio: fine }))
        .to.be.revertedWithCustomError(f.engine, "PolicyRatioPrecision")
        .withArgs(fine, 10n ** 12n);
      await expect(e.setRebalancePolicy(f.id, { ...f.policy, releaseRatio: wad("6") + 1n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyRatioPrecision")
        .withArgs(wad("6") + 1n, 10n ** 12n);
      await expect(e.setRebalancePolicy(f.id, { ...f.policy, releaseRatio: wad("16") + 10n ** 12n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyReleaseTooHigh")
        .withArgs(wad("16") + 10n ** 12n, wad("16"));
      expect((await f.engine.rebalancePolicy(f.id)).triggerRatio).to.equal(wad("2"));
      // The extremes it keeps exactly: ratios one millionth apart, target 10, release 16, fee cap 1,000 USD.
      const edge = { ...f.policy, triggerRatio: wad("9.949999"), targetRatio: wad("10"), releaseRatio: wad("16"), maxFeeUsd: wad("1000") };
      await e.setRebalancePolicy(f.id, edge);
      const stored = await f.engine.rebalancePolicy(f.id);
      expect([stored.triggerRatio, stored.targetRatio, stored.releaseRatio, stored.maxFeeUsd]).to.deep.equal([
        wad("9.949999"), wad("10"), wad("16"), wad("1000"),
      ]);
      await e.setRebalancePolicy(f.id, { ...edge, triggerRatio: wad("1.000001"), targetRatio: wad("1.050001"), releaseRatio: wad("1.100001") });
      const low = await f.engine.rebalancePolicy(f.id);
      expect([low.triggerRatio, low.targetRatio, low.releaseRatio]).to.deep.equal([wad("1.000001"), wad("1.050001"), wad("1.100001")]);
    });

    it("stores up to 8 top-up assets packed as listing indices and gives them back as addresses, in the owner's order", async () => {
      const f = await loadFixture(rebalanceFixture);
      const factory = await ethers.getContractFactory("MockERC20");
      const listed = [await f.usdc.getAddress(), await f.weth.getAddress(), await f.wbtc.getAddress()];
      expect(await f.vault.listedAssets()).to.deep.equal(listed);
      for (let i = listed.length; i < 16; i++) {
        const token = await factory.deploy(`T${i}`, `T${i}`, 18);
        await f.vault.listAsset(token, wad("0.5"));
        listed.push(await token.getAddress());
      }
      // Eight of the sixteen listings, the highest index first (bits 0-3 = 0xF), USDC (index 0) last; every field at a
      // value of its own.
      const eight = [...listed.slice(9).reverse(), listed[0]];
      const policy = { ...f.policy, cooldown: 86_400, maxFeeUsd: wad("999.5"), topUpAssets: eight };
      await expect(f.engine.connect(f.alice).setRebalancePolicy(f.id, policy))
        .to.emit(f.engine, "RebalancePolicySet")
        .withArgs(f.id, [ACTION.ALL, 86_400n, wad("2"), wad("3"), wad("6"), wad("999.5"), eight]);
      const stored = await f.engine.rebalancePolicy(f.id);
      expect([stored.actions, stored.cooldown, stored.triggerRatio, stored.targetRatio, stored.releaseRatio, stored.maxFeeUsd]).to.deep.equal([
        BigInt(ACTION.ALL), 86_400n, wad("2"), wad("3"), wad("6"), wad("999.5"),
      ]);
      expect(stored.topUpAssets).to.deep.equal(eight);
      // A shorter policy replaces it entirely: no index of the longer one survives.
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...policy, topUpAssets: [listed[2], listed[0]] });
      expect((await f.engine.rebalancePolicy(f.id)).topUpAssets).to.deep.equal([listed[2], listed[0]]);
    });

    it("is set by the owner or an operator only, and actions 0 opts out (the policy is cleared, the event says so)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await expect(f.engine.connect(f.bob).setRebalancePolicy(f.id, f.policy))
        .to.be.revertedWithCustomError(f.engine, "NotAuthorized")
        .withArgs(f.id, f.bob.address);
      await f.vault.connect(f.alice).setOperator(f.id, f.bob.address, true);
      // The other fields of an opt-out are ignored (here they would even break the rules): nothing is stored.
      await expect(f.engine.connect(f.bob).setRebalancePolicy(f.id, { ...f.policy, actions: 0, triggerRatio: WAD, topUpAssets: [] }))
        .to.emit(f.engine, "RebalancePolicySet")
        .withArgs(f.id, [0n, 0n, 0n, 0n, 0n, 0n, []]);
      const cleared = await f.engine.rebalancePolicy(f.id);
      expect([cleared.actions, cleared.cooldown, cleared.triggerRatio, cleared.targetRatio, cleared.releaseRatio, cleared.maxFeeUsd]).to.deep.equal([0n, 0n, 0n, 0n, 0n, 0n]);
      expect(cleared.topUpAssets).to.deep.equal([]);
      await expect(f.rebalancer.rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NotOptedIn").withArgs(f.id);
    });
  });

  describe("oracle › poke cache", () => {
    it("serves the price it accepted earlier in the same transaction (each feed read once per batch)", async () => {
      const f = await loadFixture(rebalanceFixture);
      const pusher = await (await ethers.getContractFactory("FeedPusher")).deploy();
      const [first, second, viewed] = await pusher.pokeMovePoke.staticCall(f.ethFeed, f.oracle, f.weth, 1990n * 10n ** 8n);
      expect(first).to.equal(E18(2000));
      expect(second).to.equal(E18(2000));
      expect(viewed).to.equal(E18(2000)); // the views serve the accepted price too
      // The next transaction reads the feed again.
      await pusher.pokeMovePoke(f.ethFeed, f.oracle, f.weth, 1990n * 10n ** 8n);
      const [, price] = await f.oracle.poke.staticCall(f.weth);
      expect(price).to.equal(E18(1990));
    });
  });
});
