/**
 * Independent bigint mirror of the margin engine's documented formulas (README "Architecture": account valuation,
 * "Liquidation"; IMarginEngine NatSpec), used by tests to predict exact on-chain values.
 * Rounding follows the documented directions: requirements/fees/penalties up, collateral/payouts down,
 * PnL toward −∞, health down.
 */
import type { MarketConfig, RiskConfig } from "../../deploy/params";

import {
  abs,
  type AccountIn,
  type ChainState,
  leastCloseFraction,
  min,
  mulDivCeilSigned,
  mulDivFloorSigned,
  mulDivUp,
  positionPnl,
  type PositionIn,
  USDC_SCALE,
  WAD,
  wMulDown,
  wMulUp,
} from "../../lib/margin";

// The formulas shared with everything off chain (arithmetic, mmr, requirements, CloseMath) live in lib/margin.ts.
export * from "../../lib/margin";

/** Market parameters as deployed (deploy/params.ts). */
export type MarketP = MarketConfig;

/** Risk parameters as deployed (deploy/params.ts); volHorizon may be given as a bigint. */
export type RiskP = Omit<RiskConfig, "volHorizon"> & { volHorizon: bigint | number };

/**
 * The documented liquidation fraction: the least close restoring the liquidation target against mmNow (the
 * maintenance margin at the current volatility) with the penalty p·N as the close cost and the keeper reward R counted as paid (equity E − R); 1 when health < full-
 * liquidation health or the rest (N·(1 − f)) would be dust. Returns the rule that applied.
 */
export function liquidationFraction(
  s: ChainState & { mmNow?: bigint },
  r: RiskP,
): { f: bigint; rule: "full-health" | "den" | "ge1" | "dust" | "partial" } {
  // A state read from the chain (accountState) has no mmNow: it equals MM while σ <= σ_mm, and a test where σ
  // runs ahead of σ_mm must pass the mirror's valuation (a wrong assumption shows as a wrong exact value).
  if (s.health < r.fullLiquidationHealth) return { f: WAD, rule: "full-health" };
  const least = leastCloseFraction(
    r.liquidationTargetRatio,
    s.mmNow ?? s.maintenanceMargin,
    r.keeperReward,
    s.equity - r.keeperReward - USDC_SCALE, // one USDC unit of settle rounding kept (for the protocol)
    wMulUp(s.notional, r.liquidationPenalty),
  );
  if (least.rule !== "partial") return { f: WAD, rule: least.rule === "den" ? "den" : "ge1" };
  if ((s.notional * (WAD - least.f)) / WAD < r.dustNotional) return { f: WAD, rule: "dust" };
  return { f: least.f, rule: "partial" };
}

/**
 * Size closed by a liquidation of fraction f: rounded away from zero, as AccountLogic's close does (a long's up, a
 * short's down: mulDivCeilSigned alone would round a short toward zero).
 */
export const closeSize = (size: bigint, f: bigint) => (size > 0n ? mulDivCeilSigned(size, f, WAD) : mulDivFloorSigned(size, f, WAD));

export interface LiquidationOut {
  fraction: bigint;
  closeSizes: bigint[];
  closedNotional: bigint;
  penalty: bigint;
  keeperShareUsd: bigint;
  /** keeperReward + keeper share of the penalty, WAD USD (the event's keeperPaid) */
  keeperUsd: bigint;
  keeperTokens: bigint;
  insuranceTokens: bigint;
  /** settlement after realised PnL and charges, before settling against USDC margin */
  settlementCharged: bigint;
  /** USDC units moved margin → pool by the settle (positive) or pool → margin (negative) */
  settledToPool: bigint;
  settlementAfter: bigint;
  usdcMarginAfter: bigint;
  positionsAfter: PositionIn[];
  poolCapitalAfter: bigint; // USDC units (unclaimed keeper rewards excluded, as ILiquidityPool.capital)
}

/**
 * Mirror of `liquidate` after the fraction is known: closes every position by `closeSize` at its price
 * (realising the whole PnL and re-entering the rest at the price), charges keeperReward + penalty, credits
 * the keeper (claimable: the pool holds it outside LP capital) and moves the insurance share out of
 * capital (token amounts rounded down), then settles.
 */
export function applyLiquidation(
  a: AccountIn & { usdcMargin: bigint; poolCapital: bigint },
  fraction: bigint,
  r: RiskP,
): LiquidationOut {
  let s = a.settlement;
  let closedNotional = 0n;
  const closeSizes: bigint[] = [];
  const positionsAfter: PositionIn[] = [];
  for (const p of a.positions) {
    const c = closeSize(p.size, fraction);
    closeSizes.push(c);
    closedNotional += mulDivUp(abs(c), p.price, WAD);
    s += positionPnl(p.size, p.entryPrice, p.entryFunding, p.price, p.index);
    positionsAfter.push({ ...p, size: p.size - c, entryPrice: p.price, entryFunding: p.index });
  }
  const penalty = wMulUp(closedNotional, r.liquidationPenalty);
  const keeperShareUsd = wMulDown(penalty, r.keeperPenaltyShare);
  const keeperUsd = r.keeperReward + keeperShareUsd;
  s -= r.keeperReward + penalty;
  const keeperTokens = keeperUsd / USDC_SCALE;
  const insuranceTokens = (penalty - keeperShareUsd) / USDC_SCALE;
  let poolCapital = a.poolCapital - keeperTokens - insuranceTokens;
  const settlementCharged = s;
  let usdcMargin = a.usdcMargin;
  let settledToPool = 0n;
  if (s > 0n) {
    const amount = min(s / USDC_SCALE, poolCapital);
    if (amount > 0n) {
      s -= amount * USDC_SCALE;
      poolCapital -= amount;
      usdcMargin += amount;
      settledToPool = -amount;
    }
  } else if (s < 0n) {
    const owed = mulDivUp(-s, 1n, USDC_SCALE);
    const amount = min(owed, usdcMargin);
    if (amount > 0n) {
      s = amount === owed ? 0n : s + amount * USDC_SCALE;
      usdcMargin -= amount;
      poolCapital += amount;
      settledToPool = amount;
    }
  }
  return {
    fraction,
    closeSizes,
    closedNotional,
    penalty,
    keeperShareUsd,
    keeperUsd,
    keeperTokens,
    insuranceTokens,
    settlementCharged,
    settledToPool,
    settlementAfter: s,
    usdcMarginAfter: usdcMargin,
    positionsAfter,
    poolCapitalAfter: poolCapital,
  };
}
