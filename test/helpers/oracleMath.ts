/**
 * Independent bigint mirror of the OracleRouter's volatility (README "Risk model"; IOracleRouter NatSpec), used
 * by tests to predict exact on-chain values:
 * - σ, the target: an EWMA of squared simple returns sampled on a fixed grid of the feed's clock, priced from the
 *   feed's own history. The grid's boundaries are the multiples of `interval`. When a round newer than the
 *   recorded one is observed (a poke or a view), every boundary b after the last sample, up to
 *   ⌊updatedAt / interval⌋·interval, is sampled at the answer of the last round with updatedAt ≤ b, read back
 *   from the latest round (getRoundData, at most MAX_SAMPLE_WALK rounds counting the latest, stopping at a round
 *   the feed does not serve, a non-positive answer, a time that goes forward or a price outside the sane band
 *   (≤ minPrice or ≥ maxPrice: a round the router refuses is never a sample)). When no readable round reaches
 *   the LAST boundary of an observation (no history, or more rounds since it than the walk reads), the oldest
 *   readable round, the nearest after it, prices it. An earlier boundary no readable round reaches is skipped:
 *   its return merges into the next sample's, over dt = b − sampleAt.
 *   Each sample: v' = ⌈(τ·v + ⌈r²⌉) / (τ + dt)⌉ with r = (p_b − samplePrice) / samplePrice,
 *   σ = clamp(⌊√(v · year)⌋, floor, cap). The first round after setFeed / reset only sets the reference:
 *   samplePrice = its price, sampleAt = its grid boundary ⌊updatedAt / interval⌋·interval.
 * - σ_mm, the maintenance volatility: at each sample b it moves toward the target that held *before* that sample
 *   by at most maxChangePerDay × (b − mmVolAt) / 1 day (a rise's step rounded up, a fall's down; no time when
 *   b ≤ mmVolAt), clamped to [floor, cap], and mmVolAt = max(mmVolAt, b); views extend it the same way to the
 *   block time.
 * The breaker's jump (consecutive recorded rounds, bps rounded up) is here too: one mirror per formula.
 */
import { WAD, SECONDS_PER_YEAR, sqrtFloor } from "./marginMath";

export { WAD, SECONDS_PER_YEAR };
export const DAY = 86_400n;
export const BPS = 10_000n;
/** Largest squared return one sample adds (Constants.MAX_SQUARED_RETURN): r of 1e9. */
export const MAX_SQUARED_RETURN = 10n ** 36n;
/** Most rounds one observation reads back, the latest included (Constants.MAX_SAMPLE_WALK). */
export const MAX_SAMPLE_WALK = 48;

export interface VolParamsIn {
  tau: bigint;
  floor: bigint;
  cap: bigint;
  interval: bigint;
  maxChangePerDay: bigint;
}

/** Constants.sol defaults: τ 1 day, floor 10 %, cap 500 %, 1 h grid, 25 percentage points a day. */
export const DEFAULT_VOL: VolParamsIn = {
  tau: 86_400n,
  floor: WAD / 10n,
  cap: 5n * WAD,
  interval: 3_600n,
  maxChangePerDay: WAD / 4n,
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

/** A round of the feed as `getRoundData` serves it, the answer scaled to WAD. */
export interface FeedRound {
  price: bigint;
  updatedAt: bigint;
}

/** The volatility state of one asset (IOracleRouter.Observation without the breaker), and its feed's history. */
export class VolMirror {
  params: VolParamsIn;
  price = 0n;
  updatedAt = 0n;
  varianceRate = 0n;
  samplePrice = 0n;
  sampleAt = 0n;
  mmVol = 0n;
  mmVolAt = 0n;
  /** sampleAt of every sample: the reference's boundary, then each sampled boundary */
  samples: bigint[] = [];
  /** boundaries no readable round reached, whose returns merged into a later sample */
  skipped: bigint[] = [];
  /** last boundaries no readable round reached, priced by the nearest round after them (the oldest readable) */
  pricedAfter: bigint[] = [];

  /**
   * The feed's sane band (FeedParams.minPrice / maxPrice, WAD, both exclusive): a round outside it is refused
   * when it is the latest and stops the walk back. The default is no band (every positive price below 2^128).
   */
  minPrice = 0n;
  maxPrice = 2n ** 128n;

  /** The current feed's rounds by id, as `getRoundData` serves them; an absent id reverts. */
  rounds = new Map<bigint, FeedRound>();
  /** Id of the feed's latest round (`latestRoundData`). */
  latestRoundId = 0n;
  /** false: the feed's `getRoundData` reverts (no history), `latestRoundData` still serves. */
  servesHistory = true;

  /** The state `setFeed` gives an asset's first feed at block time `now`. */
  constructor(now: bigint, params: VolParamsIn = DEFAULT_VOL) {
    this.params = { ...params };
    this.reset(now);
  }

  /**
   * The mirror of a recorded state (`oracle.observation(asset)`), to predict what follows it. Rounds the feed
   * already holds, if the prediction may read them back, are added with `setRound`.
   */
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

  /** An independent copy (state and feed history): what a view computes without recording it. */
  clone(): VolMirror {
    const c = Object.assign(new VolMirror(0n, this.params), this) as VolMirror;
    c.params = { ...this.params };
    c.samples = [...this.samples];
    c.skipped = [...this.skipped];
    c.pricedAfter = [...this.pricedAfter];
    c.rounds = new Map(this.rounds);
    return c;
  }

  /** `_resetVolatility`: the floor, at block time `now` (the feed's history is kept). */
  reset(now: bigint) {
    this.price = 0n;
    this.updatedAt = 0n;
    this.samplePrice = 0n;
    this.sampleAt = 0n;
    this.varianceRate = floorVarianceRate(this.params.floor);
    this.mmVol = this.params.floor;
    this.mmVolAt = now;
  }

  /** The feed's sane band (`setFeed`'s minPrice and maxPrice, WAD); returns the mirror. */
  setBand(minPrice: bigint, maxPrice: bigint): this {
    this.minPrice = minPrice;
    this.maxPrice = maxPrice;
    return this;
  }

  /** Whether the router takes a WAD price: strictly inside the sane band. */
  inBand(p: bigint): boolean {
    return p > this.minPrice && p < this.maxPrice;
  }

  /**
   * `setFeed` with another feed at block time `now` (`_restartPriceReference`): σ and σ_mm kept; the new feed's
   * history starts empty here (add its rounds with `setRound`; its band with `setBand` if it changes).
   */
  restartPriceReference(now: bigint) {
    this.mmVol = approach(this.mmVol, volatilityOf(this.varianceRate, this.params), this.params, now - this.mmVolAt);
    this.mmVolAt = now;
    this.price = 0n;
    this.updatedAt = 0n;
    this.samplePrice = 0n;
    this.sampleAt = 0n;
    this.rounds = new Map();
    this.latestRoundId = 0n;
    this.servesHistory = true;
  }

  /** `setVolParams`: before the first return the EWMA and σ_mm sit at the (new) floor. */
  setParams(params: VolParamsIn) {
    this.params = { ...params };
    if (this.sampleAt === 0n) {
      this.varianceRate = floorVarianceRate(params.floor);
      this.mmVol = params.floor;
    }
  }

  /** The feed sets round `roundId` (by default the next id) as its latest; nothing is observed. */
  setRound(p: bigint, updatedAt: bigint, roundId: bigint = this.latestRoundId + 1n) {
    this.rounds.set(roundId, { price: p, updatedAt });
    this.latestRoundId = roundId;
  }

  /**
   * The feed's latest round as a poke (or a view) reads it: when it is valid (inside the sane band) and newer
   * than the recorded one (a later updatedAt, or another price at the same one), `_advance` → `_sample`; a round
   * outside the band is refused (PriceRejected) and changes nothing. Returns true when at least one volatility
   * sample moved the EWMA (the reference round after a reset returns false).
   */
  observeLatest(): boolean {
    const latest = this.rounds.get(this.latestRoundId);
    if (latest === undefined) throw new Error("VolMirror: the feed has no round");
    const { price: p, updatedAt } = latest;
    if (!this.inBand(p)) return false;
    if (updatedAt < this.updatedAt || (updatedAt === this.updatedAt && p === this.price)) return false;
    const steps = this.sampleTo(p, updatedAt);
    this.price = p;
    this.updatedAt = updatedAt;
    return steps > 0;
  }

  /** A new latest round (the next id) observed at once: `setRound` then `observeLatest`. */
  observe(p: bigint, updatedAt: bigint): boolean {
    this.setRound(p, updatedAt);
    return this.observeLatest();
  }

  /**
   * The rounds one observation can read, newest first: the latest, then ids one below the other while the feed
   * serves them with a positive answer inside the sane band and a time not after the newer one's,
   * MAX_SAMPLE_WALK in all.
   * (The contract stops as soon as it holds a round at or before the first boundary it owes; the rounds past
   * that one are older than a round it holds, so they never price a boundary: the samples are the same. When no
   * round reaches the last boundary the contract held no round at or before the first either, so it read the
   * same rounds and its oldest is the last of these.)
   */
  readableRounds(): FeedRound[] {
    const out: FeedRound[] = [this.rounds.get(this.latestRoundId)!];
    let id = this.latestRoundId;
    while (this.servesHistory && out.length < MAX_SAMPLE_WALK && id > 1n) {
      id -= 1n;
      const r = this.rounds.get(id);
      if (r === undefined || r.price <= 0n || !this.inBand(r.price) || r.updatedAt === 0n || r.updatedAt > out[out.length - 1].updatedAt) break;
      out.push(r);
    }
    return out;
  }

  /** The grid samples owed when the round (p, updatedAt) is observed; returns how many moved the EWMA. */
  private sampleTo(p: bigint, updatedAt: bigint): number {
    const I = this.params.interval;
    const lastBoundary = (updatedAt / I) * I;
    if (this.sampleAt === 0n) {
      this.samplePrice = p;
      this.sampleAt = lastBoundary;
      this.samples.push(lastBoundary);
      return 0;
    }
    if (this.sampleAt + I > lastBoundary) return 0;
    const readable = this.readableRounds();
    let steps = 0;
    let unreached: bigint[] = [];
    for (let b = this.sampleAt + I; b <= lastBoundary; b += I) {
      // The last round with updatedAt <= b: the first such one, newest first.
      let r = readable.find((x) => x.updatedAt <= b);
      if (r === undefined) {
        if (b < lastBoundary) {
          unreached.push(b); // merges into the next sample
          continue;
        }
        // The last boundary, which no readable round reaches: the nearest round after it (the oldest readable).
        r = readable[readable.length - 1];
        this.pricedAfter.push(b);
      }
      this.step(r.price, b);
      this.skipped.push(...unreached);
      unreached = [];
      steps++;
    }
    return steps;
  }

  /** One sample at boundary b: σ_mm toward the target before it, then the EWMA over dt = b − sampleAt. */
  private step(p: bigint, b: bigint) {
    const target = volatilityOf(this.varianceRate, this.params);
    const elapsed = b > this.mmVolAt ? b - this.mmVolAt : 0n;
    this.mmVol = approach(this.mmVol, target, this.params, elapsed);
    if (b > this.mmVolAt) this.mmVolAt = b;
    this.varianceRate = ewmaStep(this.varianceRate, this.samplePrice, p, b - this.sampleAt, this.params.tau);
    this.samplePrice = p;
    this.sampleAt = b;
    this.samples.push(b);
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
