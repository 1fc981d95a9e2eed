/**
 * Risk parameters with units, one typed place for every network (STYLE 15).
 * All ratios and USD values are WAD bigints (1e18 = 1.0 or 1 USD).
 */
export const WAD = 10n ** 18n;

/** Parses a decimal string into WAD exactly ("0.005" -> 5e15). */
export function wad(text: string): bigint {
  const [whole, frac = ""] = text.split(".");
  return BigInt(whole) * WAD + BigInt((frac + "0".repeat(18)).slice(0, 18) || "0");
}

/** A policy keeps its ratios in whole millionths (one storage slot; `PolicyRatioPrecision` otherwise): 1e12 in WAD. */
export const POLICY_RATIO_UNIT = 10n ** 12n;

/** `ratio` rounded down to a whole millionth, a ratio a policy can keep. */
export const policyRatio = (ratio: bigint) => ratio - (ratio % POLICY_RATIO_UNIT);

export interface FeedConfig {
  /** seconds an answer may age before it is stale */
  heartbeat: number;
  /** exclusive sane bounds, WAD USD */
  minPrice: bigint;
  maxPrice: bigint;
  /** circuit breaker: largest move between consecutive observations, basis points */
  maxJumpBps: number;
  /** seconds of consistent observations before a tripped breaker resets */
  cooldown: number;
}

export interface MarketConfig {
  baseMMR: bigint;
  volK: bigint;
  sizeK: bigint;
  maxMMR: bigint;
  imFactor: bigint;
  feeRate: bigint;
  /** new-risk gate: open interest per side may grow only up to this fraction of pool capital */
  oiCapFraction: bigint;
  /** per day */
  maxFundingRate: bigint;
  /** stress volatility of new risk (annualised): IM never prices a position below it — the calm-market leverage cap */
  imVolFloor: bigint;
  /** base-asset units (WAD) of skew at which funding reaches its cap */
  skewScale: bigint;
  /** open-interest cap per side, USD (WAD), set by governance: the size term's denominator, never pool capital */
  oiCapUsd: bigint;
}

export interface RiskConfig {
  liquidationTargetRatio: bigint;
  fullLiquidationHealth: bigint;
  liquidationPenalty: bigint;
  keeperPenaltyShare: bigint;
  /** USD */
  keeperReward: bigint;
  /** USD */
  dustNotional: bigint;
  collateralDiscount: bigint;
  /** seconds */
  volHorizon: number;
}

/** Hourly-updated crypto feed: 2 h heartbeat (Chainlink ETH/USD is 1 h + deviation), 25 % breaker. */
export const CRYPTO_FEED: FeedConfig = {
  heartbeat: 2 * 3600,
  minPrice: wad("1"),
  maxPrice: wad("10000000"),
  maxJumpBps: 2500,
  cooldown: 3600,
};

/** A liquid major (ETH, BTC): 1 % floor, one-day volatility horizon, 1.5x initial factor (~12x max leverage at 80 % vol). */
export const MAJOR_MARKET: MarketConfig = {
  baseMMR: wad("0.01"),
  volK: wad("1"),
  sizeK: wad("0.01"),
  maxMMR: wad("0.25"),
  imFactor: wad("1.5"),
  feeRate: wad("0.0005"),
  oiCapFraction: wad("0.5"),
  maxFundingRate: wad("0.001"),
  imVolFloor: wad("2"),
  skewScale: wad("1000"),
  oiCapUsd: wad("500000"),
};

export const DEFAULT_RISK: RiskConfig = {
  liquidationTargetRatio: wad("1.2"),
  fullLiquidationHealth: wad("0.5"),
  liquidationPenalty: wad("0.01"),
  keeperPenaltyShare: wad("0.5"),
  keeperReward: wad("5"),
  dustNotional: wad("10"),
  collateralDiscount: wad("0.05"),
  volHorizon: 86_400,
};

/** Collateral haircuts (fraction counted): stablecoin 100 %, volatile majors 90 %. */
export const HAIRCUTS = { USDC: wad("1"), WETH: wad("0.9"), WBTC: wad("0.9") } as const;

export interface RebalancerConfig {
  /** flat part of the keeper fee, USD (WAD) */
  baseFeeUsd: bigint;
  /** gas a rebalance is paid for at block.basefee × ETH price */
  gasUnits: number;
  /** most accounts one checkUpkeep returns */
  upkeepSize: number;
  /** execution fee of a two-step order, settlement-token units (USDC: 6 decimals), escrowed from the account's USDC
   *  reserve at the request and earned by the keeper who fills or cancels it; at most 100 USD */
  orderFee: bigint;
}

/**
 * 1 USD flat plus 600k gas (a reduce across two markets costs about that) at the block's base fee; a 0.5 USDC order
 * fee (an execution costs about 270k gas: a few cents on a rollup; an L1 deployment sets more).
 */
export const DEFAULT_REBALANCER: RebalancerConfig = {
  baseFeeUsd: wad("1"),
  gasUnits: 600_000,
  upkeepSize: 10,
  orderFee: 500_000n,
};

/** What setRebalancePolicy accepts (Constants.sol: MIN_REBALANCE_BAND, MAX_REBALANCE_TARGET, MAX_RELEASE_RATIO,
 *  MAX_REBALANCE_FEE; each ratio a whole number of millionths, POLICY_RATIO_UNIT). */
export const POLICY_BOUNDS = { minBand: wad("0.05"), maxTarget: wad("10"), maxRelease: wad("16"), maxFeeUsd: wad("1000") } as const;

/** Action bits of a rebalancing policy and plan (Constants.sol). */
/** REDUCE_FIRST orders REDUCE before TOP_UP above health 1 (Constants.sol); ALL is every action, without the order. */
export const ACTION = { TOP_UP: 1, REDUCE: 2, RELEASE: 4, ALL: 7, REDUCE_FIRST: 8 } as const;
/** The names users type for the policy bits (policy:set, sim:backtest --actions), in display order. */
export const ACTION_NAMES = { "top-up": ACTION.TOP_UP, reduce: ACTION.REDUCE, release: ACTION.RELEASE, "reduce-first": ACTION.REDUCE_FIRST } as const;
export type ActionName = keyof typeof ACTION_NAMES;

/**
 * A narrow 1.3 / 1.6 rebalancing policy (TOP_UP then REDUCE, 50 USD fee cap, no cooldown, no release): the one the
 * May 2021 scenario and the crash replays (lib/riskReplay.ts) give their policy accounts. Module and assets are
 * the caller's.
 */
export const NARROW_POLICY = {
  actions: ACTION.TOP_UP | ACTION.REDUCE,
  cooldown: 0,
  triggerRatio: wad("1.3"),
  targetRatio: wad("1.6"),
  releaseRatio: 0n,
  maxFeeUsd: wad("50"),
};
