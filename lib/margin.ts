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
