import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import type { ContractTransactionReceipt } from "ethers";

import { ACTION, wad } from "../../deploy/params";
import { systemFixture, USDC, E18, E8, type SystemFixture } from "../helpers/fixtures";
import { snapshotGas } from "../helpers/gasSnapshot";
import { skipUnderCoverage } from "../helpers/coverage";
import { pinBaseFee } from "../helpers/rebalance";

/*
 * Gas of the Rebalancer's state-changing doors. The keeper fee reads `block.basefee`, so every measured
 * transaction runs in a block whose base fee the test sets (20 gwei): the plans, and so the gas, do not
 * depend on what ran before. Each case first checks (needsRebalance / staticCall) that the measured call
 * takes the path its name says.
 */

const BASE_FEE = 20n * 10n ** 9n;
const TX_FEES = { maxFeePerGas: 2n * BASE_FEE, maxPriorityFeePerGas: 0n };
const BAND = { cooldown: 0, triggerRatio: wad("1.3"), targetRatio: wad("1.6"), maxFeeUsd: wad("50") };

/** A new account of `owner` with USDC margin, USDC reserve, a policy and an ETH long. */
async function openAccount(
  s: SystemFixture,
  opts: { margin: bigint; reserve: bigint; size: bigint; actions: number; releaseRatio?: bigint; topUpAssets?: string[] },
): Promise<bigint> {
  const owner = s.alice;
  await s.vault.connect(owner).createAccount();
  const id = await s.vault.accountCount();
  await s.usdc.mint(owner.address, opts.margin + opts.reserve);
  await s.usdc.connect(owner).approve(s.vault, opts.margin + opts.reserve);
  await s.vault.connect(owner).depositMargin(id, s.usdc, opts.margin);
  if (opts.reserve > 0n) await s.vault.connect(owner).deposit(id, s.usdc, opts.reserve);
  await s.engine.connect(owner).setRebalancePolicy(id, {
    actions: opts.actions,
    releaseRatio: opts.releaseRatio ?? 0n,
    topUpAssets: opts.topUpAssets ?? [await s.usdc.getAddress()],
    ...BAND,
  });
  await s.engine.connect(owner).modifyPosition(id, s.ethMarket, opts.size, E18(2100));
  return id;
}

/**
 * Lowers ETH in 5 USD steps (about 0.2 of health per step near the trigger at these leverages with σ_mm at its
 * floor, less than the 0.3 between 1 and the trigger: the accounts land at 1.12, ~1,530) until every account
 * needs a rebalance.
 */
async function dropUntilAllNeed(s: SystemFixture, ids: bigint[]): Promise<void> {
  for (let px = 1995n; ; px -= 5n) {
    await s.ethFeed.setAnswer(E8(px));
    await s.oracle.poke(s.weth);
    let all = true;
    for (const id of ids) all = all && (await s.rebalancer.needsRebalance(id)).needed;
    if (all) return;
  }
}

function rebalancedActions(s: SystemFixture, rc: ContractTransactionReceipt): number[] {
  return rc.logs
    .filter((l) => l.address === (s.rebalancer.target as string))
    .map((l) => s.rebalancer.interface.parseLog(l))
    .filter((e) => e?.name === "Rebalanced")
    .map((e) => Number(e!.args.action));
}

describe("gas snapshot › Rebalancer", () => {
  before(function () {
    skipUnderCoverage(this, "it asserts exact gas against gas-snapshot.json; instrumented, unoptimised contracts use other gas");
  });

  it("rebalance: top-up, reduce, release", async () => {
    const s = await loadFixture(systemFixture);
    const k = s.rebalancer.connect(s.keeper);

    // 4x long with a reserve that covers the top-up, and a REDUCE-only twin with no reserve.
    const long = { margin: USDC(5_000), size: E18(10) };
    const topUp = await openAccount(s, { ...long, reserve: USDC(5_000), actions: ACTION.TOP_UP | ACTION.REDUCE });
    const reduce = await openAccount(s, { ...long, reserve: 0n, actions: ACTION.REDUCE, topUpAssets: [] });
    await dropUntilAllNeed(s, [topUp, reduce]);
    expect((await s.rebalancer.needsRebalance(topUp)).plan.action).to.equal(ACTION.TOP_UP);
    expect((await s.rebalancer.needsRebalance(reduce)).plan.action).to.equal(ACTION.REDUCE);

    await pinBaseFee(BASE_FEE);
    const txTopUp = k.rebalance(topUp, TX_FEES);
    await snapshotGas("rebalance top-up", txTopUp);
    expect(rebalancedActions(s, (await (await txTopUp).wait())!)).to.deep.equal([ACTION.TOP_UP]);

    await pinBaseFee(BASE_FEE);
    const txReduce = k.rebalance(reduce, TX_FEES);
    await snapshotGas("rebalance reduce", txReduce);
    expect(rebalancedActions(s, (await (await txReduce).wait())!)).to.deep.equal([ACTION.REDUCE]);

    // Release: a 2 ETH long whose owner then adds 10,000 USDC of margin, far above the 3.0 release ratio.
    const release = await openAccount(s, {
      margin: USDC(1_000),
      reserve: 0n,
      size: E18(2),
      actions: ACTION.TOP_UP | ACTION.RELEASE,
      releaseRatio: wad("3"),
    });
    await s.usdc.mint(s.alice.address, USDC(10_000));
    await s.usdc.connect(s.alice).approve(s.vault, USDC(10_000));
    await s.vault.connect(s.alice).depositMargin(release, s.usdc, USDC(10_000));
    const [needed, , plan] = await s.rebalancer.needsRebalance(release);
    expect(needed).to.equal(true);
    expect(plan.action).to.equal(ACTION.RELEASE);

    await pinBaseFee(BASE_FEE);
    const txRelease = k.rebalance(release, TX_FEES);
    await snapshotGas("rebalance release", txRelease);
    expect(rebalancedActions(s, (await (await txRelease).wait())!)).to.deep.equal([ACTION.RELEASE]);
    expect(await s.vault.reserveOf(release, s.usdc)).to.be.gt(0n);
  });

  for (const n of [10, 50]) {
    it(`rebalanceBatch: ${n} accounts, each topped up`, async () => {
      const s = await loadFixture(systemFixture);
      // 2 ETH at 4x each (50 × 4,000 USD stays within the 500,000 USD open-interest cap of the 1M pool).
      const ids: bigint[] = [];
      for (let i = 0; i < n; i++) {
        const cfg = { margin: USDC(1_000), reserve: USDC(1_000), size: E18(2), actions: ACTION.TOP_UP | ACTION.REDUCE };
        ids.push(await openAccount(s, cfg));
      }
      await dropUntilAllNeed(s, ids);
      for (const id of ids) expect((await s.rebalancer.needsRebalance(id)).plan.action).to.equal(ACTION.TOP_UP);

      const k = s.rebalancer.connect(s.keeper);
      expect(await k.rebalanceBatch.staticCall(ids)).to.equal(BigInt(n));
      await pinBaseFee(BASE_FEE);
      const tx = k.rebalanceBatch(ids, TX_FEES);
      await snapshotGas(`rebalanceBatch ${n}`, tx);
      const rc = (await (await tx).wait())!;
      expect(rebalancedActions(s, rc)).to.deep.equal(Array(n).fill(ACTION.TOP_UP));
      const skipped = rc.logs
        .filter((l) => l.address === (s.rebalancer.target as string))
        .filter((l) => s.rebalancer.interface.parseLog(l)?.name === "RebalanceSkipped");
      expect(skipped).to.have.length(0);
      for (const id of ids) expect((await s.rebalancer.needsRebalance(id)).needed).to.equal(false);
    });
  }
});
