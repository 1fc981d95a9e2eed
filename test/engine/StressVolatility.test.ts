import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";

import { HAIRCUTS, MAJOR_MARKET, type MarketConfig } from "../../deploy/params";
import { E18, systemFixture, USDC, VOL_INTERVAL, type SystemFixture } from "../helpers/fixtures";
import { bookTrade, expectState, modelInputs, openAccount, PX8, RISK, type Book } from "../helpers/book";
import {
  applyLiquidation,
  leastCloseFraction,
  liquidationFraction,
  mmr,
  mulDivUp,
  requirements,
  sqrtHorizon,
  USDC_SCALE,
  valuation,
  WAD,
  wDivDown,
  wMulUp,
  type AccountIn,
  type StateOut,
} from "../helpers/marginMath";
import { DEFAULT_VOL, VolMirror } from "../helpers/oracleMath";
import { ethMirror, ethRoundAt, nextBoundary } from "../helpers/ethRounds";

/*
 * The two stress-volatility rules of the risk model (README "Risk model", IMarginEngine NatSpec):
 *
 * 1. imVolFloor, the market's stress volatility of new risk: IM prices each position at
 *    σ_IM = max(σ, σ_mm, imVolFloor), (σ, σ_mm) = oracle.volatilities(asset); MM still uses σ_mm alone. In a calm
 *    market (σ = σ_mm = the oracle's 10 % floor) the deployed 200 % floor caps leverage; once σ exceeds it, IM
 *    follows σ as before.
 * 2. A liquidation is triggered at σ_mm (health < 1) but restores liquidationTargetRatio against
 *    mmNow = Σ N·mmr(max(σ, σ_mm)) + keeperReward, the maintenance margin at the current volatility.
 *
 * Every expected number is computed here from the test's own ledger and the bigint mirrors
 * (test/helpers/marginMath.ts, lib/margin.ts, test/helpers/oracleMath.ts). The only chain reads used as inputs are
 * the oracle's volatilities (each also checked against the oracle mirror), the pool's capital (to follow its
 * balance) and, after a liquidation, the account's positions and balances (to check the target on what is left).
 * The figures in EXPECTED at the end were computed with the same mirrors from the same inputs, off chain.
 *
 * Funding is off (maxFundingRate = 0) so nothing drifts with block time. The fixture is deployed at the start of a
 * volatility-grid interval (test/helpers/fixtures.ts): σ and σ_mm sit at their 10 % floor until a test sets a
 * round on the next grid boundary B1 itself (that boundary's sample, a return over dt = 1 h from 2,000). Every
 * timestamp after B1 is pinned relative to it, so σ_mm (which rises toward σ at ⌈0.2/day × elapsed⌉) is exact.
 */

const M: MarketConfig = { ...MAJOR_MARKET, maxFundingRate: 0n }; // imVolFloor 200 %
const NO_FLOOR: MarketConfig = { ...M, imVolFloor: 0n };
const SQRT_H = sqrtHorizon(RISK.volHorizon);
const R = RISK.keeperReward;
const FLOOR = DEFAULT_VOL.floor; // the oracle's volatility floor, 10 %
/** Constants.MAX_IM_VOL_FLOOR = MAX_VOLATILITY: 1,000 %. */
const MAX_IM_VOL_FLOOR = E18(10);
const HOUR = VOL_INTERVAL;
const P2000 = E18(2000);
const BTC = E18(30_000);
const b32 = (s: string) => ethers.encodeBytes32String(s);

interface Vols {
  target: bigint;
  maintenance: bigint;
}

/** systemFixture with funding off in the ETH market (imVolFloor as deployed: 200 %). */
async function stressFixture() {
  const f = await systemFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...M });
  return f;
}

/** Alice: 2,000 USDC of margin, 5 ETH long at 2,000 (10,000 USD notional, 5x: within IM at the 200 % floor). */
async function longFixture() {
  const f = await stressFixture();
  const book = await openAccount(f, f.alice, { usdc: USDC(2000) }, [{ market: f.ethMarket, size: E18(5) }], () => P2000, M);
  return { ...f, book };
}

async function ethVols(f: SystemFixture): Promise<Vols> {
  const [target, maintenance] = await f.oracle.volatilities(f.weth);
  return { target, maintenance };
}


/** The mirror's state of a fresh account with `margin` USDC units after opening `size` ETH at `px` (fee settled). */
function openedState(margin: bigint, size: bigint, px: bigint, v: Vols, m: MarketConfig): StateOut {
  const b: Book = { id: 0n, usdcMargin: margin, wethMargin: 0n, settlement: 0n, positions: [] };
  bookTrade(b, 0n, size, px, m);
  return valuation(
    {
      collateral: [{ amount: b.usdcMargin, price: WAD, decimals: 6, haircut: HAIRCUTS.USDC }],
      settlement: b.settlement,
      positions: [{ size, entryPrice: px, entryFunding: 0n, index: 0n, price: px, market: m, vol: v.target, mmVol: v.maintenance }],
    },
    RISK,
  );
}

/** The largest size (wei) whose open leaves equity ≥ IM, by bisection on the mirror. */
function maxImSize(margin: bigint, px: bigint, v: Vols, m: MarketConfig): bigint {
  let lo = 0n;
  let hi = 10n ** 24n;
  while (lo < hi) {
    const mid = (lo + hi + 1n) / 2n;
    const s = openedState(margin, mid, px, v, m);
    if (s.equity >= s.initialMargin) lo = mid;
    else hi = mid - 1n;
  }
  return lo;
}

/** Leverage of an open: notional / equity, WAD, rounded down. */
const leverage = (s: StateOut) => wDivDown(s.notional, s.equity);

/** The valuation inputs read back from the chain (positions, balances, volatilities) for an ETH-only account. */
async function chainInputs(f: SystemFixture, id: bigint, px: bigint): Promise<AccountIn> {
  const p = await f.engine.position(id, f.ethMarket);
  const [vol, mmVol] = await f.oracle.volatilities(f.weth);
  const index = (await f.engine.marketState(f.ethMarket)).fundingIndex;
  return {
    collateral: [
      { amount: await f.vault.marginOf(id, f.usdc), price: WAD, decimals: 6, haircut: HAIRCUTS.USDC },
      { amount: await f.vault.marginOf(id, f.weth), price: px, decimals: 18, haircut: HAIRCUTS.WETH },
    ],
    settlement: (await f.engine.accountState(id)).settlement,
    positions:
      p.size === 0n
        ? []
        : [{ size: p.size, entryPrice: p.entryPrice, entryFunding: p.entryFunding, index, price: px, market: M, vol, mmVol }],
  };
}

/**
 * The engine agrees with the mirror on the largest open: one wei more reverts BelowInitialMargin(id, equity, IM)
 * with the mirror's figures, the largest opens and leaves the mirror's state. Returns the mirror's state.
 */
async function expectLargestOpen(
  f: SystemFixture,
  owner: HardhatEthersSigner,
  book: Book,
  size: bigint,
  v: Vols,
  m: MarketConfig,
): Promise<StateOut> {
  const over = openedState(USDC(1000), size + 1n, P2000, v, m);
  expect(over.equity).to.be.lt(over.initialMargin);
  await expect(f.engine.connect(owner).modifyPosition(book.id, f.ethMarket, size + 1n, ethers.MaxUint256))
    .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin")
    .withArgs(book.id, over.equity, over.initialMargin);
  const at = openedState(USDC(1000), size, P2000, v, m);
  expect(at.equity).to.be.gte(at.initialMargin);
  await expect(f.engine.connect(owner).modifyPosition(book.id, f.ethMarket, size, ethers.MaxUint256)).to.emit(f.engine, "PositionModified");
  bookTrade(book, f.ethMarket, size, P2000, m);
  expect(await f.vault.marginOf(book.id, f.usdc)).to.equal(book.usdcMargin);
  expectState(await f.engine.accountState(book.id), at);
  return at;
}

describe("MarginEngine › imVolFloor: IM prices new risk at max(σ, σ_mm, imVolFloor)", function () {
  it("calm feed (σ = σ_mm = 10 %, below the 200 % floor): IM = ⌈⌈N·mmr(imVolFloor)⌉·imFactor⌉ + keeperReward, MM = ⌈N·mmr(σ_mm)⌉ + keeperReward", async function () {
    const f = await loadFixture(longFixture);
    const v = await ethVols(f);
    expect(v).to.deep.equal({ target: FLOOR, maintenance: FLOOR });
    expect(M.imVolFloor).to.equal(E18(2));

    const n = mulDivUp(E18(5), P2000, WAD);
    expect(n).to.equal(E18(10_000));
    const im = wMulUp(wMulUp(n, mmr(M, n, M.imVolFloor, SQRT_H)), M.imFactor) + R;
    const mm = wMulUp(n, mmr(M, n, v.maintenance, SQRT_H)) + R;
    expect([im, mm]).to.deep.equal([EXPECTED.calmIm, EXPECTED.calmMm]); // 1,728.27 and 159.34 USD
    // The shared mirror agrees (σ_IM = max(σ, σ_mm, imVolFloor) = imVolFloor).
    const req = requirements(M, n, v.target, v.maintenance, SQRT_H);
    expect([req.im + R, req.mm + R, req.mmNow + R]).to.deep.equal([im, mm, mm]);

    const st = await f.engine.accountState(f.book.id);
    expect(st.initialMargin).to.equal(im);
    expect(st.maintenanceMargin).to.equal(mm);
    expectState(st, valuation(await modelInputs(f, f.book, { eth: P2000, btc: BTC }, M), RISK));

    // The floor touches IM only: without it IM would be MM × imFactor (σ_IM = σ_mm), MM is the same.
    const noFloor = requirements(NO_FLOOR, n, v.target, v.maintenance, SQRT_H);
    expect(noFloor.im + R).to.equal(wMulUp(mm - R, M.imFactor) + R);
    expect(noFloor.mm + R).to.equal(mm);
    expect(im).to.be.gt(noFloor.im + R);
  });

  it("the largest size IM allows at the floor opens, one wei more reverts BelowInitialMargin(id, equity, IM); with imVolFloor 0 the max leverage rises from 5.78x to 41.34x", async function () {
    const f = await loadFixture(stressFixture);
    const v = await ethVols(f);
    expect(v).to.deep.equal({ target: FLOOR, maintenance: FLOOR });

    // imVolFloor 200 %: 2.88 ETH on 1,000 USDC (5.78x).
    const book = await openAccount(f, f.alice, { usdc: USDC(1000) }, [], () => P2000, M);
    const size = maxImSize(USDC(1000), P2000, v, M);
    expect(size).to.equal(EXPECTED.maxSizeAtFloor);
    const atFloor = await expectLargestOpen(f, f.alice, book, size, v, M);
    expect(leverage(atFloor)).to.equal(EXPECTED.maxLeverageAtFloor);

    // The owner removes the floor: the same market, the same σ and σ_mm, a fresh account.
    await expect(f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...NO_FLOOR })).to.emit(
      f.engine,
      "MarketParamsSet",
    );
    expect((await f.engine.marketParams(f.ethMarket)).imVolFloor).to.equal(0n);
    expect(await ethVols(f)).to.deep.equal(v);
    const book0 = await openAccount(f, f.bob, { usdc: USDC(1000) }, [], () => P2000, M);
    const size0 = maxImSize(USDC(1000), P2000, v, NO_FLOOR);
    expect(size0).to.equal(EXPECTED.maxSizeNoFloor);
    expect(size0).to.be.gt(size);
    const noFloor = await expectLargestOpen(f, f.bob, book0, size0, v, NO_FLOOR);
    expect(leverage(noFloor)).to.equal(EXPECTED.maxLeverageNoFloor);
    expect(leverage(noFloor)).to.be.gt(leverage(atFloor));
  });

  it("once σ exceeds the floor (a +20 % hourly return: σ = 374.5 %) IM prices at σ, the floor inactive; MM stays at σ_mm", async function () {
    const f = await loadFixture(stressFixture);
    const book = await openAccount(f, f.alice, { usdc: USDC(1000) }, [{ market: f.ethMarket, size: E18(1) }], () => P2000, M);
    const m = await ethMirror(f);
    const B1 = await nextBoundary();
    const { poke, sampled } = await ethRoundAt(f, m, 2400n, B1);
    expect(sampled).to.equal(true);
    // σ_mm moves toward the target that held before the sample (the floor): it stays there at B1.
    await expect(poke).to.emit(f.oracle, "VolatilitySampled").withArgs(f.weth, E18(2400), B1, FLOOR);

    const v = await ethVols(f);
    expect(v).to.deep.equal(m.volatilities(BigInt(await time.latest())));
    expect(v.target).to.equal(EXPECTED.sigmaStress);
    expect(v.target).to.be.gt(M.imVolFloor);
    expect(v.maintenance).to.be.lt(M.imVolFloor);

    const px = E18(2400);
    const n = mulDivUp(E18(1), px, WAD);
    const im = wMulUp(wMulUp(n, mmr(M, n, v.target, SQRT_H)), M.imFactor) + R;
    const mm = wMulUp(n, mmr(M, n, v.maintenance, SQRT_H)) + R;
    expect(im).to.equal(EXPECTED.stressIm); // 746.87 USD
    const st = await f.engine.accountState(book.id);
    expect(st.initialMargin).to.equal(im);
    expect(st.maintenanceMargin).to.equal(mm);
    expectState(st, valuation(await modelInputs(f, book, { eth: px, btc: BTC }, M), RISK));
    // The floor would have priced it lower: σ_IM is σ itself.
    const atFloor = wMulUp(wMulUp(n, mmr(M, n, M.imVolFloor, SQRT_H)), M.imFactor) + R;
    expect(atFloor).to.equal(EXPECTED.stressImAtFloor); // 418.04 USD
    expect(im).to.be.gt(atFloor);
  });

  it("setMarketParams with imVolFloor = 10e18 + 1 reverts ParamOutOfBounds(\"imVolFloor\", value, 0, 10e18) and changes nothing; 10e18 is accepted (mmr then capped at maxMMR)", async function () {
    const f = await loadFixture(longFixture);
    const asset = await f.weth.getAddress();
    const before = await f.engine.marketParams(f.ethMarket);
    expect(before.imVolFloor).to.equal(M.imVolFloor);
    const stBefore = await f.engine.accountState(f.book.id);

    await expect(f.engine.setMarketParams(f.ethMarket, { asset, ...M, imVolFloor: MAX_IM_VOL_FLOOR + 1n }))
      .to.be.revertedWithCustomError(f.engine, "ParamOutOfBounds")
      .withArgs(b32("imVolFloor"), MAX_IM_VOL_FLOOR + 1n, 0n, MAX_IM_VOL_FLOOR);
    await expect(f.engine.createMarket({ asset, ...M, imVolFloor: MAX_IM_VOL_FLOOR + 1n }))
      .to.be.revertedWithCustomError(f.engine, "ParamOutOfBounds")
      .withArgs(b32("imVolFloor"), MAX_IM_VOL_FLOOR + 1n, 0n, MAX_IM_VOL_FLOOR);
    expect(await f.engine.marketParams(f.ethMarket)).to.deep.equal(before);
    expect(await f.engine.accountState(f.book.id)).to.deep.equal(stBefore);

    await expect(f.engine.setMarketParams(f.ethMarket, { asset, ...M, imVolFloor: MAX_IM_VOL_FLOOR })).to.emit(
      f.engine,
      "MarketParamsSet",
    );
    const after = await f.engine.marketParams(f.ethMarket);
    expect(after.imVolFloor).to.equal(MAX_IM_VOL_FLOOR);
    expect([...after].slice(0, 9)).to.deep.equal([...before].slice(0, 9)); // asset … maxFundingRate unchanged
    expect([after.skewScale, after.oiCapUsd]).to.deep.equal([before.skewScale, before.oiCapUsd]);
    // At 1,000 % the rate reaches maxMMR (25 %): IM = ⌈⌈10,000 × 0.25⌉ × 1.5⌉ + 5 = 3,755 USD; MM unchanged.
    const n = E18(10_000);
    expect(mmr(M, n, MAX_IM_VOL_FLOOR, SQRT_H)).to.equal(M.maxMMR);
    const st = await f.engine.accountState(f.book.id);
    expect(st.initialMargin).to.equal(wMulUp(wMulUp(n, M.maxMMR), M.imFactor) + R);
    expect(st.initialMargin).to.equal(EXPECTED.imAtMaxFloor);
    expect(st.maintenanceMargin).to.equal(stBefore.maintenanceMargin);
  });
});

describe("MarginEngine › liquidation restores its target against the maintenance margin at the current σ", function () {
  it("σ ahead of σ_mm (+2 % then −20.3 % inside the hour): liquidatable at σ_mm, the fraction is the one against mmNow (0.871), above the one against MM (0.597), and what is left meets 1.2 × mmNow", async function () {
    const f = await loadFixture(longFixture);
    const book = f.book;
    const m = await ethMirror(f);
    const B1 = await nextBoundary();
    // B1: +2 % (2,040), the boundary's sample: σ 38.7 %, σ_mm still 10 % (it moves toward the target before it).
    const rise = await ethRoundAt(f, m, 2040n, B1);
    expect(rise.sampled).to.equal(true);
    await expect(rise.poke).to.emit(f.oracle, "VolatilitySampled").withArgs(f.weth, E18(2040), B1, FLOOR);
    // B1 + 60 s: 1,625 (−20.3 % from 2,040, under the 25 % breaker), in the same interval: no sample.
    const crash = await ethRoundAt(f, m, 1625n, B1 + 60);
    expect(crash.sampled).to.equal(false);
    await expect(crash.poke).to.not.emit(f.oracle, "VolatilitySampled");
    const px = { eth: E18(1625), btc: BTC };

    // The view block: B1 + 61. σ has run ahead of σ_mm (σ_mm has risen ⌈0.2 × 61 / 86,400⌉ from 10 %).
    const tV = B1 + 61;
    expect(await time.latest()).to.equal(tV);
    const v = await ethVols(f);
    expect(v).to.deep.equal(m.volatilities(BigInt(tV)));
    expect(v.target).to.equal(EXPECTED.sigmaRise); // 38.70 %
    expect(v.maintenance).to.equal(EXPECTED.sigmaMmAtView); // 10.014 %
    expect(v.target).to.be.gt(v.maintenance);

    const inputs = await modelInputs(f, book, px, M);
    const before = valuation(inputs, RISK);
    expectState(await f.engine.accountState(book.id), before);
    expect(before.health).to.equal(EXPECTED.healthAtView); // 0.922 at σ_mm
    expect(before.health).to.be.lt(WAD).and.gte(RISK.fullLiquidationHealth);
    // σ (38.7 %) is still below the 200 % floor: IM at the floor.
    const n = E18(5) * 1625n;
    expect(before.notional).to.equal(n);
    expect(before.initialMargin).to.equal(wMulUp(wMulUp(n, mmr(M, n, M.imVolFloor, SQRT_H)), M.imFactor) + R);
    // mmNow: Σ N·mmr(max(σ, σ_mm)) + R, at σ.
    expect(before.mmNow).to.equal(wMulUp(n, mmr(M, n, v.target, SQRT_H)) + R);
    expect(before.maintenanceMargin).to.equal(wMulUp(n, mmr(M, n, v.maintenance, SQRT_H)) + R);
    expect([before.maintenanceMargin, before.mmNow]).to.deep.equal([EXPECTED.mmAtView, EXPECTED.mmNow]);

    // The documented fraction, against mmNow, and the classic one against MM at σ_mm (both with the keeper reward
    // counted as paid and one USDC unit of settle rounding kept: equity E − R − 1e12).
    const closeCost = wMulUp(before.notional, RISK.liquidationPenalty);
    const now = leastCloseFraction(RISK.liquidationTargetRatio, before.mmNow, R, before.equity - R - USDC_SCALE, closeCost);
    const atMm = leastCloseFraction(RISK.liquidationTargetRatio, before.maintenanceMargin, R, before.equity - R - USDC_SCALE, closeCost);
    expect(now).to.deep.equal({ f: EXPECTED.fractionNow, rule: "partial" });
    expect(atMm).to.deep.equal({ f: EXPECTED.fractionAtMm, rule: "partial" });
    expect(now.f).to.be.gt(atMm.f);
    expect(liquidationFraction(before, RISK)).to.deep.equal({ f: now.f, rule: "partial" });
    expect(liquidationFraction({ ...before, mmNow: before.maintenanceMargin }, RISK)).to.deep.equal({ f: atMm.f, rule: "partial" });
    expect(await f.engine.rescueAvailable(book.id)).to.equal(false);
    expect(await f.engine.liquidationFraction(book.id)).to.equal(now.f);

    // The liquidation at B1 + 62: σ_mm one second higher (MM and health move), σ, equity and N do not: same fraction.
    const tL = tV + 1;
    const vL = m.volatilities(BigInt(tL));
    expect(vL.target).to.equal(v.target);
    const inputsL: AccountIn = { ...inputs, positions: inputs.positions.map((p) => ({ ...p, vol: vL.target, mmVol: vL.maintenance })) };
    const beforeL = valuation(inputsL, RISK);
    expect(beforeL.mmNow).to.equal(before.mmNow);
    expect(liquidationFraction(beforeL, RISK)).to.deep.equal({ f: now.f, rule: "partial" });
    const liq = applyLiquidation({ ...inputsL, usdcMargin: book.usdcMargin, poolCapital: await f.pool.capital() }, now.f, RISK);
    const predicted = valuation(
      {
        ...inputsL,
        collateral: [{ ...inputsL.collateral[0], amount: liq.usdcMarginAfter }, inputsL.collateral[1]],
        settlement: liq.settlementAfter,
        positions: liq.positionsAfter.filter((p) => p.size !== 0n),
      },
      RISK,
    );
    await time.setNextBlockTimestamp(tL);
    await expect(f.engine.connect(f.keeper).liquidate(book.id))
      .to.emit(f.engine, "Liquidated")
      .withArgs(book.id, f.keeper.address, now.f, liq.closedNotional, liq.penalty, liq.keeperUsd, beforeL.health, predicted.health);

    // Afterwards, from the chain's state: the remaining position meets the target against mmNow.
    expect((await f.engine.position(book.id, f.ethMarket)).size).to.equal(E18(5) - liq.closeSizes[0]);
    expect(await ethVols(f)).to.deep.equal(vL);
    const after = valuation(await chainInputs(f, book.id, px.eth), RISK);
    expectState(await f.engine.accountState(book.id), after);
    expectState(after, predicted);
    expect(after.mmNow).to.equal(predicted.mmNow);
    expect(after.mmNow).to.be.gt(after.maintenanceMargin); // σ still ahead of σ_mm
    expect(after.equity).to.be.gte(mulDivUp(RISK.liquidationTargetRatio, after.mmNow, WAD));
    // Against MM at σ_mm alone it is far above the target (what the classic fraction would have stopped at).
    expect(after.health).to.be.gt(RISK.liquidationTargetRatio);
  });

  it("control, calm feed (σ = σ_mm = 10 %): mmNow = MM and the fraction is the classic one against MM (0.597)", async function () {
    const f = await loadFixture(longFixture);
    const book = f.book;
    // 1,625 within the fixture's grid interval: no sample, σ and σ_mm at their floor.
    await time.setNextBlockTimestamp((await time.latest()) + 1);
    await f.ethFeed.setAnswer(PX8(1625));
    await f.oracle.poke(f.weth);
    const px = { eth: E18(1625), btc: BTC };
    expect(await ethVols(f)).to.deep.equal({ target: FLOOR, maintenance: FLOOR });

    const inputs = await modelInputs(f, book, px, M);
    const before = valuation(inputs, RISK);
    const st = await f.engine.accountState(book.id);
    expectState(st, before);
    expect(before.mmNow).to.equal(before.maintenanceMargin);
    expect(st.health).to.be.lt(WAD).and.gte(RISK.fullLiquidationHealth);

    const classic = leastCloseFraction(
      RISK.liquidationTargetRatio,
      st.maintenanceMargin,
      R,
      st.equity - R - USDC_SCALE,
      wMulUp(st.notional, RISK.liquidationPenalty),
    );
    expect(classic).to.deep.equal({ f: EXPECTED.calmFraction, rule: "partial" });
    // The chain's state has no mmNow: the mirror then uses MM, and gives the same as with the mirror's mmNow.
    expect(liquidationFraction(st, RISK)).to.deep.equal({ f: classic.f, rule: "partial" });
    expect(liquidationFraction(before, RISK)).to.deep.equal({ f: classic.f, rule: "partial" });
    expect(await f.engine.liquidationFraction(book.id)).to.equal(classic.f);

    const liq = applyLiquidation({ ...inputs, usdcMargin: book.usdcMargin, poolCapital: await f.pool.capital() }, classic.f, RISK);
    const predicted = valuation(
      {
        ...inputs,
        collateral: [{ ...inputs.collateral[0], amount: liq.usdcMarginAfter }, inputs.collateral[1]],
        settlement: liq.settlementAfter,
        positions: liq.positionsAfter.filter((p) => p.size !== 0n),
      },
      RISK,
    );
    await expect(f.engine.connect(f.keeper).liquidate(book.id))
      .to.emit(f.engine, "Liquidated")
      .withArgs(book.id, f.keeper.address, classic.f, liq.closedNotional, liq.penalty, liq.keeperUsd, before.health, predicted.health);
    const after = valuation(await chainInputs(f, book.id, px.eth), RISK);
    expectState(await f.engine.accountState(book.id), after);
    expectState(after, predicted);
    expect(after.mmNow).to.equal(after.maintenanceMargin);
    expect(after.equity).to.be.gte(mulDivUp(RISK.liquidationTargetRatio, after.maintenanceMargin, WAD));
  });
});

/** Figures of these tests, computed off chain with the same mirrors from the same inputs (each also derived above). */
const EXPECTED = {
  /** 5 ETH at 2,000, calm: IM at the 200 % floor, MM at σ_mm = 10 % */
  calmIm: 1_728_271_767_770_641_130_000n,
  calmMm: 159_342_392_259_021_380_000n,
  /** 1,000 USDC at 2,000, σ = σ_mm = 10 %: largest open at the 200 % floor, and with no floor */
  maxSizeAtFloor: 2_880_717_676_268_055_909n,
  maxLeverageAtFloor: 5_778_080_372_671_112_198n,
  maxSizeNoFloor: 20_251_211_462_776_160_094n,
  maxLeverageNoFloor: 41_339_599_927_683_013_564n,
  /** +20 % over the first hour: σ 374.5 %; IM of 1 ETH at 2,400 at σ, and what the floor would give */
  sigmaStress: 3_745_076_768_236_479_288n,
  stressIm: 746_867_398_075_454_721_200n,
  stressImAtFloor: 418_038_024_264_953_871_200n,
  /** 10,000 USD notional at imVolFloor 1,000 %: the rate capped at maxMMR */
  imAtMaxFloor: 3_755_000_000_000_000_000_000n,
  /** +2 % over the first hour, then 1,625 within the next: σ, σ_mm 61 s after the sample, MM, mmNow, health */
  sigmaRise: 386_988_371_898_422_808n,
  sigmaMmAtView: 100_141_203_703_703_704n,
  mmAtView: 130_158_557_595_092_320_000n,
  mmNow: 252_149_476_937_896_731_250n,
  healthAtView: 921_952_441_831_029_076n,
  fractionNow: 871_127_665_026_324_705n,
  fractionAtMm: 597_477_651_935_650_857n,
  /** calm control at 1,625 */
  calmFraction: 597_056_464_419_792_765n,
};
