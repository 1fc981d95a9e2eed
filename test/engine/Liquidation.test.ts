import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { E18, systemFixture, USDC, type SystemFixture } from "../helpers/fixtures";
import { ACTION, CRYPTO_FEED, MAJOR_MARKET, wad } from "../../deploy/params";
import {
  applyLiquidation,
  liquidationFraction,
  mulDivDown,
  mulDivUp,
  positionPnl,
  USDC_SCALE,
  valuation,
  WAD,
  wMulDown,
  type RiskP,
} from "../helpers/marginMath";
import { expectState, modelInputs, openAccount, PX8, RISK, toWad8, type Book } from "../helpers/book";

/*
 * Liquidation (README "Architecture", IMarginEngine.liquidate/buyCollateral NatSpec).
 *
 * Every expected number is computed in this file from the test's own ledger (deposits, trades at known
 * prices) with the documented formulas in test/helpers/marginMath.ts. The only values read from the chain
 * as inputs are the oracle's volatilities σ and σ_mm after the test's own poke (the engine reads the same
 * pair at the same block time) and the pool's capital (only to follow the pool's own balance: requirements
 * read the market's oiCapUsd, never pool capital).
 * Funding is switched off (maxFundingRate = 0) so values do not depend on block times.
 *
 * Every price move here happens within one interval of the volatility grid (test/helpers/fixtures.ts), so σ and
 * σ_mm stay at their 10 % floor: accounts become liquidatable by price alone, never by the volatility term
 * (README "Risk model"). A 5x long (2,000 USDC on 5 ETH at 2,000) then crosses health 1 near 1,627 (−18.6 %):
 * the prices below were chosen for the rule each test exercises (partial at 1,625: h ≈ 0.92).
 */

const START = { eth: toWad8(PX8(2000)), btc: toWad8(PX8(30000)) };
/** ETH price at which the 5x long of `longEthFixture` is liquidated partially (h ≈ 0.92, f ≈ 0.597). */
const PARTIAL_ETH = 1625n;

/** systemFixture with funding off in both markets and a keeper. */
async function liqFixture() {
  const f = await systemFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  return f;
}

const pxAt = (f: SystemFixture) => (market: bigint) => (market === f.ethMarket ? START.eth : START.btc);

/** Alice: 2,000 USDC margin, 5 ETH long at 2,000 (10,000 USD notional, 5x). */
async function longEthFixture() {
  const f = await liqFixture();
  const book = await openAccount(f, f.alice, { usdc: USDC(2000) }, [{ market: f.ethMarket, size: E18(5) }], pxAt(f));
  return { ...f, book };
}

/** Alice: 3,000 USDC margin, 5 ETH long at 2,000 and 0.2 BTC long at 30,000 in one account. */
async function crossFixture() {
  const f = await liqFixture();
  const book = await openAccount(
    f,
    f.alice,
    { usdc: USDC(3000) },
    [
      { market: f.ethMarket, size: E18(5) },
      { market: f.btcMarket, size: wad("0.2") },
    ],
    pxAt(f),
  );
  return { ...f, book };
}

/** Alice: 1 WETH as margin only (no USDC), 0.3 BTC long at 30,000. */
async function wethMarginFixture() {
  const f = await liqFixture();
  const book = await openAccount(f, f.alice, { weth: E18(1) }, [{ market: f.btcMarket, size: wad("0.3") }], pxAt(f));
  return { ...f, book };
}

/**
 * Alice: 1,000 USDC margin, 2.5 ETH long at 2,000 (5x, within the leverage IM allows at its 200 % stress volatility)
 * — a 25 % drop (the breaker's limit, in one round) leaves a deficit.
 */
async function thinFixture() {
  const f = await liqFixture();
  const book = await openAccount(f, f.alice, { usdc: USDC(1000) }, [{ market: f.ethMarket, size: wad("2.5") }], pxAt(f));
  return { ...f, book };
}

/**
 * The EWMA volatility, and so every requirement below, depends on the seconds between two feed rounds. Each
 * new round is mined one second after the latest block, never at whatever the wall clock says: a test that
 * compares two runs from the same fixture (the dust threshold) sees the same volatility in both, however
 * slowly blocks are mined (coverage).
 */
async function pinNextRound() {
  await time.setNextBlockTimestamp((await time.latest()) + 1);
}
async function setEth(f: SystemFixture, usd: bigint | number) {
  await pinNextRound();
  await f.ethFeed.setAnswer(PX8(usd));
  await f.oracle.poke(f.weth);
  return toWad8(PX8(usd));
}
async function setBtc(f: SystemFixture, usd: bigint | number) {
  await pinNextRound();
  await f.btcFeed.setAnswer(PX8(usd));
  await f.oracle.poke(f.wbtc);
  return toWad8(PX8(usd));
}

/** Model of the account before, the documented fraction, and the liquidation's effects. */
async function predict(f: SystemFixture, book: Book, px: { eth: bigint; btc: bigint }, risk: RiskP = RISK) {
  const inputs = await modelInputs(f, book, px);
  const before = valuation(inputs, risk);
  const { f: fraction, rule } = liquidationFraction(before, risk);
  const poolCapital = await f.pool.capital();
  const liq = applyLiquidation({ ...inputs, usdcMargin: book.usdcMargin, poolCapital }, fraction, risk);
  const after = valuation(
    {
      ...inputs,
      collateral: [{ ...inputs.collateral[0], amount: liq.usdcMarginAfter }, inputs.collateral[1]],
      settlement: liq.settlementAfter,
      positions: liq.positionsAfter.filter((p) => p.size !== 0n),
    },
    risk,
  );
  return { inputs, before, fraction, rule, liq, after };
}

describe("MarginEngine › liquidate", function () {
  it("reverts NotLiquidatable(id, health) on an account at or above maintenance margin", async function () {
    const f = await loadFixture(longEthFixture);
    const eth = await setEth(f, 1850);
    const { before } = await predict(f, f.book, { ...START, eth });
    expect(before.health).to.be.gte(WAD);
    expect(await f.engine.liquidationFraction(f.book.id)).to.equal(0n);
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id))
      .to.be.revertedWithCustomError(f.engine, "NotLiquidatable")
      .withArgs(f.book.id, before.health);
  });

  it("closes the documented least fraction, credits the keeper, funds insurance, and restores the target ratio", async function () {
    const f = await loadFixture(longEthFixture);
    const eth = await setEth(f, PARTIAL_ETH);
    const p = await predict(f, f.book, { ...START, eth });
    expect(p.rule).to.equal("partial");
    expectState(await f.engine.accountState(f.book.id), p.before);
    expect(p.before.health).to.be.lt(WAD).and.gte(RISK.fullLiquidationHealth);

    // f = (t·(M + R) − (E − R − u)) / (t·M − p·N), rounded up, u = one USDC unit (1e12) of settle rounding kept
    // for the protocol; spelled out once more here.
    const R = RISK.keeperReward;
    const M = p.before.maintenanceMargin - R;
    const num = mulDivUp(RISK.liquidationTargetRatio, M + R, WAD) - (p.before.equity - R - USDC_SCALE);
    const den = wMulDown(M, RISK.liquidationTargetRatio) - mulDivUp(p.before.notional, RISK.liquidationPenalty, WAD);
    expect(p.fraction).to.equal(mulDivUp(num, WAD, den));
    expect(p.fraction).to.be.gt(0n).and.lt(WAD);
    expect(await f.engine.liquidationFraction(f.book.id)).to.equal(p.fraction);
    expect(await f.engine.connect(f.keeper).liquidate.staticCall(f.book.id)).to.equal(p.fraction);

    // Closed size rounds away from zero: ceil(5e18 · f / 1e18).
    expect(p.liq.closeSizes[0]).to.equal(mulDivUp(E18(5), p.fraction, WAD));
    // Keeper: reward + 50 % of the 1 % penalty (share rounded down), credited in USDC units rounded down (claimable).
    const penalty = mulDivUp(p.liq.closedNotional, RISK.liquidationPenalty, WAD);
    const keeperUsd = R + mulDivDown(penalty, RISK.keeperPenaltyShare, WAD);
    expect(p.liq.penalty).to.equal(penalty);
    expect(p.liq.keeperUsd).to.equal(keeperUsd);

    const keeperUsdc0 = await f.engine.keeperRewardsOf(f.keeper);
    const insurance0 = await f.pool.insuranceBalance();
    const tx = f.engine.connect(f.keeper).liquidate(f.book.id);
    await expect(tx)
      .to.emit(f.engine, "Liquidated")
      .withArgs(f.book.id, f.keeper.address, p.fraction, p.liq.closedNotional, penalty, keeperUsd, p.before.health, p.after.health);
    await expect(tx)
      .to.emit(f.engine, "KeeperRewardCredited")
      .withArgs(f.keeper.address, keeperUsd / USDC_SCALE, keeperUsdc0 + keeperUsd / USDC_SCALE);
    // Credited, not paid: no token reaches the keeper on the liquidation itself.
    await expect(tx).to.changeTokenBalance(f.usdc, f.keeper, 0n);

    expect((await f.engine.keeperRewardsOf(f.keeper)) - keeperUsdc0).to.equal(keeperUsd / USDC_SCALE);
    expect((await f.pool.insuranceBalance()) - insurance0).to.equal((penalty - (keeperUsd - R)) / USDC_SCALE);
    expect((await f.engine.position(f.book.id, f.ethMarket)).size).to.equal(E18(5) - p.liq.closeSizes[0]);
    expect((await f.engine.position(f.book.id, f.ethMarket)).entryPrice).to.equal(eth);
    expect(await f.vault.marginOf(f.book.id, f.usdc)).to.equal(p.liq.usdcMarginAfter);
    expect(await f.pool.capital()).to.equal(p.liq.poolCapitalAfter);
    expectState(await f.engine.accountState(f.book.id), p.after);

    // Health after: at least the target, rounding included. The settle rounds the owed USDC up (< 1e-6 USD of
    // equity): the fraction keeps that unit (E − R − 1e12), and f and the closed size round up (σ = σ_mm: mmNow = MM).
    expect(p.after.equity).to.be.gte(mulDivUp(RISK.liquidationTargetRatio, p.after.maintenanceMargin, WAD));
    expect(p.after.health).to.be.gte(RISK.liquidationTargetRatio);
    expect(p.after.health).to.be.lt(RISK.liquidationTargetRatio + wad("0.01"));
  });

  it("keeps a running credit per keeper across liquidations; the claim pays it from the pool to `to`, capital unchanged", async function () {
    const f = await loadFixture(longEthFixture);
    const bobBook = await openAccount(f, f.bob, { usdc: USDC(2000) }, [{ market: f.ethMarket, size: E18(5) }], pxAt(f));
    const eth = await setEth(f, PARTIAL_ETH);

    const pA = await predict(f, f.book, { ...START, eth });
    expect(pA.rule).to.equal("partial");
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id))
      .to.emit(f.engine, "KeeperRewardCredited")
      .withArgs(f.keeper.address, pA.liq.keeperTokens, pA.liq.keeperTokens);
    expect(await f.pool.capital()).to.equal(pA.liq.poolCapitalAfter);
    const pB = await predict(f, bobBook, { ...START, eth });
    expect(pB.rule).to.equal("partial");
    const total = pA.liq.keeperTokens + pB.liq.keeperTokens;
    await expect(f.engine.connect(f.keeper).liquidate(bobBook.id))
      .to.emit(f.engine, "KeeperRewardCredited")
      .withArgs(f.keeper.address, pB.liq.keeperTokens, total);
    expect(await f.pool.capital()).to.equal(pB.liq.poolCapitalAfter);
    // Two identical accounts at one price: the same reward twice, 5 USD + half the 1 % penalty each, rounded down.
    expect(pB.liq.keeperTokens).to.equal(pA.liq.keeperTokens);
    expect(pA.liq.keeperTokens).to.equal(pA.liq.keeperUsd / USDC_SCALE);
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(total);
    expect(await f.engine.totalKeeperRewards()).to.equal(total);
    expect(await f.usdc.balanceOf(f.keeper)).to.equal(0n);

    // The keeper claims to another address: the pool pays exactly the credit; LP capital does not move (the
    // credit was already outside it) and the insurance fund is untouched.
    const capital0 = await f.pool.capital();
    const insurance0 = await f.pool.insuranceBalance();
    const to = f.lp;
    const toBalance0 = await f.usdc.balanceOf(to);
    expect(await f.engine.connect(f.keeper).claimKeeperRewards.staticCall(to.address)).to.equal(total);
    const tx = f.engine.connect(f.keeper).claimKeeperRewards(to.address);
    await expect(tx).to.emit(f.engine, "KeeperRewardsClaimed").withArgs(f.keeper.address, to.address, total);
    await expect(tx).to.changeTokenBalances(f.usdc, [to, f.keeper, f.engine], [total, 0n, -total]);
    expect((await f.usdc.balanceOf(to)) - toBalance0).to.equal(total);
    expect(await f.pool.capital()).to.equal(capital0);
    expect(await f.pool.insuranceBalance()).to.equal(insurance0);
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(0n);
    expect(await f.engine.totalKeeperRewards()).to.equal(0n);
    // Nothing is left to claim.
    await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address))
      .to.be.revertedWithCustomError(f.engine, "NothingToClaim")
      .withArgs(f.keeper.address);
  });

  it("closes everything when health is below fullLiquidationHealth", async function () {
    // By price alone at the default threshold (0.5) this 5x long is below 0.5 only once its equity no longer
    // covers the penalty (the full close would leave bad debt, and the partial rule gives 1 already there).
    // To isolate the rule, governance raises the threshold to 0.9: at 1,622 (h ≈ 0.81) the partial rule would
    // close 81 %, the threshold closes everything, and the account keeps what is left.
    const f = await loadFixture(longEthFixture);
    const risk: RiskP = { ...RISK, fullLiquidationHealth: wad("0.9") };
    await f.engine.setRiskParams(risk);
    const eth = await setEth(f, 1622);
    const p = await predict(f, f.book, { ...START, eth }, risk);
    expect(p.before.health).to.be.lt(risk.fullLiquidationHealth).and.gte(RISK.fullLiquidationHealth);
    expect(p.rule).to.equal("full-health");
    const atDefault = liquidationFraction(p.before, RISK);
    expect(atDefault.rule).to.equal("partial");
    expect(atDefault.f).to.equal(812_331_294_221_364_664n); // what the default threshold would close
    expect(await f.engine.liquidationFraction(f.book.id)).to.equal(WAD);

    const keeperUsdc0 = await f.engine.keeperRewardsOf(f.keeper);
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id))
      .to.emit(f.engine, "Liquidated")
      .withArgs(f.book.id, f.keeper.address, WAD, E18(5) * 1622n, p.liq.penalty, p.liq.keeperUsd, p.before.health, p.after.health);
    expect(p.liq.penalty).to.equal(wad("81.1")); // 1 % of 8,110
    expect(p.liq.keeperUsd).to.equal(E18(5) + wad("40.55"));
    expect((await f.engine.keeperRewardsOf(f.keeper)) - keeperUsdc0).to.equal(USDC(45) + 550_000n);
    expect(await f.engine.positionMask(f.book.id)).to.equal(0n);
    // 1,995 margin − 1,890 loss − 5 reward − 81.1 penalty = 18.9 USDC left, no position, health = max.
    expect(await f.vault.marginOf(f.book.id, f.usdc)).to.equal(USDC(18) + 900_000n);
    expect(p.after.health).to.equal(2n ** 256n - 1n);
    expectState(await f.engine.accountState(f.book.id), p.after);
  });

  it("closes everything when the remainder would be dust", async function () {
    const f = await loadFixture(longEthFixture);
    const eth = await setEth(f, PARTIAL_ETH);
    const partial = await predict(f, f.book, { ...START, eth });
    expect(partial.rule).to.equal("partial");
    // The partial close would leave N·(1 − f) of notional; make that dust.
    const remaining = (partial.before.notional * (WAD - partial.fraction)) / WAD;
    const risk: RiskP = { ...RISK, dustNotional: remaining + 1n };
    await f.engine.setRiskParams(risk);

    const p = await predict(f, f.book, { ...START, eth }, risk);
    expect(p.rule).to.equal("dust");
    expect(await f.engine.liquidationFraction(f.book.id)).to.equal(WAD);
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id))
      .to.emit(f.engine, "Liquidated")
      .withArgs(f.book.id, f.keeper.address, WAD, E18(5) * PARTIAL_ETH, p.liq.penalty, p.liq.keeperUsd, p.before.health, p.after.health);
    expect(await f.engine.positionMask(f.book.id)).to.equal(0n);

    // One wei less of dust threshold and the same account is liquidated partially.
    const g = await loadFixture(longEthFixture);
    await setEth(g, PARTIAL_ETH);
    await g.engine.setRiskParams({ ...RISK, dustNotional: remaining });
    expect(await g.engine.liquidationFraction(g.book.id)).to.equal(partial.fraction);
  });

  it("reduces every position of a cross-margin account by the same fraction", async function () {
    const f = await loadFixture(crossFixture);
    const eth = await setEth(f, 1640);
    const btc = await setBtc(f, 24900);
    const p = await predict(f, f.book, { eth, btc });
    expect(p.rule).to.equal("partial");
    expectState(await f.engine.accountState(f.book.id), p.before);

    const tx = f.engine.connect(f.keeper).liquidate(f.book.id);
    await expect(tx)
      .to.emit(f.engine, "Liquidated")
      .withArgs(f.book.id, f.keeper.address, p.fraction, p.liq.closedNotional, p.liq.penalty, p.liq.keeperUsd, p.before.health, p.after.health);
    await expect(tx).to.emit(f.engine, "PositionModified").withArgs(f.book.id, f.ethMarket, -p.liq.closeSizes[0], E18(5) - p.liq.closeSizes[0], eth, positionPnl(E18(5), START.eth, 0n, eth, 0n), 0n);

    const ethLeft = (await f.engine.position(f.book.id, f.ethMarket)).size;
    const btcLeft = (await f.engine.position(f.book.id, f.btcMarket)).size;
    expect(E18(5) - ethLeft).to.equal(mulDivUp(E18(5), p.fraction, WAD));
    expect(wad("0.2") - btcLeft).to.equal(mulDivUp(wad("0.2"), p.fraction, WAD));
    // Same fraction of each: the closed sizes differ from f·size by less than one wei each.
    expect((E18(5) - ethLeft) * WAD - E18(5) * p.fraction).to.be.gte(0n).and.lt(WAD);
    expect((wad("0.2") - btcLeft) * WAD - wad("0.2") * p.fraction).to.be.gte(0n).and.lt(WAD);
    // Closed notional sums both markets, each rounded up.
    expect(p.liq.closedNotional).to.equal(
      mulDivUp(E18(5) - ethLeft, eth, WAD) + mulDivUp(wad("0.2") - btcLeft, btc, WAD),
    );
    expectState(await f.engine.accountState(f.book.id), p.after);
    expect(p.after.health).to.be.gte(RISK.liquidationTargetRatio);
  });

  it("reverts OracleUnhealthy(asset) when the feed is stale", async function () {
    const f = await loadFixture(longEthFixture);
    await setEth(f, 1750);
    await time.increase(CRYPTO_FEED.heartbeat + 1);
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id))
      .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy")
      .withArgs(await f.weth.getAddress());
  });

  it("reverts OracleUnhealthy(asset) while the asset's circuit breaker is tripped", async function () {
    const f = await loadFixture(longEthFixture);
    await setEth(f, 1400); // −30 % > 25 % maxJump
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id))
      .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy")
      .withArgs(await f.weth.getAddress());
  });
});

describe("MarginEngine › buyCollateral", function () {
  /** BTC −20 %: the WETH-margined account (equity −4.5 USD: health 0) is closed in full and owes the pool. */
  async function liquidatedWethFixture() {
    const f = await wethMarginFixture();
    const btc = await setBtc(f, 24000);
    const p = await predict(f, f.book, { eth: START.eth, btc });
    await f.engine.connect(f.keeper).liquidate(f.book.id);
    return { ...f, p, btc };
  }

  it("leaves the WETH-margined account with negative settlement after a full close", async function () {
    const f = await loadFixture(liquidatedWethFixture);
    expect(f.p.fraction).to.equal(WAD);
    expect(await f.engine.positionMask(f.book.id)).to.equal(0n);
    // −fee 4.5 − loss 1,800 − reward 5 − penalty 72: nothing in USDC to settle it with.
    expect(f.p.before.health).to.equal(0n);
    expect(f.p.liq.settlementAfter).to.equal(-wad("1881.5"));
    expect((await f.engine.accountState(f.book.id)).settlement).to.equal(-wad("1881.5"));
    expect(await f.vault.marginOf(f.book.id, f.weth)).to.equal(E18(1));
  });

  it("sells WETH margin at price × (1 − 5 %) with the repay capped at the debt", async function () {
    const f = await loadFixture(liquidatedWethFixture);
    const debtUsdc = USDC(1881) + 500_000n;
    const discounted = wMulDown(START.eth, WAD - RISK.collateralDiscount); // 1,900
    const amountOut = mulDivDown(debtUsdc * USDC_SCALE, WAD, discounted); // rounded down
    expect(amountOut).to.equal(990_263_157_894_736_842n);

    await f.usdc.mint(f.keeper.address, USDC(10_000));
    await f.usdc.connect(f.keeper).approve(f.engine, USDC(10_000));
    expect(
      await f.engine.connect(f.keeper).buyCollateral.staticCall(f.book.id, f.weth, USDC(10_000), 0n),
    ).to.equal(amountOut);
    const pool0 = await f.engine.poolBalance();
    const tx = f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, USDC(10_000), amountOut);
    await expect(tx)
      .to.emit(f.engine, "CollateralBought")
      .withArgs(f.book.id, f.keeper.address, await f.weth.getAddress(), debtUsdc, amountOut);
    await expect(tx).to.changeTokenBalance(f.usdc, f.keeper, -debtUsdc);
    expect((await f.engine.poolBalance()) - pool0).to.equal(debtUsdc);
    expect(await f.weth.balanceOf(f.keeper)).to.equal(amountOut);
    expect(await f.vault.marginOf(f.book.id, f.weth)).to.equal(E18(1) - amountOut);
    expect((await f.engine.accountState(f.book.id)).settlement).to.equal(0n);

    // Debt repaid: nothing more to buy.
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, 1n, 0n))
      .to.be.revertedWithCustomError(f.engine, "NothingToBuy")
      .withArgs(f.book.id);
  });

  it("sells part of the margin for a partial repay, rounded down", async function () {
    const f = await loadFixture(liquidatedWethFixture);
    await f.usdc.mint(f.keeper.address, USDC(1000));
    await f.usdc.connect(f.keeper).approve(f.engine, USDC(1000));
    const repay = USDC(1000);
    const amountOut = mulDivDown(repay * USDC_SCALE, WAD, wad("1900")); // 0.526315789473684210
    expect(amountOut).to.equal(526_315_789_473_684_210n);
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, repay, amountOut))
      .to.emit(f.engine, "CollateralBought")
      .withArgs(f.book.id, f.keeper.address, await f.weth.getAddress(), repay, amountOut);
    expect((await f.engine.accountState(f.book.id)).settlement).to.equal(-wad("881.5"));
  });

  it("reverts SlippageExceeded(amountOut, min) when minAmountOut is above what the repay buys", async function () {
    const f = await loadFixture(liquidatedWethFixture);
    await f.usdc.mint(f.keeper.address, USDC(1000));
    await f.usdc.connect(f.keeper).approve(f.engine, USDC(1000));
    const amountOut = 526_315_789_473_684_210n;
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, USDC(1000), amountOut + 1n))
      .to.be.revertedWithCustomError(f.engine, "SlippageExceeded")
      .withArgs(amountOut, amountOut + 1n);
  });

  it("sells all the margin when it is worth less than the debt, and writes the rest off as bad debt", async function () {
    const f = await loadFixture(liqFixture);
    const book = await openAccount(f, f.alice, { weth: wad("0.5") }, [{ market: f.btcMarket, size: wad("0.15") }], pxAt(f));
    await setBtc(f, 25000);
    const eth = await setEth(f, 1500); // the collateral falls too (−25 %, at the breaker's limit)
    await f.engine.connect(f.keeper).liquidate(book.id);
    // −fee 2.25 − loss 750 − reward 5 − penalty 37.5; the penalty's insurance half is 18.75.
    expect((await f.engine.accountState(book.id)).settlement).to.equal(-wad("794.75"));
    expect(await f.pool.insuranceBalance()).to.equal(USDC(18) + 750_000n);

    // 0.5 WETH at 1,500 × 0.95 = 1,425 is worth 712.5 USDC: all of it is sold, the buyer pays 712.5.
    const discounted = wMulDown(eth, WAD - RISK.collateralDiscount);
    const repay = mulDivUp(wad("0.5"), discounted, WAD * USDC_SCALE);
    expect(repay).to.equal(USDC(712) + 500_000n);
    await f.usdc.mint(f.keeper.address, USDC(1000));
    await f.usdc.connect(f.keeper).approve(f.engine, USDC(1000));
    const tx = f.engine.connect(f.keeper).buyCollateral(book.id, f.weth, USDC(1000), 0n);
    await expect(tx)
      .to.emit(f.engine, "CollateralBought")
      .withArgs(book.id, f.keeper.address, await f.weth.getAddress(), repay, wad("0.5"));
    await expect(tx).to.changeTokenBalance(f.usdc, f.keeper, -repay);
    // 794.75 − 712.5 = 82.25 left with nothing to cover it: insurance pays 18.75, LPs 63.5.
    await expect(tx).to.emit(f.engine, "BadDebt").withArgs(book.id, wad("82.25"), USDC(18) + 750_000n);
    await expect(tx)
      .to.emit(f.engine, "BadDebtCovered")
      .withArgs(book.id, USDC(82) + 250_000n, USDC(18) + 750_000n, USDC(63) + 500_000n);
    expect(await f.vault.marginMask(book.id)).to.equal(0n);
    expect((await f.engine.accountState(book.id)).settlement).to.equal(0n);
  });

  it("reverts RescueAvailable while the account's own reserve can rescue it, as liquidate does; after the rescue nothing to buy", async function () {
    const f = await loadFixture(wethMarginFixture);
    // alice keeps 10,000 USDC in reserve under a TOP_UP policy that pays a rescue's keeper the liquidation reward
    await f.usdc.mint(f.alice.address, USDC(10_000));
    await f.usdc.connect(f.alice).approve(f.vault, USDC(10_000));
    await f.vault.connect(f.alice).deposit(f.book.id, f.usdc, USDC(10_000));
    await f.engine.connect(f.alice).setRebalancePolicy(f.book.id, {
      actions: ACTION.TOP_UP, cooldown: 0, triggerRatio: wad("1.3"), targetRatio: wad("1.6"), releaseRatio: 0n,
      maxFeeUsd: wad("50"), topUpAssets: [await f.usdc.getAddress()],
    });
    await setBtc(f, 24000); // health 0, owing (settlement −4.5 USD: the open's fee), WETH margin
    expect((await f.engine.accountState(f.book.id)).health).to.equal(0n);
    expect(await f.engine.rescueAvailable(f.book.id)).to.equal(true);
    await expect(f.engine.connect(f.keeper).liquidate(f.book.id)).to.be.revertedWithCustomError(f.engine, "RescueAvailable").withArgs(f.book.id);
    await f.usdc.mint(f.keeper.address, USDC(10));
    await f.usdc.connect(f.keeper).approve(f.engine, USDC(10));
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, USDC(10), 0n))
      .to.be.revertedWithCustomError(f.engine, "RescueAvailable")
      .withArgs(f.book.id);
    // the reserve rescues it (the USDC topped up settles the debt): its collateral is then not for sale
    await expect(f.rebalancer.connect(f.keeper).rebalance(f.book.id)).to.emit(f.rebalancer, "Rebalanced");
    expect((await f.engine.accountState(f.book.id)).health).to.be.gte(WAD);
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, USDC(10), 0n))
      .to.be.revertedWithCustomError(f.engine, "NothingToBuy")
      .withArgs(f.book.id);
  });

  it("reverts NothingToBuy for the settlement asset itself", async function () {
    const f = await loadFixture(liquidatedWethFixture);
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.usdc, USDC(1), 0n))
      .to.be.revertedWithCustomError(f.engine, "NothingToBuy")
      .withArgs(f.book.id);
  });

  it("reverts NotLiquidatable for an owing account with healthy positions, NothingToBuy without debt", async function () {
    const f = await loadFixture(wethMarginFixture);
    // Healthy, open position, settlement −fee (4.5 USD owed) but not liquidatable: NotLiquidatable.
    await expect(f.engine.connect(f.keeper).buyCollateral(f.book.id, f.weth, USDC(1), 0n)).to.be.revertedWithCustomError(
      f.engine,
      "NotLiquidatable",
    );
    // An account with WETH margin and no debt at all.
    const g = await openAccount(f, f.bob, { weth: E18(1) }, [], pxAt(f));
    await expect(f.engine.connect(f.keeper).buyCollateral(g.id, f.weth, USDC(1), 0n))
      .to.be.revertedWithCustomError(f.engine, "NothingToBuy")
      .withArgs(g.id);
  });
});

describe("MarginEngine › bad debt", function () {
  it("is covered by the insurance fund first, then by the pool's LPs", async function () {
    const f = await loadFixture(thinFixture);
    // Seed the insurance fund with 100 USDC.
    await f.usdc.mint(f.deployer.address, USDC(100));
    await f.usdc.connect(f.deployer).approve(f.pool, USDC(100));
    await f.pool.connect(f.deployer).donateInsurance(USDC(100));

    const eth = await setEth(f, 1500);
    const p = await predict(f, f.book, { ...START, eth });
    expect(p.fraction).to.equal(WAD);
    // Account: 997.5 USDC margin; loss 1,250, reward 5, penalty 37.5 ⇒ owes 1,292.5, pays 997.5, 295 unpaid.
    expect(p.liq.settlementCharged).to.equal(-wad("1292.5"));
    expect(p.liq.settlementAfter).to.equal(-wad("295"));
    const badDebtUsd = wad("295");
    const badDebtUsdc = USDC(295);
    // Insurance before write-off: 100 seeded + 18.75 (the penalty's other half).
    const insuranceAtWriteOff = USDC(118) + 750_000n;
    const fromInsurance = insuranceAtWriteOff; // all of it: 118.75 < 295
    const socialised = badDebtUsdc - fromInsurance; // 176.25 borne by LPs

    const assets0 = await f.pool.totalAssets();
    const capital0 = await f.pool.capital();
    const tx = f.engine.connect(f.keeper).liquidate(f.book.id);
    await expect(tx).to.emit(f.engine, "BadDebt").withArgs(f.book.id, badDebtUsd, fromInsurance);
    await expect(tx).to.emit(f.engine, "BadDebtCovered").withArgs(f.book.id, badDebtUsdc, fromInsurance, socialised);
    await expect(tx).to.emit(f.engine, "SettlementChanged").withArgs(f.book.id, badDebtUsd, 0n);

    expect((await f.engine.accountState(f.book.id)).settlement).to.equal(0n);
    expect(await f.vault.marginMask(f.book.id)).to.equal(0n);
    expect(await f.pool.insuranceBalance()).to.equal(0n);
    // LP capital: −23.75 credited to the keeper (held by the pool, outside capital), −18.75 to insurance, +997.5
    // margin, +118.75 from insurance.
    expect((await f.pool.capital()) - capital0).to.equal(USDC(1073) + 750_000n);
    // The keeper's credit is whole even though the account could not pay: 5 + ½ × 37.5 = 23.75 USDC.
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(USDC(23) + 750_000n);
    expect(await f.engine.totalKeeperRewards()).to.equal(USDC(23) + 750_000n);
    // Had the account paid its 1,292.5 in full, LPs would have gained 1,292.5 − 23.75 − 18.75 = 1,250;
    // they gain 1,073.75: the socialised 176.25 is the LPs' loss.
    expect((await f.pool.totalAssets()) - assets0).to.equal(USDC(1250) - socialised);
    // Before the liquidation the unpaid loss was not an asset (no receivable): totalAssets = capital.
    expect(assets0).to.equal(capital0);
  });

  it("is covered by the insurance fund alone when it is large enough", async function () {
    const f = await loadFixture(thinFixture);
    await f.usdc.mint(f.deployer.address, USDC(1000));
    await f.usdc.connect(f.deployer).approve(f.pool, USDC(1000));
    await f.pool.connect(f.deployer).donateInsurance(USDC(1000));
    await setEth(f, 1500);
    const tx = f.engine.connect(f.keeper).liquidate(f.book.id);
    await expect(tx).to.emit(f.engine, "BadDebt").withArgs(f.book.id, wad("295"), USDC(295));
    await expect(tx).to.emit(f.engine, "BadDebtCovered").withArgs(f.book.id, USDC(295), USDC(295), 0n);
    // 1,000 + 18.75 − 295
    expect(await f.pool.insuranceBalance()).to.equal(USDC(723) + 750_000n);
  });
});

describe("MarginEngine › Promise 4: liquidation succeeds only when h < 1 and improves h or closes the account", function () {
  // Around the 5x long's liquidation price (≈ 1,627 at σ's floor): healthy, partial, full by the partial rule
  // (ge1), full by fullLiquidationHealth, and negative equity.
  for (const usd of [1860, 1700, 1640, 1630, 1626, 1622, 1618, 1610, 1600, 1500]) {
    it(`ETH at ${usd}`, async function () {
      const f = await loadFixture(longEthFixture);
      await setEth(f, usd);
      const before = await f.engine.accountState(f.book.id);
      if (before.health >= WAD) {
        await expect(f.engine.connect(f.keeper).liquidate(f.book.id)).to.be.revertedWithCustomError(f.engine, "NotLiquidatable");
        return;
      }
      await f.engine.connect(f.keeper).liquidate(f.book.id);
      const after = await f.engine.accountState(f.book.id);
      const closed = (await f.engine.positionMask(f.book.id)) === 0n;
      expect(closed || after.health > before.health, `health ${before.health} → ${after.health}`).to.equal(true);
      if (!closed) expect(after.health).to.be.gte(RISK.liquidationTargetRatio);
    });
  }

  it("covers both branches: at least one price is liquidated partially and one in full", async function () {
    const fractions: bigint[] = [];
    for (const usd of [PARTIAL_ETH, 1610n]) {
      const f = await loadFixture(longEthFixture);
      await setEth(f, usd);
      fractions.push(await f.engine.liquidationFraction(f.book.id));
    }
    expect(fractions[0]).to.be.gt(0n).and.lt(WAD);
    expect(fractions[1]).to.equal(WAD);
  });
});
