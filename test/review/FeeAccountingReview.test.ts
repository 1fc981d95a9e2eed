/**
 * Adversarial review of the gas commits d06ef93 (rebalance fee straight from USDC margin; PoolSlot.setAside =
 * insurance + Σ unclaimed keeper rewards), 0adacf7 (rebalance gate in the engine) and 5272ce2 (WadMath fast path).
 * Every test pins a claim of those commits with exact values; a failure here is a defect of the change.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { wad } from "../../deploy/params";
import { E18, USDC, type SystemFixture } from "../helpers/fixtures";
import { USDC_SCALE, WAD } from "../helpers/marginMath";
import { openAccount, PX8 } from "../helpers/book";
import {
  ACTION,
  STATUS,
  expectedFee,
  fundReserve,
  lowHealth,
  moveEthUntil,
  openLong,
  pinBaseFee,
  rebalanceFixture,
  rescueFee,
  setEth,
  type PolicyIn,
  type RebalanceFixture,
} from "../helpers/rebalance";

// ------------------------------------------------------------------------------------------------ helpers

type Log = { topics: string[]; data: string; address: string };
type Parsed = { name: string; args: unknown[] & Record<string, unknown> };

async function logsOf(f: SystemFixture, tx: Promise<{ wait(): Promise<unknown> }>): Promise<Parsed[]> {
  const receipt = (await (await tx).wait()) as { logs: Log[] };
  const out: Parsed[] = [];
  for (const log of receipt.logs) {
    for (const iface of [f.engine.interface, f.rebalancer.interface, f.vault.interface, f.pool.interface]) {
      let p;
      try {
        p = iface.parseLog(log);
      } catch {
        p = null;
      }
      if (p) {
        out.push({ name: p.name, args: p.args as unknown as Parsed["args"] });
        break;
      }
    }
  }
  return out;
}

/** The pool's books: balance, LP capital, insurance, Σ unclaimed rewards; balance = capital + set aside when no debt
 *  has pushed the set-aside part past the balance. */
async function poolBooks(f: SystemFixture) {
  const balance = await f.engine.poolBalance();
  const capital = await f.engine.poolCapital();
  const insurance = await f.pool.insuranceBalance();
  const rewards = await f.engine.totalKeeperRewards();
  return { balance, capital, insurance, rewards };
}

/** INV_SOLVENCY: tokens held == tracked, tracked[USDC] = Σ reserves + margins + pool balance (and the mask bits). */
async function expectSolvent(f: SystemFixture) {
  const n = await f.vault.accountCount();
  for (const [k, t] of [f.usdc, f.weth, f.wbtc].entries()) {
    let sum = 0n;
    for (let id = 1n; id <= n; id++) {
      const m = await f.vault.marginOf(id, t);
      sum += (await f.vault.reserveOf(id, t)) + m;
      const bit = ((await f.vault.marginMask(id)) >> BigInt(k)) & 1n;
      expect(bit === 1n, `mask bit ${k} of account ${id}`).to.equal(m > 0n);
    }
    if (k === 0) sum += await f.engine.poolBalance();
    expect(await f.vault.totalTracked(t), `tracked ${t === f.usdc ? "USDC" : k}`).to.equal(sum);
    expect(await t.balanceOf(f.engine)).to.equal(sum);
  }
}

async function withPolicy(f: RebalanceFixture, change: Partial<PolicyIn>, id = f.id): Promise<PolicyIn> {
  const policy = { ...f.policy, ...change };
  await f.engine.connect(f.alice).setRebalancePolicy(id, policy);
  return policy;
}

async function postMargin(f: RebalanceFixture, token: "weth" | "usdc", amount: bigint, id = f.id) {
  const t = f[token];
  await t.mint(f.alice.address, amount);
  await t.connect(f.alice).approve(f.vault, amount);
  await f.vault.connect(f.alice).depositMargin(id, t, amount);
}

async function ethPriceWad(f: SystemFixture): Promise<bigint> {
  return (await f.ethFeed.latestRoundData())[1] * 10n ** 10n;
}

/** Alice's account with 3 WETH margin and `usdcLeft` USDC margin (the rest of her USDC margin released to reserve),
 *  policy topping up from WETH only, fee capped at `maxFeeUsd`. */
async function wethMarginAccount(f: RebalanceFixture, usdcLeft: bigint, maxFeeUsd: bigint) {
  await postMargin(f, "weth", E18(3));
  await withPolicy(f, { topUpAssets: [await f.weth.getAddress()], maxFeeUsd });
  const m = await f.vault.marginOf(f.id, f.usdc);
  await f.vault.connect(f.alice).releaseMargin(f.id, f.usdc, m - usdcLeft);
  expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(usdcLeft);
}

// ================================================================================================ claim 1 + 2

describe("Fee accounting review (d06ef93 / 0adacf7 / 5272ce2)", () => {
  describe("claim 1: the fee straight from USDC margin when S = 0", () => {
    it("TOP_UP from USDC: margin −fee, pool balance +fee, capital unchanged, keeper credited and paid exactly the fee", async () => {
      const f = await loadFixture(rebalanceFixture);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const fee = expectedFee(px * WAD, f.policy.maxFeeUsd);
      const feeUnits = fee / USDC_SCALE;
      expect(feeUnits).to.be.greaterThan(0n);
      const m0 = await f.vault.marginOf(f.id, f.usdc);
      const r0 = await f.vault.reserveOf(f.id, f.usdc);
      const b0 = await poolBooks(f);
      await pinBaseFee();
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalance(f.id));
      const reb = logs.find((l) => l.name === "Rebalanced")!;
      expect(reb.args[1]).to.equal(BigInt(ACTION.TOP_UP));
      expect(reb.args[7]).to.equal(fee);
      const moved = r0 - (await f.vault.reserveOf(f.id, f.usdc));
      expect(moved).to.be.greaterThan(0n);
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(m0 + moved - feeUnits);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      expect(await f.engine.totalDebtUsd()).to.equal(0n);
      // One MarginDebited of exactly the fee to the pool, no SettlementChanged round trip.
      const debits = logs.filter((l) => l.name === "MarginDebited");
      expect(debits.length).to.equal(1);
      expect(debits[0].args[0]).to.equal(f.id);
      expect(debits[0].args[2]).to.equal(await f.pool.getAddress());
      expect(debits[0].args[3]).to.equal(feeUnits);
      expect(logs.filter((l) => l.name === "SettlementChanged").length).to.equal(0);
      const b1 = await poolBooks(f);
      expect(b1.balance).to.equal(b0.balance + feeUnits);
      expect(b1.capital).to.equal(b0.capital);
      expect(b1.insurance).to.equal(b0.insurance);
      expect(b1.rewards).to.equal(feeUnits);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(feeUnits);
      await expectSolvent(f);

      const claim = f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address);
      await expect(claim).to.changeTokenBalances(f.usdc, [f.engine, f.keeper], [-feeUnits, feeUnits]);
      const b2 = await poolBooks(f);
      expect(b2).to.deep.equal({ balance: b0.balance, capital: b0.capital, insurance: b0.insurance, rewards: 0n });
      await expectSolvent(f);
    });

    it("USDC margin exactly the fee (WETH carries the account): margin 0, its mask bit cleared, S 0, keeper paid the fee", async () => {
      const f = await loadFixture(rebalanceFixture);
      await wethMarginAccount(f, USDC(3), wad("3")); // fee = cap = 3 USD (the base fee + gas is ~11 USD)
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const b0 = await poolBooks(f);
      const w0 = await f.vault.reserveOf(f.id, f.weth);
      await pinBaseFee();
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalance(f.id));
      const reb = logs.find((l) => l.name === "Rebalanced")!;
      expect(reb.args[1]).to.equal(BigInt(ACTION.TOP_UP));
      expect(reb.args[7]).to.equal(wad("3"));
      expect(await f.vault.reserveOf(f.id, f.weth)).to.be.lessThan(w0);
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(0n);
      expect((await f.vault.marginMask(f.id)) & 1n).to.equal(0n);
      expect((await f.vault.marginMask(f.id)) & 2n).to.equal(2n);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      const b1 = await poolBooks(f);
      expect(b1.balance).to.equal(b0.balance + USDC(3));
      expect(b1.capital).to.equal(b0.capital);
      expect(b1.rewards).to.equal(USDC(3));
      await expectSolvent(f);
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.changeTokenBalance(f.usdc, f.keeper, USDC(3));
      expect(await poolBooks(f)).to.deep.equal({ ...b0, rewards: 0n });
    });

    it("USDC margin one unit short of the fee: old path, S = −fee + margin paid, the keeper still credited the whole fee", async () => {
      const f = await loadFixture(rebalanceFixture);
      await wethMarginAccount(f, USDC(3) - 1n, wad("3"));
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const b0 = await poolBooks(f);
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(0n);
      expect((await f.vault.marginMask(f.id)) & 1n).to.equal(0n);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(-USDC_SCALE); // one unit owed
      expect(await f.engine.totalDebtUsd()).to.equal(USDC_SCALE);
      const b1 = await poolBooks(f);
      expect(b1.balance).to.equal(b0.balance + USDC(3) - 1n);
      expect(b1.capital).to.equal(b0.capital - 1n);
      expect(b1.rewards).to.equal(USDC(3));
      await expectSolvent(f);
    });

    it("only WETH margin: the fee is owed (S = −fee), the keeper is credited it, capital bears it until the owner pays", async () => {
      const f = await loadFixture(rebalanceFixture);
      await wethMarginAccount(f, 0n, f.policy.maxFeeUsd);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const fee = expectedFee(px * WAD, f.policy.maxFeeUsd);
      const feeUnits = fee / USDC_SCALE;
      const b0 = await poolBooks(f);
      await pinBaseFee();
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalance(f.id));
      expect(logs.find((l) => l.name === "Rebalanced")!.args[7]).to.equal(fee);
      expect(logs.filter((l) => l.name === "MarginDebited").length).to.equal(0);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(-fee);
      expect(await f.engine.totalDebtUsd()).to.equal(fee);
      const b1 = await poolBooks(f);
      expect(b1.balance).to.equal(b0.balance);
      expect(b1.capital).to.equal(b0.capital - feeUnits);
      expect(b1.rewards).to.equal(feeUnits);
      expect(b1.balance - b1.capital).to.equal(b1.insurance + b1.rewards);
      await expectSolvent(f);
      // The keeper claims before the owner pays: out of LP capital's balance, capital itself unchanged by the claim.
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.changeTokenBalance(f.usdc, f.keeper, feeUnits);
      const b2 = await poolBooks(f);
      expect(b2).to.deep.equal({ balance: b0.balance - feeUnits, capital: b0.capital - feeUnits, insurance: b0.insurance, rewards: 0n });
      // The owner posts USDC margin: the debt is collected, capital is whole again.
      await postMargin(f, "usdc", USDC(100));
      await f.engine.connect(f.alice).settle(f.id);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(USDC(100) - feeUnits);
      expect(await poolBooks(f)).to.deep.equal({ ...b0, rewards: 0n });
      await expectSolvent(f);
    });

    it("REDUCE realising a loss plus the fee (S != 0 path): margin out == pool in, S 0, keeper credited exactly the fee", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(1_000), f.alice.address);
      await f.vault.connect(f.alice).withdraw(f.id, f.weth, E18(2), f.alice.address);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const fee = expectedFee(px * WAD, f.policy.maxFeeUsd);
      const m0 = await f.vault.marginOf(f.id, f.usdc);
      const b0 = await poolBooks(f);
      await pinBaseFee();
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalance(f.id));
      const reb = logs.find((l) => l.name === "Rebalanced")!;
      expect(reb.args[1]).to.equal(BigInt(ACTION.REDUCE));
      expect(reb.args[7]).to.equal(fee);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      const paid = m0 - (await f.vault.marginOf(f.id, f.usdc));
      const b1 = await poolBooks(f);
      expect(b1.balance - b0.balance).to.equal(paid);
      expect(b1.capital - b0.capital).to.equal(paid - fee / USDC_SCALE);
      expect(b1.rewards).to.equal(fee / USDC_SCALE);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(fee / USDC_SCALE);
      await expectSolvent(f);
    });

    it("rescue below health 1: fee = max(keeper fee, flat reward) from USDC margin, credited and claimable exactly", async () => {
      const f = await loadFixture(rebalanceFixture);
      const px = await moveEthUntil(f, f.id, 2000n, -2n, (h) => h < WAD);
      const fee = rescueFee(px * WAD, f.policy.maxFeeUsd);
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Ready);
      const b0 = await poolBooks(f);
      const m0 = await f.vault.marginOf(f.id, f.usdc);
      const r0 = await f.vault.reserveOf(f.id, f.usdc);
      await pinBaseFee();
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalance(f.id));
      expect(logs.find((l) => l.name === "Rebalanced")!.args[7]).to.equal(fee);
      const moved = r0 - (await f.vault.reserveOf(f.id, f.usdc));
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(m0 + moved - fee / USDC_SCALE);
      const b1 = await poolBooks(f);
      expect(b1).to.deep.equal({ balance: b0.balance + fee / USDC_SCALE, capital: b0.capital, insurance: b0.insurance, rewards: fee / USDC_SCALE });
      await expectSolvent(f);
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.changeTokenBalance(f.usdc, f.keeper, fee / USDC_SCALE);
    });

    it("rebalanceBatch of two accounts sharing a keeper: Σ credited == keeperRewardsOf == totalKeeperRewards == claim", async () => {
      const f = await loadFixture(rebalanceFixture);
      const bobId = await openLong(f, f.bob, USDC(4_000), E18(10));
      await fundReserve(f, f.bob, bobId, USDC(1_000), E18(2));
      await f.engine.connect(f.bob).setRebalancePolicy(bobId, f.policy);
      let all = false;
      let px = 2000n;
      for (; !all && px > 1000n; px -= 1n) {
        await setEth(f, px);
        all = true;
        for (const id of [f.id, bobId]) all &&= lowHealth((await f.engine.accountState(id)).health);
      }
      expect(all).to.equal(true);
      const fee = expectedFee((px + 1n) * WAD, f.policy.maxFeeUsd) / USDC_SCALE;
      const b0 = await poolBooks(f);
      await pinBaseFee();
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalanceBatch([f.id, bobId]));
      const rebs = logs.filter((l) => l.name === "Rebalanced");
      expect(rebs.length).to.equal(2);
      for (const r of rebs) expect(r.args[7]).to.equal(fee * USDC_SCALE);
      const credited = logs.filter((l) => l.name === "KeeperRewardCredited");
      expect(credited.map((l) => l.args[2])).to.deep.equal([fee, 2n * fee]);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(2n * fee);
      expect(await poolBooks(f)).to.deep.equal({ balance: b0.balance + 2n * fee, capital: b0.capital, insurance: b0.insurance, rewards: 2n * fee });
      await expectSolvent(f);
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.changeTokenBalance(f.usdc, f.keeper, 2n * fee);
      expect(await poolBooks(f)).to.deep.equal({ ...b0, rewards: 0n });
      await expectSolvent(f);
    });

    it("performUpkeep with a fee recipient: the recipient is credited exactly the fee, the caller nothing", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.rebalancer.connect(f.deployer).setUpkeepFeeRecipient(f.bob.address);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const fee = expectedFee(px * WAD, f.policy.maxFeeUsd) / USDC_SCALE;
      const b0 = await poolBooks(f);
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).performUpkeep(ethers.AbiCoder.defaultAbiCoder().encode(["uint256[]"], [[f.id]]));
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(0n);
      expect(await f.engine.keeperRewardsOf(f.bob)).to.equal(fee);
      expect(await poolBooks(f)).to.deep.equal({ balance: b0.balance + fee, capital: b0.capital, insurance: b0.insurance, rewards: fee });
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.be.revertedWithCustomError(f.engine, "NothingToClaim");
      await expect(f.engine.connect(f.bob).claimKeeperRewards(f.bob.address)).to.changeTokenBalance(f.usdc, f.bob, fee);
      await expectSolvent(f);
    });
  });

  // ============================================================================================== claim 2

  describe("claim 2: setAside = insurance + Σ rewards", () => {
    async function setPx(f: SystemFixture, feed: "ethFeed" | "btcFeed", usd: number) {
      await time.setNextBlockTimestamp((await time.latest()) + 1);
      await f[feed].setAnswer(PX8(usd));
      await f.oracle.poke(feed === "ethFeed" ? f.weth : f.wbtc);
    }

    it("donation, liquidation credit, write-off from insurance, claim, LP redemption and deposit: every figure exact", async () => {
      const f = await loadFixture(rebalanceFixture);
      // Donation of 100 USDC: insurance, not capital.
      const b0 = await poolBooks(f);
      await f.usdc.mint(f.deployer.address, USDC(100));
      await f.usdc.connect(f.deployer).approve(f.pool, USDC(100));
      await f.pool.connect(f.deployer).donateInsurance(USDC(100));
      expect(await poolBooks(f)).to.deep.equal({ balance: b0.balance + USDC(100), capital: b0.capital, insurance: USDC(100), rewards: 0n });

      // Bob: 0.5 WETH margin, 0.15 BTC long (Liquidation.test.ts "sells all the margin ... bad debt").
      const px = (m: bigint) => (m === f.ethMarket ? 2000n * WAD : 30000n * WAD);
      const book = await openAccount(f, f.bob, { weth: wad("0.5") }, [{ market: f.btcMarket, size: wad("0.15") }], px);
      await setPx(f, "btcFeed", 25000);
      await setPx(f, "ethFeed", 1500);
      const b1 = await poolBooks(f);
      await f.engine.connect(f.keeper).liquidate(book.id);
      // Reward 5 + half of the 37.5 penalty to the keeper, the other half (18.75) to insurance, from capital.
      const reward = USDC(23) + 750_000n;
      const half = USDC(18) + 750_000n;
      expect((await f.engine.accountState(book.id)).settlement).to.equal(-wad("794.75"));
      const b2 = await poolBooks(f);
      expect(b2.balance).to.equal(b1.balance);
      expect(b2.insurance).to.equal(USDC(100) + half);
      expect(b2.rewards).to.equal(reward);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(reward);
      expect(b2.capital).to.equal(b1.capital - reward - half);

      // buyCollateral: 712.5 repaid, 82.25 written off, all from insurance (118.75 available).
      await f.usdc.mint(f.keeper.address, USDC(1000));
      await f.usdc.connect(f.keeper).approve(f.engine, USDC(1000));
      const tx = f.engine.connect(f.keeper).buyCollateral(book.id, f.weth, USDC(1000), 0n);
      await expect(tx).to.emit(f.engine, "BadDebtCovered").withArgs(book.id, USDC(82) + 250_000n, USDC(82) + 250_000n, 0n);
      const b3 = await poolBooks(f);
      expect(b3.balance).to.equal(b2.balance + USDC(712) + 500_000n);
      expect(b3.insurance).to.equal(USDC(100) + half - (USDC(82) + 250_000n));
      expect(b3.insurance).to.equal(USDC(36) + 500_000n);
      expect(b3.rewards).to.equal(reward);
      expect(b3.capital).to.equal(b2.capital + USDC(794) + 750_000n);
      expect(b3.balance - b3.capital).to.equal(b3.insurance + b3.rewards);
      await expectSolvent(f);

      // The LP redeems everything it can: insurance and the keeper's reward stay behind.
      await time.increase(Number(await f.pool.holdPeriod()) + 1);
      const maxShares = await f.pool.maxRedeem(f.lp.address);
      expect(maxShares).to.be.greaterThan(0n);
      await f.pool.connect(f.lp).redeem(maxShares, f.lp.address, f.lp.address);
      const b4 = await poolBooks(f);
      expect(b4.insurance).to.equal(b3.insurance);
      expect(b4.rewards).to.equal(reward);
      expect(b4.balance - b4.capital).to.equal(b4.insurance + b4.rewards);
      await expectSolvent(f);

      // The claim pays exactly the credit; capital and insurance unchanged.
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.changeTokenBalance(f.usdc, f.keeper, reward);
      expect(await poolBooks(f)).to.deep.equal({ balance: b4.balance - reward, capital: b4.capital, insurance: b4.insurance, rewards: 0n });

      // A new LP deposit adds exactly its assets to capital.
      await f.usdc.mint(f.lp.address, USDC(5000));
      await f.usdc.connect(f.lp).approve(f.pool, USDC(5000));
      await f.pool.connect(f.lp).deposit(USDC(5000), f.lp.address);
      expect(await poolBooks(f)).to.deep.equal({ balance: b4.balance - reward + USDC(5000), capital: b4.capital + USDC(5000), insurance: b4.insurance, rewards: 0n });
      await expectSolvent(f);
    });

    it("fee owed (WETH-only account) after the LP's maximum redemption: the claim pays exactly the fee, capital whole once the debt is settled", async () => {
      const f = await loadFixture(rebalanceFixture);
      await wethMarginAccount(f, 0n, f.policy.maxFeeUsd);
      const px = await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const feeUnits = expectedFee(px * WAD, f.policy.maxFeeUsd) / USDC_SCALE;
      // The LP takes all it can first.
      await time.increase(Number(await f.pool.holdPeriod()) + 1);
      await f.pool.connect(f.lp).redeem(await f.pool.maxRedeem(f.lp.address), f.lp.address, f.lp.address);
      const b0 = await poolBooks(f);
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      const b1 = await poolBooks(f);
      expect(b1.rewards).to.equal(feeUnits);
      expect(b1.balance).to.equal(b0.balance);
      const short = b0.capital < feeUnits;
      // The LP cannot redeem below the open interest's backing: capital stays far above one fee.
      expect(short).to.equal(false);
      expect(b1.capital).to.equal(short ? 0n : b0.capital - feeUnits);
      if (short) {
        // balance - (setAside - fee) is what a claim can take.
        const available = b1.balance - b1.insurance;
        await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address))
          .to.be.revertedWithCustomError(f.engine, "InsufficientCapital")
          .withArgs(available, feeUnits);
      }
      await postMargin(f, "usdc", USDC(100));
      await f.engine.connect(f.alice).settle(f.id);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address)).to.changeTokenBalance(f.usdc, f.keeper, feeUnits);
      expect(await poolBooks(f)).to.deep.equal({ ...b0, rewards: 0n });
      await expectSolvent(f);
    });
  });

  // ============================================================================================== claim 3

  describe("claim 3: the gate in the engine", () => {
    it("NotOptedIn(id) for an account without a policy, NothingToRebalance in cooldown, state untouched", async () => {
      const f = await loadFixture(rebalanceFixture);
      const bobId = await openLong(f, f.bob, USDC(4_000), E18(10));
      // Set while in band: a policy that may REDUCE cannot be set below its trigger (BelowRebalanceTrigger).
      await withPolicy(f, { cooldown: 3600 });
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await expect(f.rebalancer.connect(f.keeper).rebalance(bobId))
        .to.be.revertedWithCustomError(f.rebalancer, "NotOptedIn")
        .withArgs(bobId);
      await pinBaseFee();
      await f.rebalancer.connect(f.keeper).rebalance(f.id);
      const rewards = await f.engine.keeperRewardsOf(f.keeper);
      await moveEthUntil(f, f.id, 1800n, -5n, lowHealth);
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.Cooldown);
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(rewards);
      // Batch: both skipped with their status.
      const logs = await logsOf(f, f.rebalancer.connect(f.keeper).rebalanceBatch([bobId, f.id]));
      expect(logs.filter((l) => l.name === "RebalanceSkipped").map((l) => [l.args[0], BigInt(l.args[1] as bigint)])).to.deep.equal([
        [bobId, STATUS.NotOptedIn],
        [f.id, STATUS.Cooldown],
      ]);
    });

    it("after the gate: InBand -> NothingToRebalance, Liquidatable(id, health) below 1 without a rescue", async () => {
      const f = await loadFixture(rebalanceFixture);
      await moveEthUntil(f, f.id, 2000n, -5n, (h) => h > wad("2") && h < wad("6"));
      expect((await f.rebalancer.needsRebalance(f.id))[1]).to.equal(STATUS.InBand);
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(1_000), f.alice.address);
      await f.vault.connect(f.alice).withdraw(f.id, f.weth, E18(2), f.alice.address);
      await withPolicy(f, { actions: ACTION.TOP_UP });
      await moveEthUntil(f, f.id, 2000n, -2n, (h) => h < WAD);
      const h = (await f.engine.accountState(f.id)).health;
      await expect(f.rebalancer.connect(f.keeper).rebalance(f.id))
        .to.be.revertedWithCustomError(f.rebalancer, "Liquidatable")
        .withArgs(f.id, h);
    });
  });

  // ============================================================================================== claim 4

  describe("claim 4: WadMath fast path == OpenZeppelin Math.mulDiv", () => {
    it("same value or the same revert data on edge inputs (0, 1, max, products around 2^256, d = 0, 1, max)", async () => {
      const h = await (await ethers.getContractFactory("WadMathHarness")).deploy();
      const M = ethers.MaxUint256;
      const T128 = 1n << 128n;
      const vals = [0n, 1n, 2n, 3n, WAD, 10n ** 6n, T128 - 1n, T128, T128 + 1n, M / 2n, M / 2n + 1n, M - 1n, M, M / WAD, M / WAD + 1n];
      const ds = [0n, 1n, 2n, 3n, 7n, WAD, 10n ** 12n, T128, M - 1n, M];
      // Products just below / at / above 2^256.
      const pairs: [bigint, bigint][] = [];
      for (const x of vals) for (const y of vals) pairs.push([x, y]);
      pairs.push([T128, T128 - 1n], [T128 - 1n, T128 + 1n], [T128 + 1n, T128 - 1n], [M / 3n, 3n], [M / 3n + 1n, 3n], [(M + 1n) / 2n, 2n]);
      const outcome = async (fn: string, args: bigint[]) => {
        const [ok, ret] = await h.outcome(h.interface.encodeFunctionData(fn as "fastDown", args as [bigint, bigint, bigint]));
        return `${ok}:${ret}`;
      };
      let n = 0;
      for (const [x, y] of pairs) {
        for (const d of ds) {
          expect(await outcome("fastDown", [x, y, d]), `down ${x} ${y} ${d}`).to.equal(await outcome("ozDown", [x, y, d]));
          expect(await outcome("fastUp", [x, y, d]), `up ${x} ${y} ${d}`).to.equal(await outcome("ozUp", [x, y, d]));
          n++;
        }
      }
      expect(n).to.be.greaterThan(2000);
      // d = 0 panics 0x12 on the fast path too.
      const panic12 = "0x4e487b71" + (0x12).toString(16).padStart(64, "0");
      expect(await outcome("fastDown", [5n, 7n, 0n])).to.equal(`false:${panic12}`);
      expect(await outcome("fastUp", [0n, 7n, 0n])).to.equal(`false:${panic12}`);
      expect(await outcome("fastUp", [M, M, 0n])).to.equal(await outcome("ozUp", [M, M, 0n]));
    });

    it("signed floor / ceil agree with the OpenZeppelin-only versions (incl. int256 min and max)", async () => {
      const h = await (await ethers.getContractFactory("WadMathHarness")).deploy();
      const MAXI = (1n << 255n) - 1n;
      const MINI = -(1n << 255n);
      const xs = [0n, 1n, -1n, 7n, -7n, WAD, -WAD, MAXI, MINI, MINI + 1n, (1n << 128n), -(1n << 128n)];
      const ys = [0n, 1n, 3n, WAD, ethers.MaxUint256, 1n << 128n];
      const ds = [0n, 1n, 2n, 3n, WAD, ethers.MaxUint256];
      const outcome = async (fn: string, args: bigint[]) => {
        const [ok, ret] = await h.outcome(h.interface.encodeFunctionData(fn as "fastFloor", args as [bigint, bigint, bigint]));
        return `${ok}:${ret}`;
      };
      for (const x of xs) for (const y of ys) for (const d of ds) {
        expect(await outcome("fastFloor", [x, y, d]), `floor ${x} ${y} ${d}`).to.equal(await outcome("ozFloor", [x, y, d]));
        expect(await outcome("fastCeil", [x, y, d]), `ceil ${x} ${y} ${d}`).to.equal(await outcome("ozCeil", [x, y, d]));
      }
    });
  });
});

