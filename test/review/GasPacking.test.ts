/**
 * Review of the gas redesign's packing (commit 6143d92): incremental post-state after TOP_UP / RELEASE, packed policy,
 * keeperReward in HotParams.
 * Every test pins a claim of the change with exact values; a failure here is a defect of the change.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";

import { DEFAULT_RISK, DEFAULT_REBALANCER, MAJOR_MARKET, wad } from "../../deploy/params";
import { deployCore } from "../../deploy/system";
import { USDC, E18, E8 } from "../helpers/fixtures";
import { WAD } from "../helpers/marginMath";
import {
  ACTION,
  STATUS,
  fundReserve,
  lowHealth,
  moveEthUntil,
  openLong,
  pinBaseFee,
  rebalanceFixture,
  setEth,
  type PolicyIn,
  type RebalanceFixture,
} from "../helpers/rebalance";

type Rebalanced = { id: bigint; action: bigint; healthBefore: bigint; healthAfter: bigint };

/** Every Rebalanced event of a mined transaction. */
async function rebalancedEvents(f: RebalanceFixture, tx: Promise<{ wait(): Promise<unknown> }>): Promise<Rebalanced[]> {
  const receipt = (await (await tx).wait()) as { logs: { topics: string[]; data: string }[] };
  const out: Rebalanced[] = [];
  for (const log of receipt.logs) {
    let parsed;
    try {
      parsed = f.rebalancer.interface.parseLog(log);
    } catch {
      continue;
    }
    if (parsed?.name !== "Rebalanced") continue;
    out.push({ id: parsed.args[0], action: BigInt(parsed.args[1]), healthBefore: parsed.args[2], healthAfter: parsed.args[3] });
  }
  return out;
}

/** Rebalances `id` as the keeper; the event's health after must be the account's valuation's, to the wei. */
async function rebalanceAndPin(f: RebalanceFixture, id: bigint, action: number) {
  const before = await f.engine.accountState(id);
  await pinBaseFee();
  const [ev] = await rebalancedEvents(f, f.rebalancer.connect(f.keeper).rebalance(id));
  const after = await f.engine.accountState(id);
  expect(ev.action).to.equal(BigInt(action));
  expect(ev.healthBefore).to.equal(before.health);
  expect(ev.healthAfter).to.equal(after.health);
  // Independent recomputation of health from the view's own fields (E / MM rounded down).
  expect(after.health).to.equal((BigInt(after.equity) * WAD) / after.maintenanceMargin);
  // Positions untouched: requirement and PnL are the plan's.
  expect(after.maintenanceMargin).to.equal(before.maintenanceMargin);
  expect(after.unrealisedPnl).to.equal(before.unrealisedPnl);
  return { before, after, ev };
}

async function withPolicy(f: RebalanceFixture, change: Partial<PolicyIn>, id = f.id): Promise<PolicyIn> {
  const policy = { ...f.policy, ...change };
  await f.engine.connect(f.alice).setRebalancePolicy(id, policy);
  return policy;
}

/** Posts `amount` of `token` (already minted) as margin of Alice's account. */
async function postMargin(f: RebalanceFixture, token: "weth" | "wbtc" | "usdc", amount: bigint, id = f.id) {
  const t = f[token];
  await t.mint(f.alice.address, amount);
  await t.connect(f.alice).approve(f.vault, amount);
  await f.vault.connect(f.alice).depositMargin(id, t, amount);
}

/** No IM volatility floor, so a release stops at target × MM (as in the Rebalancer suite). */
async function noImFloor(f: RebalanceFixture) {
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n, imVolFloor: 0n });
}

describe("Gas redesign review: incremental post-state, packed policy, hot keeper reward", () => {
  describe("healthAfter of TOP_UP / RELEASE equals accountState(id).health to the wei", () => {
    it("TOP_UP from USDC, the settlement asset (its bit is set twice in the moved mask)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const { before, after } = await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      expect(await f.vault.reserveOf(f.id, f.weth)).to.equal(E18(2)); // USDC alone covered it
      expect(after.collateral).to.be.greaterThan(before.collateral);
      expect(after.health).to.be.gte(wad("3"));
    });

    it("TOP_UP from WETH first, WETH margin zero before (bit newly set, price only loaded for the reserve)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await withPolicy(f, { topUpAssets: [await f.weth.getAddress(), await f.usdc.getAddress()] });
      expect(await f.vault.marginOf(f.id, f.weth)).to.equal(0n);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const { after } = await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      expect(await f.vault.marginOf(f.id, f.weth)).to.be.greaterThan(0n);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(1_000));
      expect(after.health).to.be.gte(wad("3"));
    });

    it("TOP_UP across USDC then WETH (two moved bits plus the settlement bit)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(900), f.alice.address);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(0n);
      expect(await f.vault.marginOf(f.id, f.weth)).to.be.greaterThan(0n);
    });

    it("TOP_UP from WBTC (listing index 2) with an existing WETH margin that is not moved", async () => {
      const f = await loadFixture(rebalanceFixture);
      await postMargin(f, "weth", E18(1) / 10n);
      await f.wbtc.mint(f.alice.address, 10n ** 8n);
      await f.wbtc.connect(f.alice).approve(f.vault, 10n ** 8n);
      await f.vault.connect(f.alice).deposit(f.id, f.wbtc, 10n ** 8n);
      await withPolicy(f, { topUpAssets: [await f.wbtc.getAddress()] });
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const mask0 = await f.vault.marginMask(f.id);
      await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      expect(await f.vault.marginMask(f.id)).to.equal(mask0 | 4n);
    });

    it("TOP_UP while a collateral oracle (WBTC margin) is invalid: counted as 0 in both", async () => {
      const f = await loadFixture(rebalanceFixture);
      await postMargin(f, "wbtc", 10n ** 7n); // 0.1 WBTC margin
      await f.btcFeed.setAnswer(0n); // invalid round: WBTC collateral counts as nothing
      const st0 = await f.engine.accountState(f.id);
      const usdcMargin0 = await f.vault.marginOf(f.id, f.usdc);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const { after } = await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      // WBTC not counted: C is the USDC margin alone.
      expect(st0.collateral).to.equal(usdcMargin0 * 10n ** 12n);
      expect(await f.vault.marginOf(f.id, f.wbtc)).to.equal(10n ** 7n);
      expect(after.health).to.be.gte(wad("3"));
    });

    it("TOP_UP with a settlement haircut below 1 (USDC 0.97) and a WETH haircut of 0.6", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.vault.setHaircut(f.usdc, wad("0.97"));
      await f.vault.setHaircut(f.weth, wad("0.6"));
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(950), f.alice.address);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
    });

    it("TOP_UP with the policy's first asset at haircut 0 (skipped) and USDC margin wholly spent on the fee", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.vault.setHaircut(f.weth, 0n);
      await withPolicy(f, { topUpAssets: [await f.weth.getAddress(), await f.usdc.getAddress()] });
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      expect(await f.vault.reserveOf(f.id, f.weth)).to.equal(E18(2));
    });

    it("RELEASE of USDC margin (the settlement asset is the released asset)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await noImFloor(f);
      await rebalanceAndPin(f, f.id, ACTION.RELEASE);
    });

    it("RELEASE of WETH margin first, down to zero (its bit cleared), then USDC", async () => {
      const f = await loadFixture(rebalanceFixture);
      await noImFloor(f);
      await postMargin(f, "weth", E18(1) / 2n);
      await withPolicy(f, { topUpAssets: [await f.weth.getAddress(), await f.usdc.getAddress()] });
      await rebalanceAndPin(f, f.id, ACTION.RELEASE);
      expect(await f.vault.marginOf(f.id, f.weth)).to.equal(0n);
      expect((await f.vault.marginMask(f.id)) & 2n).to.equal(0n);
    });

    it("RELEASE of WETH only, with no USDC margin left to pay the fee (settlement stays negative)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await noImFloor(f);
      await postMargin(f, "weth", E18(5));
      await withPolicy(f, { topUpAssets: [await f.weth.getAddress()] });
      // Move all USDC margin out: WETH alone carries the account.
      const usdcMargin = await f.vault.marginOf(f.id, f.usdc);
      await f.vault.connect(f.alice).releaseMargin(f.id, f.usdc, usdcMargin);
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(0n);
      const { after } = await rebalanceAndPin(f, f.id, ACTION.RELEASE);
      expect(after.settlement).to.be.lessThan(0n);
    });

    it("a batch: two accounts topped up in one call (one shared price cache), each event equals its valuation", async () => {
      const f = await loadFixture(rebalanceFixture);
      const bobId = await openLong(f, f.bob, USDC(4_000), E18(10));
      await fundReserve(f, f.bob, bobId, USDC(1_000), E18(2));
      await f.engine.connect(f.bob).setRebalancePolicy(bobId, { ...f.policy, topUpAssets: [await f.weth.getAddress()] });
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      expect((await f.rebalancer.needsRebalance(bobId))[1]).to.equal(STATUS.Ready);
      await pinBaseFee();
      const evs = await rebalancedEvents(f, f.rebalancer.connect(f.keeper).rebalanceBatch([f.id, bobId]));
      expect(evs.length).to.equal(2);
      for (const ev of evs) expect(ev.healthAfter).to.equal((await f.engine.accountState(ev.id)).health);
    });

    it("TOP_UP + REDUCE still re-values (positions changed)", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(990), f.alice.address);
      await f.vault.connect(f.alice).withdraw(f.id, f.weth, E18(2), f.alice.address);
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      await pinBaseFee();
      const [ev] = await rebalancedEvents(f, f.rebalancer.connect(f.keeper).rebalance(f.id));
      expect(ev.action & BigInt(ACTION.REDUCE)).to.equal(BigInt(ACTION.REDUCE));
      expect(ev.healthAfter).to.equal((await f.engine.accountState(f.id)).health);
    });
  });

  describe("packed policy", () => {
    async function sixteen(f: RebalanceFixture): Promise<string[]> {
      const factory = await ethers.getContractFactory("MockERC20");
      const listed = [await f.usdc.getAddress(), await f.weth.getAddress(), await f.wbtc.getAddress()];
      for (let i = listed.length; i < 16; i++) {
        const token = await factory.deploy(`T${i}`, `T${i}`, 18);
        await f.vault.listAsset(token, wad("0.5"));
        listed.push(await token.getAddress());
      }
      return listed;
    }

    it("index 15 alone, index 0 alone, an 8-asset list (the most a policy names), opt-out and re-set all decode to exactly what was set", async () => {
      const f = await loadFixture(rebalanceFixture);
      const listed = await sixteen(f);
      const get = async () => [...(await f.engine.rebalancePolicy(f.id)).topUpAssets];
      await withPolicy(f, { topUpAssets: [listed[15]] });
      expect(await get()).to.deep.equal([listed[15]]);
      await withPolicy(f, { topUpAssets: [listed[0]] });
      expect(await get()).to.deep.equal([listed[0]]);
      const eight = [...listed.slice(9).reverse(), listed[0]]; // indices 15..9, then 0: every nibble of the 32 bits used
      await withPolicy(f, { topUpAssets: eight });
      expect(await get()).to.deep.equal(eight);
      await withPolicy(f, { topUpAssets: [listed[15], listed[0], listed[7]] });
      expect(await get()).to.deep.equal([listed[15], listed[0], listed[7]]);
      await withPolicy(f, { actions: 0 });
      const cleared = await f.engine.rebalancePolicy(f.id);
      expect([cleared.actions, cleared.cooldown, cleared.triggerRatio, cleared.maxFeeUsd, cleared.topUpAssets.length]).to.deep.equal([0n, 0n, 0n, 0n, 0n]);
      await withPolicy(f, { actions: ACTION.REDUCE, topUpAssets: [] });
      expect(await get()).to.deep.equal([]);
      await withPolicy(f, { topUpAssets: [listed[1]] });
      expect(await get()).to.deep.equal([listed[1]]);
    });

    it("a TOP_UP with 16 listed assets takes the asset the owner named (WETH), not another index", async () => {
      const f = await loadFixture(rebalanceFixture);
      const listed = await sixteen(f);
      // Unpriced listed tokens first (no feed: skipped), then WETH.
      await withPolicy(f, { topUpAssets: [listed[15], listed[14], listed[1]] });
      await moveEthUntil(f, f.id, 2000n, -5n, lowHealth);
      const plan = (await f.rebalancer.needsRebalance(f.id))[2];
      expect([...plan.assets]).to.deep.equal([listed[1]]);
      await rebalanceAndPin(f, f.id, ACTION.TOP_UP);
      expect(await f.vault.reserveOf(f.id, f.weth)).to.be.lessThan(E18(2));
      expect(await f.vault.marginOf(f.id, f.weth)).to.equal(E18(2) - (await f.vault.reserveOf(f.id, f.weth)));
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(1_000));
      expect(await f.vault.marginMask(f.id)).to.equal(3n); // USDC and WETH bits only
    });
  });

  describe("keeperReward in HotParams", () => {
    it("MM reserves exactly risk.keeperReward, at 0, at the default and at MAX_KEEPER_REWARD; fee params do not clobber it", async () => {
      const f = await loadFixture(rebalanceFixture);
      const mm = async () => (await f.engine.accountState(f.id)).maintenanceMargin;
      const mm5 = await mm();
      await f.engine.setRiskParams({ ...DEFAULT_RISK, keeperReward: 0n });
      expect((await f.engine.riskParams()).keeperReward).to.equal(0n);
      const mm0 = await mm();
      expect(mm5 - mm0).to.equal(DEFAULT_RISK.keeperReward);
      const max = wad("1000");
      await f.engine.setRiskParams({ ...DEFAULT_RISK, keeperReward: max });
      expect(await mm()).to.equal(mm0 + max);
      // setFeeParams writes the other fields of the same slot: the reward survives, and vice versa.
      await f.rebalancer.setFeeParams({ baseFeeUsd: wad("1000"), gasUnits: 4_000_000 });
      expect(await mm()).to.equal(mm0 + max);
      await f.engine.setRiskParams({ ...DEFAULT_RISK, keeperReward: wad("7") });
      const fp = await f.rebalancer.feeParams();
      expect([fp.baseFeeUsd, fp.gasUnits]).to.deep.equal([wad("1000"), 4_000_000n]);
      expect(await mm()).to.equal(mm0 + wad("7"));
    });

    it("a liquidation's reserved reward (MM) and paid reward (risk) agree after a change", async () => {
      const f = await loadFixture(rebalanceFixture);
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...f.policy, actions: 0 });
      await f.engine.setRiskParams({ ...DEFAULT_RISK, keeperReward: wad("11") });
      await moveEthUntil(f, f.id, 2000n, -5n, (h) => h < WAD && h > 0n);
      await expect(f.engine.connect(f.keeper).liquidate(f.id)).to.emit(f.engine, "KeeperRewardCredited");
    });

    it("a fresh engine before setRiskParams: risk.keeperReward and the fee params read as deployed", async () => {
      const [deployer] = await ethers.getSigners();
      const usdc = await (await ethers.getContractFactory("MockERC20")).deploy("U", "U", 6);
      const weth = await (await ethers.getContractFactory("MockERC20")).deploy("W", "W", 18);
      const core = await deployCore(deployer, await usdc.getAddress(), WAD, await weth.getAddress());
      expect((await core.engine.riskParams()).keeperReward).to.equal(0n);
      const fp = await core.rebalancer.feeParams();
      expect([fp.baseFeeUsd, BigInt(fp.gasUnits)]).to.deep.equal([DEFAULT_REBALANCER.baseFeeUsd, BigInt(DEFAULT_REBALANCER.gasUnits)]);
      void E8;
      void setEth;
    });
  });
});
