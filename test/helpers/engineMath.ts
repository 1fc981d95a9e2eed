/**
 * Independent bigint mirror of the MarginEngine formulas (README "Architecture": account valuation and rounding).
 * Requirements and fees round up, collateral and PnL round down; signed divisions that Solidity truncates
 * toward zero are truncated here too (bigint `/` truncates toward zero as well).
 */

// One mirror of the engine's arithmetic: the primitives live in marginMath.ts.
import type { MarketConfig } from "../../deploy/params";
import { WAD, abs, mmr, mulDivDown, mulDivUp, requirements } from "./marginMath";
export { WAD, abs, min, max, mulDivDown, mulDivUp, sqrtFloor, sqrtCeil, sqrtHorizon, mmr, requirements } from "./marginMath";

export const DAY = 86_400n;
export const YEAR = 365n * DAY;

/** Signed x / d rounded toward negative infinity (d > 0). */
export function floorDiv(x: bigint, d: bigint): bigint {
  const q = x / d;
  return x % d !== 0n && x < 0n ? q - 1n : q;
}

/** 8-decimal feed answer → WAD price. */
export const px8 = (answer: bigint) => answer * 10n ** 10n;

/** Σ-free notional of one position: |size| × price, rounded up. */
export function notionalOf(size: bigint, price: bigint): bigint {
  return mulDivUp(abs(size), price, WAD);
}

/** Trading fee: ceil(ceil(|Δ| × price) × feeRate). */
export function tradeFee(sizeDelta: bigint, price: bigint, feeRate: bigint): bigint {
  return mulDivUp(notionalOf(sizeDelta, price), feeRate, WAD);
}


export interface PositionReq {
  notional: bigint;
  /** maintenance rate, at the maintenance volatility σ_mm */
  rate: bigint;
  /** maintenance requirement of this position, without the keeper reward */
  mm: bigint;
  /** initial requirement of this position (at max(σ, σ_mm, imVolFloor)), without the keeper reward */
  im: bigint;
}

/** Target σ and maintenance σ_mm of an asset, as `oracle.volatilities(asset)` returns them. */
export interface Vols {
  target: bigint;
  maintenance: bigint;
}

export function positionRequirements(m: MarketConfig, size: bigint, price: bigint, vol: Vols, sqrtH: bigint): PositionReq {
  const notional = notionalOf(size, price);
  const rate = mmr(m, notional, vol.maintenance, sqrtH);
  const { mm, im } = requirements(m, notional, vol.target, vol.maintenance, sqrtH);
  return { notional, rate, mm, im };
}

/** size·(P − entry) − size·(F − F_entry), rounded down once. */
export function positionPnl(size: bigint, entryPrice: bigint, entryFunding: bigint, price: bigint, index: bigint): bigint {
  return floorDiv(size * (price - entryPrice) - size * (index - entryFunding), WAD);
}

/** Daily funding rate: clamp(trunc(skew × maxRate / skewScale), ±maxRate). */
export function fundingRate(longOI: bigint, shortOI: bigint, maxFundingRate: bigint, skewScale: bigint): bigint {
  const rate = ((longOI - shortOI) * maxFundingRate) / skewScale;
  if (rate > maxFundingRate) return maxFundingRate;
  if (rate < -maxFundingRate) return -maxFundingRate;
  return rate;
}

/** F + trunc(trunc(rate × P / 1e18) × dt / 1 day). */
export function fundingIndexAfter(index: bigint, rate: bigint, price: bigint, dt: bigint): bigint {
  return index + ((rate * price) / WAD) * dt / DAY;
}

/** Collateral value of one asset: ⌊⌊amount × price / 10^dec⌋ × haircut⌋. */
export function collateralValue(amount: bigint, price: bigint, decimals: bigint | number, haircut: bigint): bigint {
  const value = mulDivDown(amount, price, 10n ** BigInt(decimals));
  return mulDivDown(value, haircut, WAD);
}

export const MAX_UINT = (1n << 256n) - 1n;

/** h = E / MM rounded down; max uint when MM = 0; 0 when E <= 0. */
export function healthOf(equity: bigint, mm: bigint): bigint {
  if (mm === 0n) return MAX_UINT;
  if (equity <= 0n) return 0n;
  return mulDivDown(equity, WAD, mm);
}
