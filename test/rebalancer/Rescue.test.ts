import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, takeSnapshot, time } from "@nomicfoundation/hardhat-network-helpers";

import { DEFAULT_RISK, HAIRCUTS, MAJOR_MARKET, wad } from "../../deploy/params";
import { E18, USDC } from "../helpers/fixtures";
import {
  USDC_SCALE,
  WAD,
  liquidationFraction,
  mulDivUp,
  valuation,
  wDivDown,
  type AccountIn,
  type StateOut,
} from "../helpers/marginMath";
import {
  ACTION,
  STATUS,
  BASE_FEE,
  pinBaseFee,
  planRestore,
  rebalanceFixture,
  rescueFee,
  rescueRequirement,
  reserveCanRescue,
  setEth,
  targetRequirement,
  type PolicyIn,
  type RebalanceFixture,
  type ReserveIn,
} from "../helpers/rebalance";

/*
 * Rescue below 1 (README "Rescue below 1", issue 9): an account below health 1 whose own reserve, under its
 * policy, can lift it to the liquidation target (1.2) against the maintenance margin at the current volatility
 * (mmNow, what the liquidation it pre-empts would restore), with one USDC unit to spare for the settle's rounding,
 * is rescued by the rebalancer, and liquidation waits for it; as soon as the rescue cannot happen, liquidation
 * proceeds. Here σ = σ_mm (the floor): mmNow = MM.
 *
 * Alice's account (test/helpers/rebalance.ts): 4,000 USDC of margin (3,990 after the open's fee), a 10 ETH long
 * at 2,000, a reserve of 1,000 USDC and 2 WETH, policy trigger 2 / target 3 / release 6, all actions, fee cap
 * 50 USD, no cooldown. ETH falls 19 % in one round to 1,620: health 0.739 by price alone (σ and σ_mm at their
 * floor within the fixture's grid interval), every value below from the mirrors of test/helpers/.
 */

const LIQ_TARGET = DEFAULT_RISK.liquidationTargetRatio;
const R = DEFAULT_RISK.keeperReward;
const M = { ...MAJOR_MARKET, maxFundingRate: 0n };
const CRASH = 1620n;
const PX = E18(CRASH);
const FLOOR = wad("0.1");

/** Alice's account as the valuation mirror sees it, with `usdcMargin` USDC units of margin and `wethMargin`. */
function aliceIn(px: bigint, usdcMargin = USDC(3_990), wethMargin = 0n, size = E18(10)): AccountIn {
  return {
    collateral: [
      { amount: usdcMargin, price: WAD, decimals: 6, haircut: HAIRCUTS.USDC },
      { amount: wethMargin, price: px, decimals: 18, haircut: HAIRCUTS.WETH },
    ],
    settlement: 0n,
    positions: [{ size, entryPrice: E18(2000), entryFunding: 0n, index: 0n, price: px, market: M, vol: FLOOR, mmVol: FLOOR }],
  };
}

async function withPolicy(f: RebalanceFixture, change: Partial<PolicyIn>): Promise<PolicyIn> {
  const policy = { ...f.policy, ...change };
  await f.engine.connect(f.alice).setRebalancePolicy(f.id, policy);
  return policy;
}

/** The account's reserves in policy order (USDC, WETH), as the mirrors take them. */
async function reservesOf(f: RebalanceFixture, px: bigint): Promise<ReserveIn[]> {
  return [
    { asset: await f.usdc.getAddress(), available: await f.vault.reserveOf(f.id, f.usdc), price: WAD, decimals: 6n, haircut: HAIRCUTS.USDC },
    { asset: await f.weth.getAddress(), available: await f.vault.reserveOf(f.id, f.weth), price: px, decimals: 18n, haircut: HAIRCUTS.WETH },
  ];
}

/** ETH to 1,620 and the account's state, checked against the mirror (health 0.739). */
async function crash(f: RebalanceFixture): Promise<StateOut> {
  await setEth(f, CRASH);
  const expected = valuation(aliceIn(PX), DEFAULT_RISK);
  const st = await f.engine.accountState(f.id);
  expect(st.health).to.equal(expected.health);
  expect(st.equity).to.equal(expected.equity);
  expect(st.maintenanceMargin).to.equal(expected.maintenanceMargin);
  expect(expected.health).to.equal(739_174_568_272_019_160n);
  expect(expected.mmNow).to.equal(expected.maintenanceMargin); // σ = σ_mm: the current volatility's MM is MM
  return expected;
}

/** The revert data of a mined transaction that failed, decoded as an engine error. */
async function engineErrorOf(f: RebalanceFixture, hash: string) {
  const trace = await network.provider.send("debug_traceTransaction", [hash, { disableStorage: true, disableStack: true }]);
  return f.engine.interface.parseError("0x" + (trace.returnValue as string).replace(/^0x/, ""));
}

describe("Rescue below 1", () => {
  it("an account below 1 with a policy and an adequate reserve: liquidation waits (RescueAvailable), the rescue tops up to max(target, 1.2)", async () => {
    const f = await loadFixture(rebalanceFixture);
    const st = await crash(f);
    expect(reserveCanRescue(st, f.policy.maxFeeUsd, await reservesOf(f, PX))).to.equal(true);
    expect(await f.engine.rescueAvailable(f.id)).to.equal(true);
    expect(await f.engine.liquidationFraction(f.id)).to.equal(0n);
    await expect(f.engine.connect(f.keeper).liquidate(f.id))
      .to.be.revertedWithCustomError(f.engine, "RescueAvailable")
      .withArgs(f.id);
    const [needed, status] = await f.rebalancer.needsRebalance(f.id);
    expect([needed, status]).to.deep.equal([true, STATUS.Ready]);

    // The plan: TOP_UP toward max(policy target 3, liquidation target 1.2) = 3 with the rescue's fee (10.72 USD
    // at 10 gwei, above the 5 USD reward), from the USDC reserve first; 3 × MM is above the rescue's own
    // requirement ⌈1.2 × mmNow⌉ + one USDC unit.
    const [inputs, closeFee, mmNow] = await f.engine.rebalanceInputs(f.id);
    expect(mmNow).to.equal(st.mmNow);
    const fee = rescueFee(PX, f.policy.maxFeeUsd);
    expect(fee).to.equal(wad("10.72"));
    const required = rescueRequirement(LIQ_TARGET, st.mmNow);
    expect(required).to.be.lt(targetRequirement(wad("3"), st.maintenanceMargin));
    const plan = planRestore(wad("3"), inputs, closeFee, fee, R, await reservesOf(f, PX), required);
    expect(plan.action).to.equal(ACTION.TOP_UP);
    expect(plan.assets).to.deep.equal([await f.usdc.getAddress()]);
    await pinBaseFee();
    const tx = f.rebalancer.connect(f.keeper).rebalance(f.id);
    const hAfter = wDivDown(st.equity - fee + plan.toppedUpUsd, st.maintenanceMargin);
    await expect(tx)
      .to.emit(f.rebalancer, "Rebalanced")
      .withArgs(f.id, ACTION.TOP_UP, st.health, hAfter, plan.toppedUpUsd, 0n, 0n, fee, f.keeper.address);
    expect(plan.toppedUpUsd).to.equal(EXPECTED.topUpToTarget3);
    expect(hAfter).to.be.gte(wad("3"));
    expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(1_000) - plan.amounts[0]);

    // Rescued: not liquidatable any more, and no rescue pending.
    expect(await f.engine.rescueAvailable(f.id)).to.equal(false);
    await expect(f.engine.connect(f.keeper).liquidate(f.id))
      .to.be.revertedWithCustomError(f.engine, "NotLiquidatable")
      .withArgs(f.id, hAfter);
  });

  it("with a policy target below 1.2 the rescue aims at the liquidation target, 1.2", async () => {
    const f = await loadFixture(rebalanceFixture);
    await withPolicy(f, { actions: ACTION.TOP_UP, triggerRatio: wad("1.05"), targetRatio: wad("1.1"), releaseRatio: 0n });
    const st = await crash(f);
    expect(await f.engine.rescueAvailable(f.id)).to.equal(true);
    const [inputs, closeFee, mmNow] = await f.engine.rebalanceInputs(f.id);
    expect(mmNow).to.equal(st.mmNow);
    const fee = rescueFee(PX, f.policy.maxFeeUsd);
    // The rescue's requirement: ⌈1.2 × mmNow⌉ + one USDC unit (the settle after the fee rounds against the account).
    const required = rescueRequirement(LIQ_TARGET, st.mmNow);
    expect(required).to.equal(targetRequirement(LIQ_TARGET, st.maintenanceMargin) + USDC_SCALE);
    const plan = planRestore(LIQ_TARGET, inputs, closeFee, fee, R, await reservesOf(f, PX), required);
    // ΔC = ⌈1.2 × mmNow⌉ + 1e12 − (E − fee), whole USDC units rounded up.
    expect(plan.toppedUpUsd).to.equal(mulDivUp(required - (st.equity - fee), 1n, USDC_SCALE) * USDC_SCALE);
    await pinBaseFee();
    const hAfter = wDivDown(st.equity - fee + plan.toppedUpUsd, st.maintenanceMargin);
    await expect(f.rebalancer.connect(f.keeper).rebalance(f.id))
      .to.emit(f.rebalancer, "Rebalanced")
      .withArgs(f.id, ACTION.TOP_UP, st.health, hAfter, plan.toppedUpUsd, 0n, 0n, fee, f.keeper.address);
    // At the liquidation target with the unit to spare, overshooting it by less than one more USDC unit of equity.
    expect(hAfter).to.be.gte(LIQ_TARGET);
    expect(st.equity - fee + plan.toppedUpUsd).to.be.gte(required);
    expect(st.equity - fee + plan.toppedUpUsd - required).to.be.lessThan(USDC_SCALE);
    expect(hAfter).to.equal(EXPECTED.hAfterAtLiquidationTarget);
  });

  it("with a reserve one USDC unit too small: no rescue, liquidation proceeds; one unit more and the rescue comes first", async () => {
    const f = await loadFixture(rebalanceFixture);
    // The reserve is set before the crash: below its trigger an account whose policy may REDUCE keeps its top-up
    // reserve (BelowRebalanceTrigger, test/engine/Orders.test.ts), and the crash's state does not depend on it.
    await f.vault.connect(f.alice).withdraw(f.id, f.weth, E18(2), f.alice.address);
    await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(1_000) - (EXPECTED.leastReserveUsdc - 1n), f.alice.address);
    const st = await crash(f);
    // The least USDC reserve that lifts E − maxFeeUsd − one USDC unit (the settle's rounding) to 1.2 × mmNow (= MM
    // here): 1.2 × 257.04 − (190 − 50 − 0.000001), rounded up to a unit.
    const least = mulDivUp(targetRequirement(LIQ_TARGET, st.mmNow) - (st.equity - f.policy.maxFeeUsd - USDC_SCALE), 1n, USDC_SCALE);
    expect(least).to.equal(EXPECTED.leastReserveUsdc);
    expect(reserveCanRescue(st, f.policy.maxFeeUsd, await reservesOf(f, PX))).to.equal(false);
    expect(await f.engine.rescueAvailable(f.id)).to.equal(false);
    const lf = liquidationFraction(st, DEFAULT_RISK);
    expect(await f.engine.liquidationFraction(f.id)).to.equal(lf.f);
    // A keeper could still rescue it (its fee, 10.72 USD, is below the 50 USD cap the engine's rule counts):
    // possible but not prioritised, the first transaction wins.
    expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Ready);
    const snap = await takeSnapshot();
    await f.usdc.mint(f.alice.address, 1n); // 1 unit more: the rescue has priority again
    await f.usdc.connect(f.alice).approve(f.vault, 1n);
    await f.vault.connect(f.alice).deposit(f.id, f.usdc, 1n);
    expect(await f.engine.rescueAvailable(f.id)).to.equal(true);
    await expect(f.engine.connect(f.keeper).liquidate(f.id)).to.be.revertedWithCustomError(f.engine, "RescueAvailable");
    await snap.restore();
    await expect(f.engine.connect(f.keeper).liquidate(f.id)).to.emit(f.engine, "Liquidated");
    expect((await f.engine.position(f.id, f.ethMarket)).size).to.be.lessThan(E18(10));
  });

  it("with maxFeeUsd below the keeper reward the rescue is not prioritised (liquidation proceeds), though a keeper may still rescue", async () => {
    const f = await loadFixture(rebalanceFixture);
    await withPolicy(f, { maxFeeUsd: wad("4") }); // < keeperReward 5
    const st = await crash(f);
    expect(reserveCanRescue(st, wad("4"), await reservesOf(f, PX))).to.equal(true); // the reserve is ample
    expect(await f.engine.rescueAvailable(f.id)).to.equal(false);
    expect(await f.engine.liquidationFraction(f.id)).to.equal(liquidationFraction(st, DEFAULT_RISK).f);

    // Either comes first. A keeper's rescue at the owner's 4 USD cap:
    const snap = await takeSnapshot();
    const [inputs, closeFee] = await f.engine.rebalanceInputs(f.id);
    const fee = rescueFee(PX, wad("4"));
    expect(fee).to.equal(wad("4"));
    const plan = planRestore(wad("3"), inputs, closeFee, fee, R, await reservesOf(f, PX), rescueRequirement(LIQ_TARGET, st.mmNow));
    await pinBaseFee();
    const hAfter = wDivDown(st.equity - fee + plan.toppedUpUsd, st.maintenanceMargin);
    await expect(f.rebalancer.connect(f.keeper).rebalance(f.id))
      .to.emit(f.rebalancer, "Rebalanced")
      .withArgs(f.id, ACTION.TOP_UP, st.health, hAfter, plan.toppedUpUsd, 0n, 0n, fee, f.keeper.address);
    await expect(f.engine.connect(f.keeper).liquidate(f.id))
      .to.be.revertedWithCustomError(f.engine, "NotLiquidatable")
      .withArgs(f.id, hAfter);
    // ... or the liquidation.
    await snap.restore();
    await expect(f.engine.connect(f.keeper).liquidate(f.id)).to.emit(f.engine, "Liquidated");
  });

  it("in the policy's cooldown liquidation proceeds; at rebalanceReadyAt the rescue has priority again", async () => {
    const f = await loadFixture(rebalanceFixture);
    await withPolicy(f, { cooldown: 600 });
    await setEth(f, 1650n); // health 1.91, below the trigger 2: a TOP_UP to 3
    await pinBaseFee();
    await f.rebalancer.connect(f.keeper).rebalance(f.id);
    const readyAt = BigInt(await time.latest()) + 600n;
    expect(await f.engine.rebalanceReadyAt(f.id)).to.equal(readyAt);
    await setEth(f, 1590n); // −3.6 %: below 1 again, 10 minutes of cooldown left
    const st = await f.engine.accountState(f.id);
    expect(st.health).to.be.lessThan(WAD);
    const px = E18(1590);
    expect(reserveCanRescue(st, f.policy.maxFeeUsd, await reservesOf(f, px))).to.equal(true);
    expect(await f.engine.rescueAvailable(f.id)).to.equal(false);
    expect(await f.engine.liquidationFraction(f.id)).to.equal(liquidationFraction(st, DEFAULT_RISK).f);
    const [, status] = await f.rebalancer.needsRebalance(f.id);
    expect(status).to.equal(STATUS.Cooldown);

    const snap = await takeSnapshot();
    await time.increaseTo(readyAt);
    expect(await f.engine.rescueAvailable(f.id)).to.equal(true);
    expect(await f.engine.liquidationFraction(f.id)).to.equal(0n);
    await snap.restore();
    await expect(f.engine.connect(f.keeper).liquidate(f.id)).to.emit(f.engine, "Liquidated");
  });

  it("same block, liquidation first: it reverts RescueAvailable and the rescue after it succeeds; rescue first: the liquidation reverts NotLiquidatable", async () => {
    const f = await loadFixture(rebalanceFixture);
    const st = await crash(f);
    const liquidator = f.bob;
    // The rescue both orders lead to: TOP_UP to 3 at the block's 10 gwei base fee.
    const fee = rescueFee(PX, f.policy.maxFeeUsd, BASE_FEE);
    const plan = planRestore(wad("3"), st, 0n, fee, R, await reservesOf(f, PX), rescueRequirement(LIQ_TARGET, st.mmNow));
    const hAfter = wDivDown(st.equity - fee + plan.toppedUpUsd, st.maintenanceMargin);
    const snap = await takeSnapshot();
    for (const liquidationFirst of [true, false]) {
      await network.provider.send("evm_setAutomine", [false]);
      let liq: string;
      let rescue: string;
      try {
        const gas = { gasLimit: 3_000_000, maxFeePerGas: 10n ** 11n };
        // The first transaction pays the higher priority fee: the block orders it first.
        const first = { ...gas, maxPriorityFeePerGas: 2n * 10n ** 9n };
        const second = { ...gas, maxPriorityFeePerGas: 10n ** 9n };
        if (liquidationFirst) {
          liq = (await f.engine.connect(liquidator).liquidate(f.id, first)).hash;
          rescue = (await f.rebalancer.connect(f.keeper).rebalance(f.id, second)).hash;
        } else {
          rescue = (await f.rebalancer.connect(f.keeper).rebalance(f.id, first)).hash;
          liq = (await f.engine.connect(liquidator).liquidate(f.id, second)).hash;
        }
        await pinBaseFee();
        await network.provider.send("evm_mine", []);
      } finally {
        await network.provider.send("evm_setAutomine", [true]);
      }
      const rl = (await ethers.provider.getTransactionReceipt(liq))!;
      const rr = (await ethers.provider.getTransactionReceipt(rescue))!;
      expect(rl.blockNumber).to.equal(rr.blockNumber);
      expect([rl.index, rr.index]).to.deep.equal(liquidationFirst ? [0, 1] : [1, 0]);
      expect([rl.status, rr.status]).to.deep.equal([0, 1]);
      const err = await engineErrorOf(f, liq);
      if (liquidationFirst) {
        expect([err!.name, err!.args[0]]).to.deep.equal(["RescueAvailable", f.id]);
      } else {
        expect([err!.name, err!.args[0], err!.args[1]]).to.deep.equal(["NotLiquidatable", f.id, hAfter]);
      }
      expect((await f.engine.accountState(f.id)).health).to.equal(hAfter);
      expect(hAfter).to.be.gte(wad("3"));
      await snap.restore();
    }
  });
});

/** Figures of these tests (each also computed above from the mirrors). */
const EXPECTED = {
  topUpToTarget3: 591_850_427_000_000_000_000n, // 591.850427 USDC
  hAfterAtLiquidationTarget: 1_200_000_005_635_087_351n,
  leastReserveUsdc: 168_452_172n, // 168.452172 USDC
};
