import { expect } from "chai";
import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";

import { deployLocalSystem } from "../../deploy/system";
import { CRYPTO_FEED, DEFAULT_RISK, HAIRCUTS, MAJOR_MARKET } from "../../deploy/params";
import { loadPriceCsv } from "../../lib/prices";
import { E18, E8, USDC } from "../shared/fixtures";
import {
  applyLiquidation,
  fundingIndexNow,
  liquidationFraction,
  mulDivUp,
  USDC_SCALE,
  valuation,
  WAD,
  wMulUp,
  type AccountIn,
} from "../shared/marginMath";

/*
 * Black Thursday (12-13 March 2020): the real Binance ETH/USDT hourly closes (data/, see data/
 * SOURCES.md; CryptoDataDownload export) replayed through the mock feed on a 5x ETH long.
 *
 * The test predicts, with its own bigint mirror of the documented formulas, the first hour at which
 * health falls below 1 and everything the liquidation leaves; the contract must agree exactly. Inputs
 * read from the chain: the oracle's EWMA volatility after each poke (the maintenance margin's σ) and the
 * block times the test itself sets. Funding is not neutralised: the long is the only side, so it pays
 * funding at rate = skew / skewScale × maxFundingRate a day, which the mirror includes.
 */

const FILE = "eth_usdt_binance_1h_2020-03-09_2020-03-17.csv";
const SIZE = E18(100); // 100 ETH long
const RISK = DEFAULT_RISK;
const M = MAJOR_MARKET;

describe("Scenario › Black Thursday: 5x ETH long on Binance ETH/USDT hourly closes, March 2020", function () {
  it("is liquidated at the hour the mirror predicts, leaving exactly the predicted account", async function () {
    const bars = loadPriceCsv(FILE, 8);
    expect(bars.length).to.equal(192);
    const [deployer, lp, alice, keeper] = await ethers.getSigners();

    const sys = await deployLocalSystem(deployer, { eth: bars[0].price, btc: E8(30000) });
    const { engine, oracle, pool, vault, usdc, weth, ethFeed, ethMarket } = sys;
    await usdc.mint(lp.address, USDC(1_000_000));
    await usdc.connect(lp).approve(pool, USDC(1_000_000));
    await pool.connect(lp).deposit(USDC(1_000_000), lp.address);

    // 5x: USDC margin = notional / 5 at the first close (203.14 ⇒ 20,314 USD notional, 4,062.8 margin).
    const p0 = bars[0].price * 10n ** 10n;
    const notional0 = (SIZE * p0) / WAD;
    const marginUsdc = notional0 / 5n / USDC_SCALE;
    expect(marginUsdc).to.equal(USDC(4062) + 800_000n);
    await vault.connect(alice).createAccount();
    const id = await vault.accountCount();
    await usdc.mint(alice.address, marginUsdc);
    await usdc.connect(alice).approve(vault, marginUsdc);
    await vault.connect(alice).depositMargin(id, usdc, marginUsdc);

    // Bar 0 at a chosen time `start` (so every EWMA step sees exactly the CSV's spacing, whatever the wall
    // clock): the same crypto feed, with a breaker wide enough for the real path (largest hourly move
    // ≈ 21 %); setFeed restarts the volatility at its floor; the long opens 3 s later.
    const start = BigInt(await time.latest()) + 10n;
    await time.setNextBlockTimestamp(start);
    await ethFeed.setAnswer(bars[0].price);
    await time.setNextBlockTimestamp(start + 1n); // every block up to the open pinned: no wall clock
    await oracle.setFeed(weth, { feed: await ethFeed.getAddress(), ...CRYPTO_FEED, maxJumpBps: 5000 });
    await time.setNextBlockTimestamp(start + 2n);
    await oracle.poke(weth);
    expect((await oracle.observation(weth)).updatedAt).to.equal(start);
    const openTime = start + 3n;
    await time.setNextBlockTimestamp(openTime);
    await engine.connect(alice).modifyPosition(id, ethMarket, SIZE, ethers.MaxUint256);

    // Ledger after the open: fee 20,314 × 0.05 % = 10.157 USD, paid from margin; funding index 0 at open.
    const fee = wMulUp(mulDivUp(SIZE, p0, WAD), M.feeRate);
    expect(fee).to.equal(10_157n * 10n ** 15n);
    const usdcMargin = marginUsdc - fee / USDC_SCALE;
    expect(await vault.marginOf(id, usdc)).to.equal(usdcMargin);
    // Pool capital only to follow the pool's balance through the liquidation: requirements read the market's
    // oiCapUsd, never pool capital.
    const poolCapital = USDC(1_000_000) + fee / USDC_SCALE;

    const model = (px: bigint, vol: bigint, now: bigint): AccountIn => ({
      collateral: [{ amount: usdcMargin, price: WAD, decimals: 6, haircut: HAIRCUTS.USDC }],
      settlement: 0n,
      positions: [
        {
          size: SIZE,
          entryPrice: p0,
          entryFunding: 0n,
          index: fundingIndexNow(0n, openTime, now, M, SIZE, 0n, px),
          price: px,
          market: M,
          vol,
        },
      ],
    });

    let liquidatedAt = -1;
    let minHealthBefore = 2n ** 256n - 1n;
    for (let i = 1; i < bars.length; i++) {
      const t = start + BigInt(bars[i].timestamp - bars[0].timestamp);
      await time.setNextBlockTimestamp(t);
      await ethFeed.setAnswer(bars[i].price);
      await time.setNextBlockTimestamp(t + 1n);
      const poke = await (await oracle.poke(weth)).wait();
      const px = bars[i].price * 10n ** 10n;
      const vol = await oracle.volatility(weth);

      // The mirror and the engine at the poke's block (time t + 1).
      const expected = valuation(model(px, vol, t + 1n), RISK);
      const onChain = await engine.accountState(id, { blockTag: poke!.blockNumber });
      expect(onChain.health, `hour ${i}`).to.equal(expected.health);
      expect(onChain.equity, `hour ${i}`).to.equal(expected.equity);
      if (expected.health < minHealthBefore) minHealthBefore = expected.health;
      if (expected.health >= WAD) continue;

      // First hour below 1: the keeper liquidates at t + 2.
      liquidatedAt = i;
      const tl = t + 2n;
      const inputs = model(px, vol, tl);
      const before = valuation(inputs, RISK);
      const { f, rule } = liquidationFraction(before, RISK);
      const liq = applyLiquidation({ ...inputs, usdcMargin, poolCapital }, f, RISK);
      const remaining = liq.positionsAfter.filter((p) => p.size !== 0n);
      const after = valuation(
        {
          ...inputs,
          collateral: [{ ...inputs.collateral[0], amount: liq.usdcMarginAfter }],
          settlement: liq.settlementAfter,
          positions: remaining,
        },
        RISK,
      );

      const keeperUsdc0 = await usdc.balanceOf(keeper);
      await time.setNextBlockTimestamp(tl);
      const tx = await engine.connect(keeper).liquidate(id);
      const rc = (await tx.wait())!;
      await expect(tx)
        .to.emit(engine, "Liquidated")
        .withArgs(id, keeper.address, f, liq.closedNotional, liq.penalty, liq.keeperUsd, before.health, after.health);

      // What the liquidation leaves, exactly.
      const pos = await engine.position(id, ethMarket);
      expect(pos.size).to.equal(SIZE - liq.closeSizes[0]);
      expect((await usdc.balanceOf(keeper)) - keeperUsdc0).to.equal(liq.keeperTokens);
      expect(await vault.marginOf(id, usdc)).to.equal(liq.usdcMarginAfter);
      expect(await pool.capital()).to.equal(liq.poolCapitalAfter);
      const st = await engine.accountState(id, { blockTag: rc.blockNumber });
      expect(st.equity).to.equal(after.equity);
      expect(st.settlement).to.equal(liq.settlementAfter);
      expect(st.health).to.equal(after.health);

      // Pinned outcome of this replay (the mirror's numbers, stated so a change is visible in review).
      expect({ hour: i, close: bars[i].price, rule }).to.deep.equal(EXPECTED.at);
      expect(f).to.equal(EXPECTED.fraction);
      expect(pos.size).to.equal(EXPECTED.remainingSize);
      expect(after.equity).to.equal(EXPECTED.equityAfter);
      expect(liq.keeperTokens).to.equal(EXPECTED.keeperUsdc);
      if (remaining.length > 0) expect(after.health).to.be.gte(RISK.liquidationTargetRatio);
      break;
    }
    expect(liquidatedAt).to.be.gt(0);
    expect(minHealthBefore).to.be.lt(WAD);
  });
});

/**
 * The mirror's prediction for this file, pinned (each value is also asserted equal to the mirror and the
 * contract above): bar 78 = 2020-03-12 06:00 UTC, close 173.80 (−14.4 % from 203.14), health ≈ 0.687 with
 * σ ≈ 158 % a year; a partial liquidation closes f ≈ 47.36 % and leaves ≈ 52.64 ETH, equity ≈ 1,025.68
 * USD at health ≈ 1.2021; the keeper receives 5 + ½ × 1 % × 8,231.27 ≈ 46.156333 USDC.
 * The size term of the rate divides by the market's oiCapUsd (500,000 USD), no longer by 0.5 × pool capital
 * (500,005.0785 USD here): a slightly higher requirement closes a few parts in 10^8 more (same hour, same rule).
 */
const EXPECTED = {
  at: { hour: 78, close: 17_380_000_000n, rule: "partial" },
  fraction: 473_605_680_781_908_328n,
  remainingSize: 52_639_431_921_809_167_200n,
  equityAfter: 1_025_681_852_000_000_000_000n,
  keeperUsdc: 46_156_333n,
};
