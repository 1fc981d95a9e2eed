/**
 * Independent bigint mirror of the OracleRouter's volatility (README "Risk model"; IOracleRouter NatSpec), used
 * by tests to predict exact on-chain values:
 * - σ, the target: an EWMA of squared simple returns sampled on a fixed grid of the feed's clock. A round is a
 *   sample only when it is the first whose updatedAt falls in a new `interval` bucket
 *   (⌊updatedAt / interval⌋ > ⌊sampleAt / interval⌋); its return is measured from the previous sample's price
 *   over dt = updatedAt − sampleAt: v' = ⌈(τ·v + ⌈r²⌉) / (τ + dt)⌉, σ = clamp(⌊√(v · year)⌋, floor, cap). The
 *   first round after setFeed / reset only sets the reference.
 * - σ_mm, the maintenance volatility: at each sample it moves toward the target that held *before* that sample
 *   by at most maxChangePerDay × (updatedAt − mmVolAt) / 1 day (a rise's step rounded up, a fall's down), then
 *   clamped to [floor, cap]; views extend it the same way to the block time.
 * The breaker's jump (consecutive recorded rounds, bps rounded up) is here too: one mirror per formula.
 */
import { WAD, SECONDS_PER_YEAR, sqrtFloor } from "./marginMath";

export { WAD, SECONDS_PER_YEAR };
export const DAY = 86_400n;
export const BPS = 10_000n;
/** Largest squared return one sample adds (Constants.MAX_SQUARED_RETURN): r of 1e9. */
export const MAX_SQUARED_RETURN = 10n ** 36n;

export interface VolParamsIn {
  tau: bigint;
  floor: bigint;
  cap: bigint;
  interval: bigint;
  maxChangePerDay: bigint;
}

/** Constants.sol defaults: τ 1 day, floor 10 %, cap 500 %, 1 h grid, 50 percentage points a day. */
export const DEFAULT_VOL: VolParamsIn = {
  tau: 86_400n,
  floor: WAD / 10n,
  cap: 5n * WAD,
  interval: 3_600n,
  maxChangePerDay: WAD / 2n,
};
/** Bounds of the two new parameters (Constants.sol). */
export const VOL_BOUNDS = {
  minInterval: 60n,
  maxInterval: 86_400n,
  minMaxChangePerDay: WAD / 100n,
  maxMaxChangePerDay: 10n * WAD,
};

const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;
const absDiff = (a: bigint, b: bigint) => (a > b ? a - b : b - a);
const clamp = (x: bigint, p: VolParamsIn) => (x < p.floor ? p.floor : x > p.cap ? p.cap : x);

/** floor² / year, WAD, rounded down (`_floorVarianceRate`): σ reads exactly the floor before any return. */
export const floorVarianceRate = (floor: bigint) => (floor * floor) / (WAD * SECONDS_PER_YEAR);

/** ⌈(move / prev)²⌉ as WAD, saturated at MAX_SQUARED_RETURN when move ≥ prev · 1e9. */
export function squaredReturn(prev: bigint, p: bigint): bigint {
  const move = absDiff(p, prev);
  if (move >= prev * 10n ** 9n) return MAX_SQUARED_RETURN;
  return ceilDiv(move * move * WAD, prev * prev);
}

/** One EWMA step: v' = ⌈(τ·v + ⌈r²⌉) / (τ + dt)⌉. */
export const ewmaStep = (v: bigint, prev: bigint, p: bigint, dt: bigint, tau: bigint) =>
  ceilDiv(tau * v + squaredReturn(prev, p), tau + dt);

/** σ = clamp(⌊√(v · year · WAD)⌋, floor, cap) (`_volatility`). */
export const volatilityOf = (varianceRate: bigint, p: VolParamsIn) => clamp(sqrtFloor(varianceRate * SECONDS_PER_YEAR * WAD), p);

/** `from` moved toward `to` by at most maxChangePerDay × elapsed / 1 day (rise up, fall down), clamped. */
export function approach(from: bigint, to: bigint, p: VolParamsIn, elapsed: bigint): bigint {
  let vol: bigint;
  if (to > from) {
    const step = ceilDiv(p.maxChangePerDay * elapsed, DAY);
    vol = to - from > step ? from + step : to;
  } else {
    const step = (p.maxChangePerDay * elapsed) / DAY;
    vol = from - to > step ? from - step : to;
  }
  return clamp(vol, p);
}

/** Breaker jump between consecutive recorded rounds, bps rounded up. */
export const jumpBpsOf = (prev: bigint, p: bigint) => ceilDiv(absDiff(p, prev) * BPS, prev);

/** The volatility state of one asset (IOracleRouter.Observation without the breaker). */
export class VolMirror {
  params: VolParamsIn;
  price = 0n;
  updatedAt = 0n;
  varianceRate = 0n;
  samplePrice = 0n;
  sampleAt = 0n;
  mmVol = 0n;
  mmVolAt = 0n;
  /** updatedAt of every round that became a sample (the first, reference, round included) */
  samples: bigint[] = [];

  /** The state `setFeed` gives an asset's first feed at block time `now`. */
  constructor(now: bigint, params: VolParamsIn = DEFAULT_VOL) {
    this.params = { ...params };
    this.reset(now);
  }

  /** The mirror of a recorded state (`oracle.observation(asset)`), to predict what follows it. */
  static fromObservation(
    o: { price: bigint; updatedAt: bigint; varianceRate: bigint; samplePrice: bigint; sampleAt: bigint; mmVol: bigint; mmVolAt: bigint },
    params: VolParamsIn = DEFAULT_VOL,
  ): VolMirror {
    const m = new VolMirror(0n, params);
    m.price = o.price;
    m.updatedAt = o.updatedAt;
    m.varianceRate = o.varianceRate;
    m.samplePrice = o.samplePrice;
    m.sampleAt = o.sampleAt;
    m.mmVol = o.mmVol;
    m.mmVolAt = o.mmVolAt;
    return m;
  }

  /** `_resetVolatility`: the floor, at block time `now`. */
  reset(now: bigint) {
    this.price = 0n;
    this.updatedAt = 0n;
    this.samplePrice = 0n;
    this.sampleAt = 0n;
    this.varianceRate = floorVarianceRate(this.params.floor);
    this.mmVol = this.params.floor;
    this.mmVolAt = now;
  }

  /** `setFeed` with another feed at block time `now` (`_restartPriceReference`): σ and σ_mm kept. */
  restartPriceReference(now: bigint) {
    this.mmVol = approach(this.mmVol, volatilityOf(this.varianceRate, this.params), this.params, now - this.mmVolAt);
    this.mmVolAt = now;
    this.price = 0n;
    this.updatedAt = 0n;
    this.samplePrice = 0n;
    this.sampleAt = 0n;
  }

  /** `setVolParams`: before the first return the EWMA and σ_mm sit at the (new) floor. */
  setParams(params: VolParamsIn) {
    this.params = { ...params };
    if (this.sampleAt === 0n) {
      this.varianceRate = floorVarianceRate(params.floor);
      this.mmVol = params.floor;
    }
  }

  /**
   * A valid round newer than the recorded one (`_advance` → `_sample`): returns true when it is a volatility
   * sample that moved the EWMA (the reference round after a reset returns false).
   */
  observe(p: bigint, updatedAt: bigint): boolean {
    let sampled = false;
    if (this.sampleAt === 0n) {
      this.samplePrice = p;
      this.sampleAt = updatedAt;
      this.samples.push(updatedAt);
    } else if (updatedAt / this.params.interval > this.sampleAt / this.params.interval) {
      const target = volatilityOf(this.varianceRate, this.params);
      const elapsed = updatedAt > this.mmVolAt ? updatedAt - this.mmVolAt : 0n;
      this.mmVol = approach(this.mmVol, target, this.params, elapsed);
      this.mmVolAt = updatedAt;
      this.varianceRate = ewmaStep(this.varianceRate, this.samplePrice, p, updatedAt - this.sampleAt, this.params.tau);
      this.samplePrice = p;
      this.sampleAt = updatedAt;
      this.samples.push(updatedAt);
      sampled = true;
    }
    this.price = p;
    this.updatedAt = updatedAt;
    return sampled;
  }

  /** σ now (target). */
  target(): bigint {
    return volatilityOf(this.varianceRate, this.params);
  }

  /** `volatilities(asset)` in a block at time `now` (every round up to now observed). */
  volatilities(now: bigint): { target: bigint; maintenance: bigint } {
    const target = this.target();
    return { target, maintenance: approach(this.mmVol, target, this.params, now - this.mmVolAt) };
  }
}
