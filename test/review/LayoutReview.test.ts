/**
 * Adversarial review of the three storage-layout commits (866a606 policy in one slot, 8147f10 position as
 * {size, entryNet | entryPrice} with one Σ size·entryNet per side, 3ac3bb1 market parameters in three slots).
 * Claim under test: every figure is unchanged to the wei for every input the new validation accepts, the views
 * return what was set, and no narrowing can truncate or block an action it did not block before.
 * "resisted": the claim held against the attack. "fixed (Lx)": the attack found a defect, fixed in the same commit.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import hre from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { spawn } from "node:child_process";
import path from "node:path";

import { ACTION, CRYPTO_FEED, DEFAULT_RISK, MAJOR_MARKET, wad, type MarketConfig } from "../../deploy/params";
import { MockAggregator__factory, MockERC20__factory } from "../../typechain-types";
import { E18, USDC, systemFixture, type SystemFixture } from "../helpers/fixtures";
import { mmr, mulDivFloorSigned, mulDivUp, sqrtHorizon, WAD, wDivUp, wMulDown, wMulUp } from "../helpers/marginMath";
import { openLong, rebalanceFixture, type RebalanceFixture } from "../helpers/rebalance";

const b32 = (s: string) => ethers.encodeBytes32String(s);
const NANO = 10n ** 9n;
const PPM = 10n ** 12n;
const MAX_FEED_PRICE = 2n ** 126n;
const UINT128_MAX = 2n ** 128n - 1n;
const ceilDivAbs = (x: bigint) => (x + WAD - 1n) / WAD;

type Signer = SystemFixture["alice"];

/** A funded account of `who` with `margin` USDC margin (no position). */
const account = (f: SystemFixture, who: Signer, margin: bigint) => openLong(f, who, margin, 0n);

const anyPrice = (size: bigint) => (size > 0n ? UINT128_MAX : 0n);

/** The PositionModified event of a mined trade (the last one in the receipt). */
async function modified(f: SystemFixture, tx: Promise<{ wait(): Promise<unknown> }>) {
  const receipt = (await (await tx).wait()) as { logs: { topics: string[]; data: string }[] };
  let out: { newSize: bigint; price: bigint; realised: bigint; fee: bigint } | undefined;
  for (const log of receipt.logs) {
    let p;
    try {
      p = f.engine.interface.parseLog(log);
    } catch {
      continue;
    }
    if (p?.name === "PositionModified") out = { newSize: p.args[3], price: p.args[4], realised: p.args[5], fee: p.args[6] };
  }
  return out!;
}

/** A new 18-decimal asset with its own 8-decimal feed at `answer`, band (1 wei, maxPrice), and a MAJOR_MARKET on it. */
async function listGiant(f: SystemFixture, answer: bigint, maxPrice: bigint) {
  const token = await new MockERC20__factory(f.deployer).deploy("Giant", "GIANT", 18);
  const feed = await new MockAggregator__factory(f.deployer).deploy(8);
  await feed.setAnswer(answer);
  await f.oracle.setFeed(token, { feed: await feed.getAddress(), ...CRYPTO_FEED, minPrice: 1n, maxPrice });
  await f.oracle.poke(token);
  await f.engine.createMarket({ asset: await token.getAddress(), ...MAJOR_MARKET });
  return { token, feed, market: (await f.engine.marketCount()) - 1n };
}

// ============================================================================================== policy slot

/** Sixteen listed assets: USDC, WETH, WBTC (indices 0..2) and 13 more (as GasPacking.test.ts). */
async function sixteen(f: RebalanceFixture): Promise<string[]> {
  const listed = [await f.usdc.getAddress(), await f.weth.getAddress(), await f.wbtc.getAddress()];
  for (let i = listed.length; i < 16; i++) {
    const token = await new MockERC20__factory(f.deployer).deploy(`T${i}`, `T${i}`, 18);
    await f.vault.listAsset(token, wad("0.5"));
    listed.push(await token.getAddress());
  }
  return listed;
}

/** The engine's storage slot of `policies[id]`: the one mapping slot N whose entry decodes to `expectRaw`. */
async function policySlot(f: RebalanceFixture, id: bigint, expectRaw: bigint): Promise<bigint> {
  const coder = ethers.AbiCoder.defaultAbiCoder();
  for (let n = 0n; n < 400n; n++) {
    const slot = BigInt(ethers.keccak256(coder.encode(["uint256", "uint256"], [id, n])));
    if (BigInt(await ethers.provider.getStorage(f.engine, slot)) === expectRaw) return slot;
  }
  throw new Error("policy slot not found");
}

/** AccountLogic.PolicySlot packed as Solidity packs it (first field in the lowest bits). */
function packPolicy(p: {
  actions: number; cooldown: number; trigger: bigint; target: bigint; release: bigint; maxFee: bigint;
  actedAt: bigint; indices: number[];
}): bigint {
  const nibbles = p.indices.reduce((acc, idx, k) => acc | (BigInt(idx) << BigInt(4 * k)), 0n);
  return BigInt(p.actions) | (BigInt(p.cooldown) << 8n) | ((p.trigger / PPM) << 32n) | ((p.target / PPM) << 56n) |
    ((p.release / PPM) << 80n) | (p.maxFee << 104n) | (p.actedAt << 176n) | (BigInt(p.indices.length) << 216n) | (nibbles << 224n);
}

describe("Layout review: one-slot policy, {size, entryNet} positions, three-slot market parameters", () => {
  describe("policy slot", () => {
    it("resisted: the extreme policy (actions 15, cooldown 86,400, trigger 9.95, target 10, release 16, fee 1,000 USD, 8 assets with indices 15..9 and 0) round-trips through rebalancePolicy() and the raw slot; markOwnerAction rewrites ownerActedAt and nothing else", async () => {
      const f = await loadFixture(rebalanceFixture);
      const listed = await sixteen(f);
      const order = [15, 14, 13, 12, 11, 10, 9, 0];
      const policy = {
        actions: 15, cooldown: 86_400, triggerRatio: wad("9.95"), targetRatio: wad("10"), releaseRatio: wad("16"),
        maxFeeUsd: wad("1000"), topUpAssets: order.map((i) => listed[i]),
      };
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, policy);
      const t0 = BigInt(await time.latest());
      const view = await f.engine.rebalancePolicy(f.id);
      expect([view.actions, view.cooldown, view.triggerRatio, view.targetRatio, view.releaseRatio, view.maxFeeUsd]).to.deep.equal(
        [15n, 86_400n, wad("9.95"), wad("10"), wad("16"), wad("1000")],
      );
      expect([...view.topUpAssets]).to.deep.equal(policy.topUpAssets);
      const fields = { actions: 15, cooldown: 86_400, trigger: wad("9.95"), target: wad("10"), release: wad("16"), maxFee: wad("1000"), indices: order };
      const raw0 = packPolicy({ ...fields, actedAt: t0 });
      const slot = await policySlot(f, f.id, raw0);
      const raw = async () => BigInt(await ethers.provider.getStorage(f.engine, slot));

      // A reserve withdrawal is an owner action (REDUCE in the policy): only bits 176..215 change, to its block time.
      await time.increase(1_000);
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(1), f.alice.address);
      const t1 = BigInt(await time.latest());
      expect(t1).to.be.greaterThan(t0);
      expect(await raw()).to.equal(packPolicy({ ...fields, actedAt: t1 }));
      const after = await f.engine.rebalancePolicy(f.id);
      expect([after.actions, after.cooldown, after.triggerRatio, after.targetRatio, after.releaseRatio, after.maxFeeUsd]).to.deep.equal(
        [15n, 86_400n, wad("9.95"), wad("10"), wad("16"), wad("1000")],
      );
      expect([...after.topUpAssets]).to.deep.equal(policy.topUpAssets);

      // Without REDUCE the owner's action writes nothing.
      const topUpOnly = { ...policy, actions: ACTION.TOP_UP, releaseRatio: 0n, topUpAssets: [listed[0]] };
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, topUpOnly);
      const t2 = BigInt(await time.latest());
      const rawTopUp = packPolicy({ ...fields, actions: ACTION.TOP_UP, release: 0n, indices: [0], actedAt: t2 });
      expect(await raw()).to.equal(rawTopUp);
      await time.increase(1_000);
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, USDC(1), f.alice.address);
      expect(await raw()).to.equal(rawTopUp);

      // Opting out clears the whole slot.
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...policy, actions: 0 });
      expect(await raw()).to.equal(0n);
    });

    it("resisted: one unit past each bound is refused with its named error; the smallest accepted ratios (1.000001 → 1.050001) are kept exactly", async () => {
      const f = await loadFixture(rebalanceFixture);
      const listed = await sixteen(f);
      const e = f.engine.connect(f.alice);
      const base = { ...f.policy };
      await expect(e.setRebalancePolicy(f.id, { ...base, releaseRatio: wad("16") + PPM }))
        .to.be.revertedWithCustomError(f.engine, "PolicyReleaseTooHigh").withArgs(wad("16") + PPM, wad("16"));
      await expect(e.setRebalancePolicy(f.id, { ...base, releaseRatio: wad("16") + 1n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyReleaseTooHigh").withArgs(wad("16") + 1n, wad("16"));
      await expect(e.setRebalancePolicy(f.id, { ...base, releaseRatio: wad("6") + 1n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyRatioPrecision").withArgs(wad("6") + 1n, PPM);
      await expect(e.setRebalancePolicy(f.id, { ...base, triggerRatio: wad("2") + PPM / 2n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyRatioPrecision").withArgs(wad("2") + PPM / 2n, PPM);
      await expect(e.setRebalancePolicy(f.id, { ...base, targetRatio: wad("3") - 1n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyRatioPrecision").withArgs(wad("3") - 1n, PPM);
      await expect(e.setRebalancePolicy(f.id, { ...base, targetRatio: wad("10") + PPM, releaseRatio: 0n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyTargetTooHigh").withArgs(wad("10") + PPM, wad("10"));
      await expect(e.setRebalancePolicy(f.id, { ...base, cooldown: 86_401 }))
        .to.be.revertedWithCustomError(f.engine, "PolicyCooldownTooLong").withArgs(86_401n, 86_400n);
      await expect(e.setRebalancePolicy(f.id, { ...base, maxFeeUsd: wad("1000") + 1n }))
        .to.be.revertedWithCustomError(f.engine, "PolicyFeeTooHigh").withArgs(wad("1000") + 1n, wad("1000"));
      await expect(e.setRebalancePolicy(f.id, { ...base, topUpAssets: listed.slice(0, 9) }))
        .to.be.revertedWithCustomError(f.engine, "PolicyTooManyAssets").withArgs(9n, 8n);
      const smallest = { ...base, actions: ACTION.TOP_UP | ACTION.REDUCE, triggerRatio: WAD + PPM, targetRatio: WAD + PPM + wad("0.05"), releaseRatio: 0n };
      await e.setRebalancePolicy(f.id, smallest);
      const v = await f.engine.rebalancePolicy(f.id);
      expect([v.triggerRatio, v.targetRatio, v.releaseRatio]).to.deep.equal([wad("1.000001"), wad("1.050001"), 0n]);
    });
  });

  // ============================================================================================== market slot

  describe("market slot", () => {
    const FIELDS = ["baseMMR", "maxMMR", "volK", "sizeK", "imFactor", "feeRate", "oiCapFraction", "maxFundingRate", "imVolFloor"] as const;
    const EXTREME: MarketConfig = {
      baseMMR: wad("0.5"), maxMMR: wad("1"), volK: wad("10"), sizeK: wad("1"), imFactor: wad("10"), feeRate: wad("0.01"),
      oiCapFraction: wad("5"), maxFundingRate: wad("0.1"), imVolFloor: wad("10"), skewScale: UINT128_MAX, oiCapUsd: 2n ** 96n - 1n, // MAX_OI_CAP_USD
    };

    it("resisted: every fraction at its maximum, then every one at its least nonzero billionth, round-trips through marketParams() exactly; maintenanceRate equals the formula on the set values", async () => {
      const f = await loadFixture(systemFixture);
      const asset = await f.weth.getAddress();
      const sqrtH = sqrtHorizon(DEFAULT_RISK.volHorizon);
      const vol = await f.oracle.maintenanceVolatility(asset);
      const least: MarketConfig = {
        baseMMR: wad("0.001"), maxMMR: wad("0.001"), volK: NANO, sizeK: NANO, imFactor: wad("1.01"), feeRate: NANO,
        oiCapFraction: NANO, maxFundingRate: NANO, imVolFloor: NANO, skewScale: 1n, oiCapUsd: wad("1"),
      };
      const uncapped: MarketConfig = { ...EXTREME, baseMMR: wad("0.001"), oiCapUsd: wad("1000000") };
      for (const p of [EXTREME, least, uncapped, MAJOR_MARKET]) {
        await f.engine.setMarketParams(f.ethMarket, { asset, ...p });
        const got = await f.engine.marketParams(f.ethMarket);
        expect(got.asset).to.equal(asset);
        for (const k of [...FIELDS, "skewScale", "oiCapUsd"] as const) expect(got[k], k).to.equal(p[k]);
        for (const n of [0n, 1n, wad("1"), wad("12345.678"), wad("1000000"), wad("1000000000")]) {
          expect(await f.engine.maintenanceRate(f.ethMarket, n), `mmr at ${n}`).to.equal(mmr(p, n, vol, sqrtH));
        }
      }
      // The uncapped set really exercises the sum (not only the cap).
      expect(mmr(uncapped, wad("1000"), vol, sqrtH)).to.be.lessThan(wad("1"));
      // createMarket stores through the same path.
      await f.engine.createMarket({ asset, ...EXTREME });
      const id = (await f.engine.marketCount()) - 1n;
      const got = await f.engine.marketParams(id);
      for (const k of FIELDS) expect(got[k], k).to.equal(EXTREME[k]);
    });

    it("resisted: each of the nine fractions one wei off a whole billionth is refused ParamPrecision(name, value, 1e9); one billionth past a bound ParamOutOfBounds; oiCapFraction's new minimum is 1e9", async () => {
      const f = await loadFixture(systemFixture);
      const asset = await f.weth.getAddress();
      for (const k of FIELDS) {
        const bad = { asset, ...MAJOR_MARKET, [k]: MAJOR_MARKET[k] + 1n };
        await expect(f.engine.setMarketParams(f.ethMarket, bad), k)
          .to.be.revertedWithCustomError(f.engine, "ParamPrecision").withArgs(b32(k), MAJOR_MARKET[k] + 1n, NANO);
        await expect(f.engine.createMarket(bad), k)
          .to.be.revertedWithCustomError(f.engine, "ParamPrecision").withArgs(b32(k), MAJOR_MARKET[k] + 1n, NANO);
      }
      await expect(f.engine.setMarketParams(f.ethMarket, { asset, ...EXTREME, volK: wad("10") + NANO }))
        .to.be.revertedWithCustomError(f.engine, "ParamOutOfBounds").withArgs(b32("volK"), wad("10") + NANO, 0n, wad("10"));
      await expect(f.engine.setMarketParams(f.ethMarket, { asset, ...EXTREME, oiCapFraction: wad("5") + NANO }))
        .to.be.revertedWithCustomError(f.engine, "ParamOutOfBounds").withArgs(b32("oiCapFraction"), wad("5") + NANO, NANO, wad("5"));
      await expect(f.engine.setMarketParams(f.ethMarket, { asset, ...MAJOR_MARKET, oiCapFraction: NANO - 1n }))
        .to.be.revertedWithCustomError(f.engine, "ParamOutOfBounds").withArgs(b32("oiCapFraction"), NANO - 1n, NANO, wad("5"));
      await expect(f.engine.setMarketParams(f.ethMarket, { asset, ...MAJOR_MARKET, oiCapFraction: 1n }))
        .to.be.revertedWithCustomError(f.engine, "ParamOutOfBounds").withArgs(b32("oiCapFraction"), 1n, NANO, wad("5"));
    });

    it("resisted: the trade fee at feeRate 1 % and the open-interest cap at oiCapFraction 1e-9 read the stored billionths back exactly", async () => {
      const f = await loadFixture(systemFixture);
      const asset = await f.weth.getAddress();
      const id = await account(f, f.alice, USDC(10_000));
      const px = await f.oracle.price(asset);
      // feeRate 0.01, imFactor and imVolFloor 10 (IM = 10 × notional at maxMMR 1): 0.3 ETH = 600 USD of notional.
      await f.engine.setMarketParams(f.ethMarket, { asset, ...EXTREME, maxFundingRate: 0n });
      const size = E18(3) / 10n;
      const t = await modified(f, f.engine.connect(f.alice).modifyPosition(id, f.ethMarket, size, UINT128_MAX));
      expect(t.price).to.equal(px);
      expect(t.fee).to.equal(wMulUp(mulDivUp(size, px, WAD), wad("0.01")));
      expect(t.fee).to.equal(wad("6"));
      // 0.0001 ETH more at a cap of 1e-9 of the pool's capital (1,000,006 USDC with the fee): ~0.001 USD.
      await f.engine.setMarketParams(f.ethMarket, { asset, ...MAJOR_MARKET, maxFundingRate: 0n, oiCapFraction: NANO });
      const capital = await f.pool.capital();
      expect(capital).to.be.greaterThan(USDC(1_000_000));
      const more = E18(1) / 10_000n;
      // The trade's own fee (0.0001 USD = 100 USDC units at 0.05 %) is settled to the pool before the cap is read.
      const fee = wMulUp(mulDivUp(more, px, WAD), MAJOR_MARKET.feeRate);
      expect(fee).to.equal(100n * 10n ** 12n);
      const capUsd = wMulDown((capital + fee / 10n ** 12n) * 10n ** 12n, NANO);
      await expect(f.engine.connect(f.alice).modifyPosition(id, f.ethMarket, more, UINT128_MAX))
        .to.be.revertedWithCustomError(f.engine, "OpenInterestCap").withArgs(f.ethMarket, mulDivUp(size + more, px, WAD), capUsd);
      // The pool's backing need reads the same stored fraction: ⌈⌈OI·P⌉ / 1e-9⌉ in USDC, up.
      const [ok, , , backing] = await f.engine.poolExposure();
      expect(ok).to.equal(true);
      expect(backing).to.equal(mulDivUp(wDivUp(mulDivUp(size, px, WAD), NANO), 1n, 10n ** 12n));
    });
  });

  // ============================================================================================== position slot

  describe("position slot", () => {
    /** The market's stored funding index (the trade accrued it in its own block, so it is the trade's index). */
    const indexOf = async (f: SystemFixture, m: bigint) => (await f.engine.marketState(m)).fundingIndex;

    async function setPrice(f: SystemFixture, which: "eth" | "btc", usd: bigint) {
      const feed = which === "eth" ? f.ethFeed : f.btcFeed;
      await feed.setAnswer(usd * 10n ** 8n);
      await f.oracle.poke(which === "eth" ? f.weth : f.wbtc);
    }

    it("resisted: position() shows the fill's price and funding index after an open, an add, a flip and a reopen; a close zeroes both slots (nothing is inherited), the side sums follow", async () => {
      const f = await loadFixture(systemFixture);
      const e = f.engine.connect(f.alice);
      const id = await account(f, f.alice, USDC(200_000));
      const other = await account(f, f.bob, USDC(200_000));
      await f.engine.connect(f.bob).modifyPosition(other, f.ethMarket, E18(-200), 0n); // skew: funding moves
      const check = async (size: bigint, usd: bigint) => {
        const p = await f.engine.position(id, f.ethMarket);
        expect(p.size).to.equal(size);
        expect(p.entryPrice).to.equal(usd * WAD);
        expect(p.entryFunding).to.equal(await indexOf(f, f.ethMarket));
      };
      await time.increase(7_200);
      await setPrice(f, "eth", 2_010n);
      await e.modifyPosition(id, f.ethMarket, E18(10), UINT128_MAX);
      await check(E18(10), 2_010n);
      const f1 = await indexOf(f, f.ethMarket);
      expect(f1).to.not.equal(0n);
      await time.increase(7_200);
      await setPrice(f, "eth", 2_050n);
      await e.modifyPosition(id, f.ethMarket, E18(5), UINT128_MAX);
      await check(E18(15), 2_050n);
      expect(await indexOf(f, f.ethMarket)).to.not.equal(f1);
      await time.increase(7_200);
      await setPrice(f, "eth", 1_990n);
      await e.modifyPosition(id, f.ethMarket, E18(-20), 0n); // flip through zero in one trade
      await check(E18(-5), 1_990n);
      let st = await f.engine.marketState(f.ethMarket);
      const pb = await f.engine.position(other, f.ethMarket);
      const pa = await f.engine.position(id, f.ethMarket);
      expect(st.shortEntryNetSum).to.equal(pb.size * (pb.entryPrice - pb.entryFunding) + pa.size * (pa.entryPrice - pa.entryFunding));
      expect(st.longEntryNetSum).to.equal(0n);
      await time.increase(7_200);
      await setPrice(f, "eth", 2_000n);
      await e.modifyPosition(id, f.ethMarket, E18(5), UINT128_MAX); // close
      const closed = await f.engine.position(id, f.ethMarket);
      expect([closed.size, closed.entryPrice, closed.entryFunding]).to.deep.equal([0n, 0n, 0n]);
      expect(await f.engine.positionMask(id)).to.equal(0n);
      st = await f.engine.marketState(f.ethMarket);
      expect(st.shortEntryNetSum).to.equal(pb.size * (pb.entryPrice - pb.entryFunding));
      // Reopen later at another price: the new trade's price and index, not the closed position's.
      await time.increase(7_200);
      await setPrice(f, "eth", 2_020n);
      await e.modifyPosition(id, f.ethMarket, E18(1), UINT128_MAX);
      await check(E18(1), 2_020n);
      st = await f.engine.marketState(f.ethMarket);
      expect(st.longEntryNetSum).to.equal(E18(1) * (E18(2_020) - st.fundingIndex));
    });

    it("resisted: poolExposure's profit, loss and backing equal a TS recomputation per side from the position() views, to the wei", async () => {
      const f = await loadFixture(systemFixture);
      const signers = await ethers.getSigners();
      const traders = [f.alice, f.bob, f.keeper, signers[5], signers[6], signers[7]];
      const ids: bigint[] = [];
      for (const t of traders) ids.push(await account(f, t, USDC(150_000)));
      const plan: [number, "eth" | "btc", bigint][] = [
        [0, "eth", E18(60)], [1, "eth", E18(-17)], [2, "btc", E18(3)], [3, "eth", E18(23)], [4, "btc", E18(-5)],
        [5, "eth", E18(-9)], [0, "eth", E18(-25)], [2, "btc", E18(1)], [1, "eth", E18(4)], [3, "btc", E18(-2)],
      ];
      const prices = { eth: [2_000n, 2_031n, 1_977n, 2_102n, 2_064n], btc: [30_000n, 30_550n, 29_410n, 31_003n, 30_222n] };
      for (const [k, [who, mk, size]] of plan.entries()) {
        await time.increase(3_000 + 617 * k);
        await setPrice(f, "eth", prices.eth[k % 5]); // both fresh: an account holding both is valued on both
        await setPrice(f, "btc", prices.btc[k % 5]);
        const market = mk === "eth" ? f.ethMarket : f.btcMarket;
        await f.engine.connect(traders[who]).modifyPosition(ids[who], market, size, anyPrice(size));
      }
      // Freeze funding (setMarketParams accrues to now first) so the view's index is the stored one, then move prices.
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
      await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
      await setPrice(f, "eth", 2_143n);
      await setPrice(f, "btc", 28_871n);

      let profit = 0n;
      let loss = 0n;
      let backing = 0n;
      for (const [market, asset] of [[f.ethMarket, f.weth], [f.btcMarket, f.wbtc]] as const) {
        const px = await f.oracle.price(asset);
        const st = await f.engine.marketState(market);
        const index = st.fundingIndex;
        expect(index).to.not.equal(0n);
        const side = { long: 0n, short: 0n, longOI: 0n, shortOI: 0n };
        for (const id of ids) {
          const p = await f.engine.position(id, market);
          const pnl2 = p.size * (px - p.entryPrice) - p.size * (index - p.entryFunding);
          if (p.size > 0n) { side.long += pnl2; side.longOI += p.size; }
          if (p.size < 0n) { side.short += pnl2; side.shortOI -= p.size; }
        }
        expect([st.longOI, st.shortOI]).to.deep.equal([side.longOI, side.shortOI]);
        for (const pnl2 of [side.long, side.short]) {
          if (pnl2 > 0n) profit += ceilDivAbs(pnl2);
          else if (pnl2 < 0n) loss += ceilDivAbs(-pnl2);
        }
        const oi = side.longOI > side.shortOI ? side.longOI : side.shortOI;
        const needed = mulDivUp(wDivUp(mulDivUp(oi, px, WAD), MAJOR_MARKET.oiCapFraction), 1n, 10n ** 12n);
        if (needed > backing) backing = needed;
      }
      const [ok, p, l, b] = await f.engine.poolExposure();
      expect(ok).to.equal(true);
      expect(await f.engine.totalDebtUsd()).to.equal(0n);
      expect([p, l, b]).to.deep.equal([profit, loss, backing]);
      expect(profit).to.be.greaterThan(0n);
      expect(loss).to.be.greaterThan(0n);
      // And each account's PnL from the same views is the engine's (floored per position).
      for (const [k, id] of ids.entries()) {
        let upnl = 0n;
        for (const [market, asset] of [[f.ethMarket, f.weth], [f.btcMarket, f.wbtc]] as const) {
          const pos = await f.engine.position(id, market);
          const px = await f.oracle.price(asset);
          const index = (await f.engine.marketState(market)).fundingIndex;
          upnl += mulDivFloorSigned(pos.size * (px - pos.entryPrice) - pos.size * (index - pos.entryFunding), 1n, WAD);
        }
        expect((await f.engine.accountState(id)).unrealisedPnl, `account ${k}`).to.equal(upnl);
      }
    });

    it("fixed (L1): setFeed refuses a maxPrice above MAX_FEED_PRICE = 2^126 (InvalidFeedParams): with 2^128 − 1 accepted, a short's partial liquidation at a price above 2^127 reverted SafeCastOverflowedIntDowncast(128, entryNet) in applyTrade", async () => {
      const f = await loadFixture(systemFixture);
      const token = await new MockERC20__factory(f.deployer).deploy("Giant", "GIANT", 18);
      const feed = await new MockAggregator__factory(f.deployer).deploy(8);
      await feed.setAnswer(15n * 10n ** 27n); // 1.5e38 WAD
      const params = { feed: await feed.getAddress(), ...CRYPTO_FEED, minPrice: 1n };
      for (const maxPrice of [UINT128_MAX, 2n ** 127n, MAX_FEED_PRICE + 1n]) {
        await expect(f.oracle.setFeed(token, { ...params, maxPrice }))
          .to.be.revertedWithCustomError(f.oracle, "InvalidFeedParams").withArgs(await token.getAddress());
      }
      await expect(f.oracle.setFeed(token, { ...params, maxPrice: MAX_FEED_PRICE })).to.emit(f.oracle, "FeedSet");
      // 1.5e38 is outside the band it may now have: refused as a price, never valued.
      expect((await f.oracle.tryPrice(token))[0]).to.equal(false);
    });

    it("fixed (L1): at the highest price the band admits (just under 2^126), a short's partial liquidation and a partial close succeed; the rest is re-entered at the price and index", async () => {
      const f = await loadFixture(systemFixture);
      let answer = 65n * 10n ** 26n; // 6.5e37 WAD
      const g = await listGiant(f, answer, MAX_FEED_PRICE);
      const id = await account(f, f.alice, USDC(30_000));
      const size = -2_000n; // 2,000 wei: 130,000 USD of notional
      await f.engine.connect(f.alice).modifyPosition(id, g.market, size, 0n);
      let h = (await f.engine.accountState(id)).health;
      while (h >= WAD) {
        answer = (answer * 1_002n) / 1_000n;
        await g.feed.setAnswer(answer);
        await f.oracle.poke(g.token);
        h = (await f.engine.accountState(id)).health;
      }
      const px = answer * 10n ** 10n;
      expect(px).to.be.lessThan(MAX_FEED_PRICE);
      expect(px).to.be.greaterThan(MAX_FEED_PRICE - MAX_FEED_PRICE / 10n);
      expect(h).to.be.gte(DEFAULT_RISK.fullLiquidationHealth); // a partial liquidation
      const tx = await f.engine.connect(f.keeper).liquidate(id);
      const receipt = await tx.wait();
      const ev = receipt!.logs.map((l) => { try { return f.engine.interface.parseLog(l); } catch { return null; } }).find((p) => p?.name === "Liquidated")!;
      const fraction: bigint = ev.args[2];
      expect(fraction).to.be.greaterThan(0n);
      expect(fraction).to.be.lessThan(WAD);
      const rest = size - mulDivFloorSigned(size, fraction, WAD);
      const p = await f.engine.position(id, g.market);
      expect(p.size).to.equal(rest);
      expect(rest).to.be.lessThan(0n);
      expect(p.entryPrice).to.equal(px);
      expect(p.entryFunding).to.equal((await f.engine.marketState(g.market)).fundingIndex);
      const st = await f.engine.marketState(g.market);
      expect(st.shortEntryNetSum).to.equal(rest * (px - st.fundingIndex));
      // The owner may reduce further at that price (a partial close re-enters the rest).
      await f.usdc.mint(f.alice.address, USDC(50_000));
      await f.usdc.connect(f.alice).approve(f.vault, USDC(50_000));
      await f.vault.connect(f.alice).depositMargin(id, f.usdc, USDC(50_000));
      await f.engine.connect(f.alice).modifyPosition(id, g.market, 1n, UINT128_MAX);
      expect((await f.engine.position(id, g.market)).size).to.equal(rest + 1n);
    });
  });

  // ============================================================================================== callers

  describe("callers of the old layouts", () => {
    /** Runs a task and returns the message of the one-line error it must fail with; nothing may be deployed. */
    async function failure(task: string, args: Record<string, unknown>): Promise<string> {
      const quiet = process.env.BALLAST_TASKS_QUIET;
      process.env.BALLAST_TASKS_QUIET = "true";
      const before = await hre.ethers.provider.getBlockNumber();
      try {
        await hre.run(task, { quiet: true, ...args });
      } catch (e) {
        expect((e as Error).constructor.name, (e as Error).stack).to.equal("HardhatPluginError");
        expect(await hre.ethers.provider.getBlockNumber(), "nothing deployed").to.equal(before);
        return (e as Error).message;
      } finally {
        if (quiet === undefined) delete process.env.BALLAST_TASKS_QUIET;
        else process.env.BALLAST_TASKS_QUIET = quiet;
      }
      throw new Error(`${task} did not fail`);
    }

    it("fixed (L2): sim:backtest and sim:sweep refuse, before deploying, a policy the one-slot engine refuses (release above 16, a ratio finer than a millionth)", async () => {
      expect(await failure("sim:backtest", { policy: "1.3,1.6,17", actions: "release" }))
        .to.equal("policy release 1.3→1.6 ↑17: release must be at most 16");
      expect(await failure("sim:backtest", { policy: "1.3000001,1.6" }))
        .to.equal("policy top-up+reduce 1.3000001→1.6: trigger 1.3000001 has more than 6 decimals (a policy keeps whole millionths)");
      expect(await failure("sim:backtest", { policy: "1.3,1.6,3.0000000001", actions: "release" }))
        .to.equal("policy release 1.3→1.6 ↑3.0000000001: release 3.0000000001 has more than 6 decimals (a policy keeps whole millionths)");
      expect(await failure("sim:sweep", { triggers: "1.3", targets: "1.6000005" }))
        .to.equal("policy top-up 1.3→1.6000005: target 1.6000005 has more than 6 decimals (a policy keeps whole millionths)");
    });

    it("fixed (L3): scripts/risk-table.ts refuses RISK_IM_VOL_FLOOR finer than a billionth (a market fraction ParamPrecision refuses) at once, before replaying", async function () {
      this.timeout(180_000);
      const root = path.resolve(__dirname, "..", "..");
      const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
        const child = spawn("npx", ["hardhat", "run", "scripts/risk-table.ts"], {
          cwd: root,
          env: { ...process.env, RISK_IM_VOL_FLOOR: "1.0000000001", HARDHAT_NETWORK: "hardhat" },
        });
        let text = "";
        child.stdout.on("data", (d) => (text += d));
        child.stderr.on("data", (d) => (text += d));
        // Before the fix the value passed and the replay ran for minutes until createMarket reverted ParamPrecision.
        const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
        child.on("close", (code) => {
          clearTimeout(timer);
          resolve({ code, text });
        });
      });
      expect(out.text).to.contain("error: RISK_IM_VOL_FLOOR=1.0000000001 is not a decimal between 0 and 10 with at most 9 decimals (e.g. RISK_IM_VOL_FLOOR=1.5)");
      expect(out.code).to.equal(1);
    });
  });
});
