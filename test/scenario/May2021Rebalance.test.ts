import { expect } from "chai";
import { ethers, network } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import type { ContractTransactionReceipt } from "ethers";

import { deployLocalSystem } from "../../deploy/system";
import { ACTION, CRYPTO_FEED, HAIRCUTS, wad } from "../../deploy/params";
import { loadPriceCsv } from "../../lib/prices";
import { E18, E8, USDC } from "../shared/fixtures";
import { mulDivCeilSigned, USDC_SCALE, WAD } from "../shared/marginMath";
import { expectedFee, planRestore, type ReserveIn } from "../shared/rebalance";

/*
 * May 2021 (16-24 May): the real Binance ETH/USDT hourly closes (data/, see data/SOURCES.md)
 * replayed through the mock feed, against two identical 2x ETH longs (10 ETH at 3,767, 18,835 USDC margin).
 * Alice has a reserve (2,000 USDC + 1 WETH, not margin) and a 1.3 / 1.6 TOP_UP|REDUCE policy; bob has
 * neither. Every hour: the feed gets the close (time t), the oracle is poked (t + 1), a keeper rebalances
 * alice when `needsRebalance` says so (t + 2), and a liquidator liquidates any account below health 1
 * (t + 3, t + 4). Each rebalance is checked against the DESIGN.md formulas ("Rebalancer", step 3 and 5)
 * evaluated on the engine's own inputs (`rebalanceInputs` in the rebalance's block context) and the
 * rebalance block's base fee, which the test sets (20 gwei) so the keeper fee's gas term is not zero.
 *
 * Why 2x and not the 5x of Black Thursday (explored with the same reserve and policy): with a maintenance
 * margin of ~9-21 % of notional (its volatility term follows the EWMA σ, 150-390 % a year here), the band
 * between the trigger 1.3 and 1 is a few percent of notional, less than one hourly close can move. At 5x
 * both accounts go from health 1.308 (just above the trigger: no rebalance) to 0.749 on 17 May 03:00
 * (−4.2 %) and are liquidated in the same hour. At 2.5x-4x alice is liquidated too, at the latest by the
 * −13.1 % close of 19 May 12:00, which also lifts σ from 212 % to 321 %: an account rebalanced to 1.6 the
 * hour before does not survive it. At 2x the control is liquidated three times and the policy account never.
 *
 * The 8-day low of the hourly closes is 1,848.11 on 23 May 16:00 (the 19 May low close is 2,365.18).
 */

const FILE = "eth_usdt_binance_1h_2021-05-16_2021-05-24.csv";
const SIZE = E18(10); // 10 ETH long
const LEVERAGE = 2n;
const RESERVE_USDC = USDC(2_000);
const RESERVE_WETH = E18(1);
const BASE_FEE = 20n * 10n ** 9n; // wei, set on each rebalance block
const POLICY = {
  actions: ACTION.TOP_UP | ACTION.REDUCE,
  cooldown: 0,
  triggerRatio: wad("1.3"),
  targetRatio: wad("1.6"),
  releaseRatio: 0n,
  maxFeeUsd: wad("50"),
};
const TX_FEES = { maxFeePerGas: 2n * BASE_FEE, maxPriorityFeePerGas: 0n };

describe("Scenario › May 2021 crash: an account with a 1.3/1.6 policy is never liquidated while the identical account without one is", function () {
  it("replays 192 hourly closes: alice is rescued 3 times (TOP_UP, TOP_UP|REDUCE, REDUCE), bob is liquidated at hours 96, 180, 184", async function () {
    const bars = loadPriceCsv(FILE, 8);
    expect(bars.length).to.equal(192);
    const [deployer, lp, alice, bob, keeper, liquidator] = await ethers.getSigners();

    const sys = await deployLocalSystem(deployer, { eth: bars[0].price, btc: E8(30000) });
    const { engine, oracle, pool, vault, usdc, weth, ethFeed, ethMarket, rebalancer } = sys;
    await usdc.mint(lp.address, USDC(1_000_000));
    await usdc.connect(lp).approve(pool, USDC(1_000_000));
    await pool.connect(lp).deposit(USDC(1_000_000), lp.address);
    const usdcAddr = await usdc.getAddress();
    const wethAddr = await weth.getAddress();

    // Two identical accounts: 2x, USDC margin = notional / 2 at the first close (37,670 USD ⇒ 18,835 USDC).
    const p0 = bars[0].price * 10n ** 10n;
    const margin = (SIZE * p0) / WAD / LEVERAGE / USDC_SCALE;
    expect(margin).to.equal(USDC(18_835));
    const ids: bigint[] = [];
    for (const who of [alice, bob]) {
      await vault.connect(who).createAccount();
      const id = await vault.accountCount();
      ids.push(id);
      await usdc.mint(who.address, margin);
      await usdc.connect(who).approve(vault, margin);
      await vault.connect(who).depositMargin(id, usdc, margin);
    }
    const [aliceId, bobId] = ids;

    // Alice's reserve (not margin: it does not count in her health until a rebalance moves it) and policy.
    await usdc.mint(alice.address, RESERVE_USDC);
    await usdc.connect(alice).approve(vault, RESERVE_USDC);
    await vault.connect(alice).deposit(aliceId, usdc, RESERVE_USDC);
    await weth.mint(alice.address, RESERVE_WETH);
    await weth.connect(alice).approve(vault, RESERVE_WETH);
    await vault.connect(alice).deposit(aliceId, weth, RESERVE_WETH);
    await engine.connect(alice).setRebalancePolicy(aliceId, {
      module: rebalancer,
      ...POLICY,
      topUpAssets: [usdc, weth],
    });
    expect(await vault.marginOf(aliceId, usdc)).to.equal(margin);
    expect(await vault.marginOf(aliceId, weth)).to.equal(0n);
    const keeperReward = (await engine.riskParams()).keeperReward;

    // Bar 0 at a chosen time `start` (the EWMA sees exactly the CSV's spacing; setFeed restarts σ at its
    // floor). Both longs open in one block at start + 3, so they are identical to the wei.
    const start = BigInt(await time.latest()) + 10n;
    await time.setNextBlockTimestamp(start);
    await ethFeed.setAnswer(bars[0].price);
    await time.setNextBlockTimestamp(start + 1n); // every block up to the open pinned: no wall clock
    await oracle.setFeed(weth, { feed: await ethFeed.getAddress(), ...CRYPTO_FEED });
    await time.setNextBlockTimestamp(start + 2n);
    await oracle.poke(weth);
    await network.provider.send("evm_setAutomine", [false]);
    const gas = { gasLimit: 1_000_000 }; // no estimate against a block that is not mined yet
    const openA = await engine.connect(alice).modifyPosition(aliceId, ethMarket, SIZE, ethers.MaxUint256, gas);
    const openB = await engine.connect(bob).modifyPosition(bobId, ethMarket, SIZE, ethers.MaxUint256, gas);
    await network.provider.send("evm_mine", [Number(start + 3n)]);
    await network.provider.send("evm_setAutomine", [true]);
    expect((await openA.wait())!.status).to.equal(1);
    expect((await openB.wait())!.status).to.equal(1);
    const posA0 = await engine.position(aliceId, ethMarket);
    expect(await engine.position(bobId, ethMarket)).to.deep.equal(posA0);
    expect(posA0.size).to.equal(SIZE);
    expect(await vault.marginOf(bobId, usdc)).to.equal(await vault.marginOf(aliceId, usdc));

    const keeperUsdc0 = await usdc.balanceOf(keeper.address);
    const rebalances: {
      hour: number;
      action: number;
      hBefore: bigint;
      hAfter: bigint;
      toppedUpUsd: bigint;
      reducedNotionalUsd: bigint;
      feeUsd: bigint;
    }[] = [];
    const liquidations: { hour: number; id: bigint }[] = [];
    let minAliceHealth = ethers.MaxUint256;
    let identicalUntil = -1; // last hour at which alice and bob still had exactly the same health

    for (let i = 1; i < bars.length; i++) {
      const t = start + BigInt(bars[i].timestamp - bars[0].timestamp);
      const px = bars[i].price * 10n ** 10n;
      await time.setNextBlockTimestamp(t);
      await ethFeed.setAnswer(bars[i].price);
      await time.setNextBlockTimestamp(t + 1n);
      await oracle.poke(weth);
      const [[hA, hB], priced] = await engine.healthBatch([aliceId, bobId]);
      expect(priced).to.deep.equal([true, true]);
      expect(hA, `alice's health at hour ${i}`).to.be.gte(WAD);
      if (hA < minAliceHealth) minAliceHealth = hA;
      if (rebalances.length === 0 && liquidations.length === 0) {
        expect(hA, `hour ${i}: same account, same health`).to.equal(hB);
        identicalUntil = i;
      }

      // The keeper: rebalance alice only when the view says so; it does exactly when she is below the trigger.
      await time.setNextBlockTimestamp(t + 2n);
      const [needed, status] = await rebalancer.needsRebalance(aliceId, { blockTag: "pending" });
      expect(needed, `hour ${i}: needsRebalance (status ${status})`).to.equal(hA < POLICY.triggerRatio);
      if (needed) {
        // The plan the view sends, checked against the formulas at the view's own fee (eth_call runs at base
        // fee 0 on Hardhat, so only the flat part): the view and the state change share `_plan`.
        const [inputs, closeFee] = await engine.rebalanceInputs(aliceId, { blockTag: "pending" });
        const reserves: ReserveIn[] = [
          { asset: usdcAddr, available: await vault.reserveOf(aliceId, usdc), price: WAD, decimals: 6n, haircut: HAIRCUTS.USDC },
          { asset: wethAddr, available: await vault.reserveOf(aliceId, weth), price: px, decimals: 18n, haircut: HAIRCUTS.WETH },
        ];
        const viewFee = await rebalancer.keeperFee(POLICY.maxFeeUsd, { blockTag: "pending" });
        const [, , viewPlan] = await rebalancer.connect(keeper).needsRebalance(aliceId, { blockTag: "pending" });
        const fromView = planRestore(POLICY.targetRatio, inputs, closeFee, viewFee, keeperReward, reserves);
        expect(viewPlan.action).to.equal(fromView.action);
        expect(viewPlan.assets).to.deep.equal(fromView.assets);
        expect(viewPlan.amounts).to.deep.equal(fromView.amounts);
        expect(viewPlan.reduceFraction).to.equal(fromView.reduceFraction);
        expect(viewPlan.feeUsd).to.equal(viewFee);
        expect(viewPlan.keeper).to.equal(keeper.address);

        // The rebalance itself, in a block whose base fee the test sets: the plan it applies is the formula
        // at the fee of that block (read from the vault's and engine's events).
        await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x" + BASE_FEE.toString(16)]);
        const sizeBefore = (await engine.position(aliceId, ethMarket)).size;
        const tx = await rebalancer.connect(keeper).rebalance(aliceId, TX_FEES);
        const rc = (await tx.wait()) as ContractTransactionReceipt;
        expect((await ethers.provider.getBlock(rc.blockNumber))!.baseFeePerGas).to.equal(BASE_FEE);
        const fee = expectedFee(px, POLICY.maxFeeUsd, BASE_FEE);
        const plan = planRestore(POLICY.targetRatio, inputs, closeFee, fee, keeperReward, reserves);
        const posted = rc.logs
          .filter((l) => l.address === (vault.target as string))
          .map((l) => vault.interface.parseLog(l))
          .filter((e) => e?.name === "MarginPosted");
        expect(posted.map((e) => e!.args.token)).to.deep.equal(plan.assets);
        expect(posted.map((e) => e!.args.amount)).to.deep.equal(plan.amounts);
        const reduced = rc.logs
          .filter((l) => l.address === (engine.target as string))
          .map((l) => engine.interface.parseLog(l))
          .filter((e) => e?.name === "PositionModified");
        expect(reduced.map((e) => e!.args.sizeDelta)).to.deep.equal(
          plan.reduceFraction === 0n ? [] : [-mulDivCeilSigned(sizeBefore, plan.reduceFraction, WAD)],
        );
        const ev = rc.logs
          .filter((l) => l.address === (rebalancer.target as string))
          .map((l) => rebalancer.interface.parseLog(l))
          .find((e) => e?.name === "Rebalanced")!;
        expect(ev.args.accountId).to.equal(aliceId);
        expect(ev.args.action).to.equal(plan.action);
        expect(ev.args.toppedUpUsd).to.equal(plan.toppedUpUsd);
        expect(ev.args.reducedNotionalUsd).to.equal(plan.reducedNotionalUsd);
        expect(ev.args.releasedUsd).to.equal(0n);
        expect(ev.args.feeUsd).to.equal(fee);
        expect(ev.args.keeper).to.equal(keeper.address);
        // Rescued, not liquidated: from between 1 and the trigger to at least the target.
        expect(ev.args.healthBefore).to.be.gte(WAD).and.lt(POLICY.triggerRatio);
        expect(ev.args.healthAfter).to.be.gte(POLICY.targetRatio).and.gt(ev.args.healthBefore);
        rebalances.push({
          hour: i,
          action: Number(ev.args.action),
          hBefore: ev.args.healthBefore,
          hAfter: ev.args.healthAfter,
          toppedUpUsd: ev.args.toppedUpUsd,
          reducedNotionalUsd: ev.args.reducedNotionalUsd,
          feeUsd: ev.args.feeUsd,
        });
      }

      // The liquidator: anything below 1.
      const [after] = await engine.healthBatch([aliceId, bobId]);
      let tl = t + 3n;
      for (const [k, id] of ids.entries()) {
        if (after[k] >= WAD) continue;
        await time.setNextBlockTimestamp(tl++);
        await engine.connect(liquidator).liquidate(id);
        liquidations.push({ hour: i, id });
      }
    }

    // Alice: never below 1, never liquidated; rescued three times with both actions of her policy.
    expect(await engine.queryFilter(engine.filters.Liquidated(aliceId))).to.have.length(0);
    expect(liquidations.filter((l) => l.id === aliceId)).to.deep.equal([]);
    expect(minAliceHealth).to.be.gte(WAD);
    expect(rebalances.map((r) => ({ hour: r.hour, action: r.action }))).to.deep.equal([
      { hour: 84, action: ACTION.TOP_UP }, // 19 May 12:00, 2,365.18 (−13.1 %): the reserve covers it
      { hour: 96, action: ACTION.TOP_UP | ACTION.REDUCE }, // 20 May 00:00, 2,230.90: the rest of the reserve, then reduce
      { hour: 184, action: ACTION.REDUCE }, // 23 May 16:00, 1,848.11: reserve empty, reduce only
    ]);
    expect(await rebalancer.queryFilter(rebalancer.filters.Rebalanced(aliceId))).to.have.length(3);

    // Bob (no policy): identical to alice until her first rescue, then liquidated at the pinned hours.
    expect(identicalUntil).to.equal(84); // hour 84's poke included: both at the same health, then alice is rescued
    expect(liquidations.map((l) => l.hour)).to.deep.equal(EXPECTED.bobLiquidatedAt);
    expect(liquidations.every((l) => l.id === bobId)).to.equal(true);
    expect(await engine.queryFilter(engine.filters.Liquidated(bobId))).to.have.length(EXPECTED.bobLiquidatedAt.length);

    // Keeper fees: the keeper received in USDC exactly Σ feeUsd / 1e12 of the Rebalanced events.
    const totalFeeUsd = rebalances.reduce((s, r) => s + r.feeUsd, 0n);
    expect((await usdc.balanceOf(keeper.address)) - keeperUsdc0).to.equal(totalFeeUsd / USDC_SCALE);
    expect(totalFeeUsd % USDC_SCALE).to.equal(0n);

    // Pinned outcome (each rebalance above is also checked against the formulas; see EXPECTED).
    const stA = await engine.accountState(aliceId);
    const stB = await engine.accountState(bobId);
    const actual = {
      minAliceHealth,
      rebalances: rebalances.map((r) => [r.hBefore, r.hAfter, r.toppedUpUsd, r.reducedNotionalUsd, r.feeUsd]),
      totalFeeUsd,
      alice: {
        size: (await engine.position(aliceId, ethMarket)).size,
        reserveUsdc: await vault.reserveOf(aliceId, usdc),
        reserveWeth: await vault.reserveOf(aliceId, weth),
        marginUsdc: await vault.marginOf(aliceId, usdc),
        marginWeth: await vault.marginOf(aliceId, weth),
        equity: stA.equity,
        health: stA.health,
      },
      bob: {
        size: (await engine.position(bobId, ethMarket)).size,
        marginUsdc: await vault.marginOf(bobId, usdc),
        equity: stB.equity,
        health: stB.health,
      },
    };
    expect(actual).to.deep.equal(EXPECTED.final);
  });
});

/**
 * The replay's outcome, pinned (every rebalance is also checked above against the formulas on the engine's
 * inputs; the healths and equities below were checked once against the valuation mirror of
 * test/shared/marginMath.ts on the engine's ledger, and agree to the wei). Rebalances as
 * [hBefore, hAfter, toppedUpUsd, reducedNotionalUsd, feeUsd]:
 * - hour 84 (19 May 12:00, 2,365.18): TOP_UP of 1,992.910059 USDC from the 2,000 reserve, 1.135 → 1.600;
 *   fee 1 + 600k gas × 20 gwei × 2,365.18 = 29.38216 USD.
 * - hour 96 (20 May 00:00, 2,230.90): TOP_UP of the last 7.089941 USDC and the 1 WETH (2,014.899941 USD
 *   counted), still short, REDUCE of f ≈ 3.46 % (0.346 ETH, 772.78 USD of notional), 1.130 → 1.600;
 *   fee 27.7708 USD.
 * - hour 184 (23 May 16:00, 1,848.11): reserve empty, REDUCE of f ≈ 25.9 % (2.50 ETH, 4,622.47 USD of
 *   notional), 1.195 → 1.601; fee 23.17732 USD.
 * Alice ends with 7.15 ETH, health 2.28 and equity 5,336.50 USD (both reserves now in margin); bob, liquidated
 * at 96 (2,230.90), 180 (1,938.52) and 184 (1,848.11), ends with 3.44 ETH and equity 2,059.65 USD.
 * The size term of the rate divides by the market's oiCapUsd (500,000 USD), no longer by 0.5 × pool capital:
 * every figure moved by a few parts in 10^6 at most; the hours and actions did not change.
 */
const EXPECTED = {
  bobLiquidatedAt: [96, 180, 184],
  final: {
    minAliceHealth: 1_130_136_975_431_477_226n,
    rebalances: [
      [1_135_248_481_821_696_023n, 1_600_000_000_123_109_380n, 1_992_910_059_000_000_000_000n, 0n, 29_382_160_000_000_000_000n],
      [
        1_130_136_974_354_079_720n,
        1_600_115_102_030_523_601n,
        2_014_899_941_000_000_000_000n,
        772_783_489_663_420_435_270n,
        27_770_800_000_000_000_000n,
      ],
      [1_195_246_190_498_912_510n, 1_600_937_960_564_780_490n, 0n, 4_622_469_834_325_092_299_128n, 23_177_320_000_000_000_000n],
    ],
    totalFeeUsd: 80_330_280_000_000_000_000n,
    alice: {
      size: 7_152_412_510_957_497_786n,
      reserveUsdc: 0n,
      reserveWeth: 0n,
      marginUsdc: 1_673_995_184n,
      marginWeth: E18(1),
      equity: 5_336_500_838_917_813_044_058n,
      health: 2_280_377_497_993_540_324n,
    },
    bob: {
      size: 3_440_273_947_917_998_944n,
      marginUsdc: 1_205_522_091n,
      equity: 2_059_651_026_359_879_459_558n,
      health: 1_827_408_199_904_907_938n,
    },
  },
};
