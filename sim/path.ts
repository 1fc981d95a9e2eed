/**
 * The price path a backtest replays (`npx hardhat sim:backtest --data <csv> [--ohlc <csv>] [--sampling close|chainlink]`):
 * - the closes of a `timestamp,price` CSV, one point per row;
 * - or, with an OHLC CSV, every bar replayed through its low and high (four points per bar, lib/prices.ts ohlcPath);
 * - optionally resampled into the rounds a Chainlink feed (deviation threshold + heartbeat) would publish along it.
 *
 * All prices are bigints with 8 decimals (Chainlink USD feeds); times are unix seconds. No floats: every decision
 * (interpolation, deviation, heartbeat) is integer arithmetic, so a path is the same on every machine and run.
 */
import {
  loadOhlcRows,
  loadPriceCsv,
  ohlcPath,
  PriceDataError,
  type OhlcBar,
  type OhlcRow,
  type PricePoint,
} from "../lib/prices";

/** One point of a replayed path. */
export interface PathPoint {
  /** unix seconds */
  time: number;
  /** 8 decimals */
  price: bigint;
  /** what the point is: a row's close, a bar's open/high/low/close, or a round of Chainlink sampling */
  kind: "close" | "open" | "high" | "low" | "sample";
}

/** Chainlink sampling defaults: 0.5 % deviation threshold, 1 h heartbeat (ETH/USD mainnet), ticks every minute. */
export const DEFAULT_DEVIATION_BPS = 50;
export const DEFAULT_HEARTBEAT = 3600;
export const DEFAULT_RESOLUTION = 60;

/** Throws unless `value` is a positive safe integer. */
function requirePositiveInteger(name: string, value: unknown, unit: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0) {
    throw new Error(
      `${name} must be a positive integer (${unit}), got ${
        typeof value === "string" ? JSON.stringify(value) : String(value)
      }`,
    );
  }
  return value;
}

/** Throws unless `points` is a non-empty path: times positive integers, strictly increasing, prices > 0. */
function checkPath(fn: string, points: { time: number; price: bigint }[]): void {
  if (points.length === 0) throw new Error(`${fn}: the path is empty`);
  points.forEach((p, i) => {
    if (!Number.isSafeInteger(p.time) || p.time <= 0) {
      throw new Error(`${fn}: point ${i} has time ${p.time}, not a positive integer (unix seconds)`);
    }
    if (i > 0 && p.time <= points[i - 1].time) {
      throw new Error(`${fn}: point ${i} has time ${p.time}, not after point ${i - 1}'s ${points[i - 1].time}`);
    }
    if (typeof p.price !== "bigint" || p.price <= 0n)
      throw new Error(`${fn}: point ${i} has price ${p.price}, not a bigint > 0`);
  });
}

/** One point per row of a `timestamp,price` series (8-decimal prices, lib/prices.ts loadPriceCsv), kind "close". */
export function closesPath(points: PricePoint[]): PathPoint[] {
  const path = points.map((p) => ({ time: p.timestamp, price: p.price, kind: "close" as const }));
  checkPath("closesPath", path);
  return path;
}

/**
 * Every bar replayed through its low and high: open → low → high → close for a down bar (close < open),
 * open → high → low → close otherwise, at the bar's time + 0, ¼, ½ and ¾ of its interval (floor((k × interval) / 4)
 * seconds, k = 0..3). A bar's interval is the next bar's time minus its own; the last bar uses the previous
 * interval, a single bar 3600 s. The same replay as the risk model's (lib/prices.ts ohlcPath, of which this is the
 * absolute-time view). Bars must be in time order, at least 4 s apart, with positive prices and high/low
 * containing open and close.
 */
export function ohlcBarsPath(bars: OhlcBar[]): PathPoint[] {
  const steps = ohlcPath(bars);
  const t0 = bars[0].timestamp;
  return steps.map((s) => ({ time: t0 + s.offset, price: s.price, kind: s.kind }));
}

export interface SamplingOptions {
  /** deviation threshold in basis points of the last published price (50 = 0.5 %) */
  deviationBps: number;
  /** maximum seconds between rounds */
  heartbeat: number;
  /** seconds between the ticks at which the feed looks at the price; default 60 */
  resolution?: number;
}

/**
 * The rounds a Chainlink feed would publish following `path` (kind "sample", time = the tick, price = the price at
 * the tick):
 * - the ticks are every point of the path and every multiple of `resolution` (unix time) strictly between two
 *   consecutive points;
 * - between consecutive points a at ta and b at tb the price at tick t is linearly interpolated in bigint:
 *   a + ((b − a) × (t − ta)) / (tb − ta), the division truncating toward zero (JavaScript bigint division), so the
 *   result always lies between a and b;
 * - the first point is always published; a later tick publishes a round when
 *   |p − last| × 10000 ≥ deviationBps × last (last = the last published price), or when
 *   t − (the last published time) ≥ heartbeat.
 * Deterministic: the same path and options give the same rounds. Options must be positive integers.
 */
export function chainlinkSampling(path: PathPoint[], opts: SamplingOptions): PathPoint[] {
  const deviation = BigInt(requirePositiveInteger("deviationBps", opts.deviationBps, "basis points"));
  const heartbeat = requirePositiveInteger("heartbeat", opts.heartbeat, "seconds");
  const resolution = requirePositiveInteger("resolution", opts.resolution ?? DEFAULT_RESOLUTION, "seconds");
  checkPath("chainlinkSampling", path);

  let last: PathPoint = { time: path[0].time, price: path[0].price, kind: "sample" };
  const rounds: PathPoint[] = [last];
  const tick = (time: number, price: bigint) => {
    const move = price > last.price ? price - last.price : last.price - price;
    if (move * 10_000n >= deviation * last.price || time - last.time >= heartbeat) {
      last = { time, price, kind: "sample" };
      rounds.push(last);
    }
  };
  for (let i = 1; i < path.length; i++) {
    const a = path[i - 1];
    const b = path[i];
    const span = BigInt(b.time - a.time);
    const delta = b.price - a.price;
    for (let t = a.time - (a.time % resolution) + resolution; t < b.time; t += resolution) {
      tick(t, a.price + (delta * BigInt(t - a.time)) / span);
    }
    tick(b.time, b.price);
  }
  return rounds;
}

export interface BuildPathOptions {
  /** a `timestamp,price` CSV (inside data/, absolute, or relative to the current directory) */
  data: string;
  /** an OHLC CSV (lib/prices.ts loadOhlcCsv): replay its bars within the data CSV's time range instead of the closes */
  ohlc?: string;
  sampling: "close" | "chainlink";
  /** Chainlink sampling only; default DEFAULT_DEVIATION_BPS */
  deviationBps?: number;
  /** Chainlink sampling only; default DEFAULT_HEARTBEAT */
  heartbeat?: number;
}

/**
 * The path of a backtest. With `ohlc`, the OHLC bars whose times fall within the data CSV's time range (first to
 * last row, inclusive), replayed by ohlcBarsPath; they must be evenly spaced (a gap in the file throws, naming
 * the row). Otherwise the data CSV's closes. Then, with `sampling: "chainlink"`, the rounds chainlinkSampling
 * publishes along it (deviationBps default 50, heartbeat default 3600, 60 s ticks).
 * @returns the points and `rows`, the number of rows of the data CSV
 * @throws PriceDataError for a bad file, or when no OHLC bar falls within the data's time range (naming both
 *   files); Error for bad options
 */
export function buildPath(opts: BuildPathOptions): { points: PathPoint[]; rows: number } {
  if (typeof opts.data !== "string" || opts.data === "")
    throw new Error("buildPath: data must be the path of a timestamp,price CSV");
  if (opts.sampling !== "close" && opts.sampling !== "chainlink") {
    throw new Error(`sampling must be "close" or "chainlink", got ${JSON.stringify(opts.sampling)}`);
  }
  const deviationBps = requirePositiveInteger(
    "deviationBps",
    opts.deviationBps ?? DEFAULT_DEVIATION_BPS,
    "basis points",
  );
  const heartbeat = requirePositiveInteger("heartbeat", opts.heartbeat ?? DEFAULT_HEARTBEAT, "seconds");

  const closes = loadPriceCsv(opts.data, 8);
  let points: PathPoint[];
  if (opts.ohlc !== undefined) {
    const bars = ohlcWithin(opts.ohlc, opts.data, closes[0].timestamp, closes[closes.length - 1].timestamp);
    points = ohlcBarsPath(bars);
  } else {
    points = closesPath(closes);
  }
  if (opts.sampling === "chainlink") points = chainlinkSampling(points, { deviationBps, heartbeat });
  return { points, rows: closes.length };
}

/** The bars of `ohlc` with from <= time <= to, checked to be evenly spaced. */
function ohlcWithin(ohlc: string, data: string, from: number, to: number): OhlcBar[] {
  const all = loadOhlcRows(ohlc);
  const bars: OhlcRow[] = all.filter((b) => b.timestamp >= from && b.timestamp <= to);
  if (bars.length === 0) {
    throw new PriceDataError(
      `${ohlc}: no OHLC bar falls within the time range of ${data} (${from} to ${to}); the OHLC file covers ${
        all[0].timestamp
      } to ${all[all.length - 1].timestamp}`,
    );
  }
  const interval = bars.length > 1 ? bars[1].timestamp - bars[0].timestamp : 0;
  for (let i = 2; i < bars.length; i++) {
    const gap = bars[i].timestamp - bars[i - 1].timestamp;
    if (gap !== interval) {
      throw new PriceDataError(
        `${ohlc}, row ${bars[i].row}: the bar at ${bars[i].timestamp} comes ${gap} s after the previous one (row ${
          bars[i - 1].row
        }) while the bars before are ${interval} s apart: the OHLC replay of ${data} needs evenly spaced bars`,
      );
    }
  }
  return bars.map(({ timestamp, open, high, low, close }) => ({ timestamp, open, high, low, close }));
}
