/**
 * REDUCE_FIRST (Constants.sol, README "Rebalancing"): a policy with TOP_UP | REDUCE | REDUCE_FIRST restores the target
 * above health 1 by a REDUCE alone and spends no reserve; below 1 the reserve rescues as with any TOP_UP policy; and
 * before a round after the owner's own action (when a REDUCE may not act) it tops up as TOP_UP | REDUCE would.
 */
import { expect } from "chai";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";

import { DEFAULT_RISK } from "../../deploy/params";
import { E18, USDC } from "../helpers/fixtures";
import { mulDivUp, WAD, wMulUp } from "../helpers/marginMath";
import {
  ACTION,
  STATUS,
  expectedFee,
  lowHealth,
  moveEthUntil,
  fundReserve,
  openLong,
  pinBaseFee,
  rebalanceFixture,
  setEth,
  reduceFraction,
  type RebalanceFixture,
} from "../helpers/rebalance";

const R = DEFAULT_RISK.keeperReward;
const T = 3n * WAD; // the fixture's target
const REDUCE_FIRST = ACTION.TOP_UP | ACTION.REDUCE | ACTION.REDUCE_FIRST;

async function reduceFirstFixture(): Promise<RebalanceFixture> {
  const f = await rebalanceFixture();
  // the fixture's policy with the order flag and without RELEASE (its release ratio is kept, unused)
  const policy = { ...f.policy, actions: REDUCE_FIRST };
  await f.engine.connect(f.alice).setRebalancePolicy(f.id, policy);
  return { ...f, policy };
}

describe("Rebalancer › REDUCE_FIRST", () => {
  it("above 1, a REDUCE alone restores the target: the reserve is untouched, the close is the formula's least fraction", async () => {
    const f = await loadFixture(reduceFirstFixture);
    const reserve0 = [await f.vault.reserveOf(f.id, f.usdc), await f.vault.reserveOf(f.id, f.weth)];
    // the price walk publishes rounds after the owner's setRebalancePolicy: a REDUCE may act
    const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
    const [st, closeFee] = await f.engine.rebalanceInputs(f.id);
    const fee = expectedFee(E18(px), f.policy.maxFeeUsd);
    const fr = reduceFraction(T, st.maintenanceMargin, R, st.equity - fee, closeFee);
    expect(fr).to.be.greaterThan(0n);
    expect(fr).to.be.lessThan(WAD);
    const [needed, status, plan] = await f.rebalancer.needsRebalance(f.id);
    // (the view prices the fee at this block's base fee; the rebalance below runs at the pinned one)
    expect([needed, status, plan.action, plan.amounts.length]).to.deep.equal([true, STATUS.Ready, BigInt(ACTION.REDUCE), 0]);

    await pinBaseFee();
    const tx = f.rebalancer.connect(f.keeper).rebalance(f.id);
    await (await tx).wait();
    const closed = mulDivUp(E18(10), fr, WAD);
    expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(E18(10) - closed);
    expect([await f.vault.reserveOf(f.id, f.usdc), await f.vault.reserveOf(f.id, f.weth)]).to.deep.equal(reserve0);
    const now = await f.engine.accountState(f.id);
    expect(now.health).to.be.gte(T);
    await expect(tx)
      .to.emit(f.rebalancer, "Rebalanced")
      .withArgs(f.id, ACTION.REDUCE, st.health, now.health, 0n, wMulUp(st.notional, fr), 0n, fee, f.keeper.address);
  });

  it("the same account under TOP_UP | REDUCE tops up from the reserve instead (the order is the only difference)", async () => {
    const f = await loadFixture(reduceFirstFixture);
    await f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...f.policy, actions: ACTION.TOP_UP | ACTION.REDUCE });
    await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
    const [, status, plan] = await f.rebalancer.needsRebalance(f.id);
    expect([status, plan.action, plan.reduceFraction]).to.deep.equal([STATUS.Ready, BigInt(ACTION.TOP_UP), 0n]);
    expect(plan.amounts[0]).to.be.greaterThan(0n); // USDC from the reserve
  });

  it("before a round after the owner's own action a REDUCE may not act: it tops up, as TOP_UP | REDUCE would", async () => {
    const f = await loadFixture(reduceFirstFixture);
    await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
    // the owner sets the same policy again: ownerActedAt is now, no round of ETH after it yet
    await f.engine.connect(f.alice).setRebalancePolicy(f.id, f.policy);
    const [, status, plan] = await f.rebalancer.needsRebalance(f.id);
    expect([status, plan.action]).to.deep.equal([STATUS.Ready, BigInt(ACTION.TOP_UP)]);
    // the next round lets the REDUCE act, and then it comes first
    const [, answer] = await f.ethFeed.latestRoundData();
    await f.ethFeed.setAnswer(answer);
    await f.oracle.poke(f.weth);
    expect((await f.rebalancer.needsRebalance(f.id))[2].action).to.equal(BigInt(ACTION.REDUCE));
  });

  /** The plan of the account as needsRebalance gives it: what a test compares across policies. */
  const planOf = async (f: RebalanceFixture, id: bigint) => {
    const [needed, status, p] = await f.rebalancer.needsRebalance(id);
    return { needed, status, action: p.action, assets: [...p.assets], amounts: [...p.amounts], reduceFraction: p.reduceFraction, feeUsd: p.feeUsd };
  };

  /** The same state under TOP_UP | REDUCE: the policy set again, then a new round at the same price (so a REDUCE may act). */
  async function underTopUpReduce(f: RebalanceFixture, id: bigint, who: RebalanceFixture["alice"], policy: RebalanceFixture["policy"]) {
    await f.engine.connect(who).setRebalancePolicy(id, { ...policy, actions: ACTION.TOP_UP | ACTION.REDUCE });
    const [, answer] = await f.ethFeed.latestRoundData();
    await f.ethFeed.setAnswer(answer);
    await f.oracle.poke(f.weth);
    return planOf(f, id);
  }

  it("below 1 the reserve rescues exactly as TOP_UP | REDUCE does (to the policy target): the same plan", async () => {
    const f = await loadFixture(reduceFirstFixture);
    await moveEthUntil(f, f.id, 2000n, -5n, (h) => h < WAD);
    const rf = await planOf(f, f.id);
    expect([rf.status, rf.action, rf.reduceFraction]).to.deep.equal([STATUS.Ready, BigInt(ACTION.TOP_UP), 0n]);
    expect(rf.amounts[0]).to.be.greaterThan(0n);
    expect(await underTopUpReduce(f, f.id, f.alice, f.policy)).to.deep.equal(rf);
  });

  it("when only closing everything would reach the target, the reserve goes first: the same plan as TOP_UP | REDUCE", async () => {
    const f = await loadFixture(rebalanceFixture);
    // a small account with a high target: E ≤ target × keeper reward + the close fee, so no partial close restores it
    const id = await openLong(f, f.bob, USDC(40), E18(1) / 10n);
    await fundReserve(f, f.bob, id, USDC(1_000), 0n);
    const policy = { ...f.policy, actions: REDUCE_FIRST, triggerRatio: 9n * WAD, targetRatio: 10n * WAD, releaseRatio: 0n };
    await f.engine.connect(f.bob).setRebalancePolicy(id, policy);
    await setEth(f, 2000n); // a round after the owner's action: a REDUCE could act
    const [st, closeFee] = await f.engine.rebalanceInputs(id);
    const fee = (await f.rebalancer.needsRebalance(id))[2].feeUsd;
    expect(reduceFraction(10n * WAD, st.maintenanceMargin, R, st.equity - fee, closeFee)).to.equal(WAD);
    const rf = await planOf(f, id);
    expect([rf.status, rf.action, rf.reduceFraction]).to.deep.equal([STATUS.Ready, BigInt(ACTION.TOP_UP), 0n]);
    expect(await underTopUpReduce(f, id, f.bob, policy)).to.deep.equal(rf);
  });

  it("is refused without REDUCE: PolicyUnknownActions(actions)", async () => {
    const f = await loadFixture(reduceFirstFixture);
    const actions = ACTION.TOP_UP | ACTION.REDUCE_FIRST;
    await expect(f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...f.policy, actions }))
      .to.be.revertedWithCustomError(f.engine, "PolicyUnknownActions")
      .withArgs(actions);
    expect((await f.engine.rebalancePolicy(f.id)).actions).to.equal(BigInt(REDUCE_FIRST));
  });
});

