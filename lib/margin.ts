/**
 * The margin engine's formulas in bigint (README "Architecture": account valuation, "Risk model",
 * "Liquidation"), to the wei and with the contracts' rounding directions: requirements, fees and penalties up;
 * collateral and payouts down; PnL toward −∞; health down. One copy for everything off chain that predicts an
 * on-chain figure: the crash replays (lib/riskReplay.ts) and the tests' mirror (test/helpers/marginMath.ts).
 */
import type { MarketConfig } from "../deploy/params";

export const WAD = 10n ** 18n;
export const SECONDS_PER_YEAR = 365n * 86_400n;
/** WAD USD per USDC unit (6 decimals). */
export const USDC_SCALE = 10n ** 12n;

// ------------------------------------------------------------------------------------------ arithmetic

export const ceilDiv = (x: bigint, d: bigint) => (x + d - 1n) / d;
export const mulDivDown = (x: bigint, y: bigint, d: bigint) => (x * y) / d;
export const mulDivUp = (x: bigint, y: bigint, d: bigint) => (x * y + d - 1n) / d;
export const wMulDown = (x: bigint, y: bigint) => mulDivDown(x, y, WAD);
export const wMulUp = (x: bigint, y: bigint) => mulDivUp(x, y, WAD);
export const wDivDown = (x: bigint, y: bigint) => mulDivDown(x, WAD, y);
export const wDivUp = (x: bigint, y: bigint) => mulDivUp(x, WAD, y);
export const abs = (x: bigint) => (x < 0n ? -x : x);
export const min = (a: bigint, b: bigint) => (a < b ? a : b);
export const max = (a: bigint, b: bigint) => (a > b ? a : b);

/** Signed x·y/d rounded toward −∞. */
export function mulDivFloorSigned(x: bigint, y: bigint, d: bigint): bigint {
  return x >= 0n ? (x * y) / d : -mulDivUp(-x, y, d);
}
/** Signed x·y/d rounded toward +∞. */
export function mulDivCeilSigned(x: bigint, y: bigint, d: bigint): bigint {
  return x >= 0n ? mulDivUp(x, y, d) : -((-x * y) / d);
}

export function sqrtFloor(n: bigint): bigint {
  if (n < 2n) return n;
  let x = BigInt(Math.floor(Math.sqrt(Number(n))));
  while (x * x > n) x--;
  while ((x + 1n) * (x + 1n) <= n) x++;
  return x;
}
export function sqrtCeil(n: bigint): bigint {
  const r = sqrtFloor(n);
  return r * r === n ? r : r + 1n;
}

// ------------------------------------------------------------------------------------------ requirements

/** The market parameters the requirement formulas read. */
export type MarketTerms = Pick<MarketConfig, "baseMMR" | "volK" | "sizeK" | "maxMMR" | "imFactor" | "oiCapUsd" | "imVolFloor">;

/** sqrt(volHorizon / year) as WAD, rounded up (a requirement). */
export const sqrtHorizon = (volHorizon: bigint | number) => sqrtCeil((BigInt(volHorizon) * WAD * WAD) / SECONDS_PER_YEAR);

/**
 * AccountLogic.mmr: min(maxMMR, baseMMR + volK·σ·sqrt(h) + sizeK·N/oiCapUsd), each term rounded up. oiCapUsd
 * is the market's governance cap (WAD USD, > 0), never pool capital: no LP action moves a requirement.
 */
export function mmr(m: MarketTerms, notional: bigint, vol: bigint, sqrtH: bigint): bigint {
  let rate = m.baseMMR;
  if (m.volK !== 0n) rate += wMulUp(wMulUp(m.volK, vol), sqrtH);
  if (m.sizeK !== 0n) rate += mulDivUp(m.sizeK, notional, m.oiCapUsd);
  return rate > m.maxMMR ? m.maxMMR : rate;
}

/**
 * One position's requirements (without the keeper reward), as AccountLogic.positionTerms and
 * currentVolMaintenance compute them:
 * - MM = ⌈N·mmr(σ_mm)⌉ at the maintenance volatility (bounded speed);
 * - IM = ⌈⌈N·mmr(σ_IM)⌉·imFactor⌉ with σ_IM = max(σ, σ_mm, imVolFloor): new risk follows σ at once, never
 *   below the market's stress volatility, and IM ≥ MM always;
 * - mmNow = ⌈N·mmr(max(σ, σ_mm))⌉, the maintenance margin at the current volatility, which a liquidation
 *   restores its target against.
 * With volK = 0 no volatility enters (pass 0s).
 */
export function requirements(
  m: MarketTerms,
  notional: bigint,
  vol: bigint,
  mmVol: bigint,
  sqrtH: bigint
): { mm: bigint; im: bigint; mmNow: bigint } {
  const mm = wMulUp(notional, mmr(m, notional, mmVol, sqrtH));
  const mmNow = vol > mmVol ? wMulUp(notional, mmr(m, notional, vol, sqrtH)) : mm;
  const volIM = m.volK === 0n ? 0n : max(vol, m.imVolFloor);
  const imBase = volIM > mmVol ? wMulUp(notional, mmr(m, notional, volIM, sqrtH)) : mm;
  return { mm, im: wMulUp(imBase, m.imFactor), mmNow };
}

/**
 * CloseMath.leastCloseFraction: the least fraction f of every position whose close brings health to `target`:
 * (E − f·closeCost) ≥ t·(M·(1 − f) + R) with MM = M + R ⇒ f = (t·MM − E) / (t·M − closeCost), t·MM rounded
 * up, t·M down, f up; 1 when the denominator is not positive ("den") or f would reach 1 ("ge1").
 */
export function leastCloseFraction(
  target: bigint,
  mm: bigint,
  reserveR: bigint,
  equity: bigint,
  closeCost: bigint
): { f: bigint; rule: "none" | "den" | "ge1" | "partial" } {
  const num = mulDivUp(target, mm, WAD) - equity;
  if (num <= 0n) return { f: 0n, rule: "none" };
  const den = wMulDown(mm - reserveR, target) - closeCost;
  if (den <= 0n) return { f: WAD, rule: "den" };
  if (num >= den) return { f: WAD, rule: "ge1" };
  return { f: mulDivUp(num, WAD, den), rule: "partial" };
}

// ------------------------------------------------------------------------------------------ funding and valuation

/** The market parameters the funding formulas read. */
export type FundingTerms = Pick<MarketConfig, "maxFundingRate" | "skewScale">;

/** Daily funding rate ∝ skew, capped; Solidity's signed division truncates toward zero (as BigInt's). */
export function fundingRate(m: FundingTerms, longOI: bigint, shortOI: bigint): bigint {
  const maxRate = m.maxFundingRate;
  let rate = ((longOI - shortOI) * maxRate) / m.skewScale;
  if (rate > maxRate) rate = maxRate;
  if (rate < -maxRate) rate = -maxRate;
  return rate;
}

/** F + (rate·P / WAD) · dt / 1 day, each division truncating toward zero. */
export function fundingIndexNow(
  index: bigint,
  lastTime: bigint,
  now: bigint,
  m: FundingTerms,
  longOI: bigint,
  shortOI: bigint,
  px: bigint,
): bigint {
  const dt = now - lastTime;
  if (dt === 0n) return index;
  const rate = fundingRate(m, longOI, shortOI);
  return index + (((rate * px) / WAD) * dt) / 86_400n;
}

/** size·(P − entry) − size·(F − F_entry), rounded toward −∞ once. */
export const positionPnl = (size: bigint, entry: bigint, entryFunding: bigint, px: bigint, index: bigint) =>
  mulDivFloorSigned(size * (px - entry) - size * (index - entryFunding), 1n, WAD);

// ------------------------------------------------------------------------------------------ valuation

export interface CollateralIn {
  amount: bigint;
  price: bigint; // WAD
  decimals: number;
  haircut: bigint; // WAD
}

export interface PositionIn {
  size: bigint;
  entryPrice: bigint;
  entryFunding: bigint;
  /** funding index now */
  index: bigint;
  /** WAD price now */
  price: bigint;
  market: MarketTerms;
  /** σ, the target volatility, annualised WAD (ignored when volK = 0): IM uses max(vol, mmVol, market.imVolFloor) */
  vol: bigint;
  /** σ_mm, the maintenance volatility (bounded speed), annualised WAD: MM uses it */
  mmVol: bigint;
}

export interface AccountIn {
  collateral: CollateralIn[];
  settlement: bigint;
  positions: PositionIn[];
}

export interface StateOut {
  collateral: bigint;
  settlement: bigint;
  unrealisedPnl: bigint;
  equity: bigint;
  notional: bigint;
  maintenanceMargin: bigint;
  initialMargin: bigint;
  health: bigint;
  /** Σ N·mmr(max(σ, σ_mm)) + keeper reward: the maintenance margin at the current volatility (liquidation target) */
  mmNow: bigint;
}

/** The fields of the engine's `accountState` (the model's StateOut without mmNow). */
export type ChainState = Omit<StateOut, "mmNow">;

export const MAX_UINT = 2n ** 256n - 1n;

/** AccountLogic.valuation (+ mmNow) over explicit inputs. */
export function valuation(a: AccountIn, risk: { volHorizon: bigint | number; keeperReward: bigint }): StateOut {
  const sqrtH = sqrtHorizon(risk.volHorizon);
  let collateral = 0n;
  for (const c of a.collateral) {
    if (c.amount === 0n) continue;
    collateral += wMulDown(mulDivDown(c.amount, c.price, 10n ** BigInt(c.decimals)), c.haircut);
  }
  let upnl = 0n;
  let notional = 0n;
  let mm = 0n;
  let im = 0n;
  let mmNow = 0n;
  const open = a.positions.filter((p) => p.size !== 0n);
  for (const p of open) {
    upnl += positionPnl(p.size, p.entryPrice, p.entryFunding, p.price, p.index);
    const n = mulDivUp(abs(p.size), p.price, WAD);
    notional += n;
    const r = requirements(p.market, n, p.market.volK === 0n ? 0n : p.vol, p.market.volK === 0n ? 0n : p.mmVol, sqrtH);
    mm += r.mm;
    im += r.im;
    mmNow += r.mmNow;
  }
  if (open.length > 0) {
    mm += risk.keeperReward;
    mmNow += risk.keeperReward;
    im += risk.keeperReward;
  }
  const equity = collateral + a.settlement + upnl;
  const health = mm === 0n ? MAX_UINT : equity <= 0n ? 0n : wDivDown(equity, mm);
  return {
    collateral,
    settlement: a.settlement,
    unrealisedPnl: upnl,
    equity,
    notional,
    maintenanceMargin: mm,
    initialMargin: im,
    health,
    mmNow,
  };
}

// ------------------------------------------------------------------------------------------ collateral sales

/**
 * What `buyCollateral(accountId, token, repay, 0)` does to an account owing `debtUsd` (WAD, −S > 0) with `available`
 * units of `token` margin at the oracle's `priceWad`, at `collateralDiscount` (LiquidationLogic._quote): the repay
 * (settlement-token units) is capped at the debt rounded up to a unit; the collateral out is the repaid value at
 * price × (1 − discount) (rounded down), rounded down; when that is more than the margin, all of it is sold and the
 * repay is its discounted value rounded up. `repay` undefined: as much as can be bought (the debt, or all of it).
 */
export function collateralSale(a: {
  debtUsd: bigint;
  available: bigint;
  priceWad: bigint;
  decimals: number;
  collateralDiscount: bigint;
  settlementScale: bigint;
  repay?: bigint;
}): { repay: bigint; amountOut: bigint } {
  const debt = ceilDiv(a.debtUsd, a.settlementScale);
  const repay = a.repay !== undefined && a.repay < debt ? a.repay : debt;
  const discounted = wMulDown(a.priceWad, WAD - a.collateralDiscount);
  const unit = 10n ** BigInt(a.decimals);
  const out = mulDivDown(repay * a.settlementScale, unit, discounted);
  if (out <= a.available) return { repay, amountOut: out };
  return { repay: mulDivUp(a.available, discounted, unit * a.settlementScale), amountOut: a.available };
}
