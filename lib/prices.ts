import fs from "node:fs";
import path from "node:path";

/** One observation of a price series: unix seconds and the price as a fixed-point bigint. */
export interface PricePoint {
  timestamp: number;
  /** Price with `decimals` decimals (exact: parsed from the decimal string, never through a float). */
  price: bigint;
}

/** Where the repository's price history lives (data/, sources in data/SOURCES.md). */
export const DATA_DIR = path.resolve(__dirname, "..", "data");

/**
 * A price file that cannot be used as it is. The message is one line: the file (as given), the row (1-based line
 * number in the file, the header is row 1) and the problem, e.g.
 * `prices.csv, row 3: timestamp 1667610000 is not after the previous row's 1667610000`.
 */
export class PriceDataError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PriceDataError";
  }
}

/** Parses a decimal string ("3767", "204.49", "1.5e3" is rejected) into a bigint with `decimals` decimals, truncating extra digits. */
export function parseDecimal(text: string, decimals: number): bigint {
  const s = text.trim();
  if (!/^-?\d+(\.\d+)?$/.test(s)) throw new Error(`not a decimal number: "${text}"`);
  const negative = s.startsWith("-");
  const [whole, frac = ""] = (negative ? s.slice(1) : s).split(".");
  const fracPadded = (frac + "0".repeat(decimals)).slice(0, decimals);
  const value = BigInt(whole) * 10n ** BigInt(decimals) + BigInt(fracPadded === "" ? "0" : fracPadded);
  return negative ? -value : value;
}

// -----------------------------------------------------------------------------------------------------
// Reading and checking CSV files

/** Unix times at or above this are taken for milliseconds (1e11 s is the year 5138, 1e11 ms is 1973). */
const MS_THRESHOLD = 100_000_000_000;

/**
 * Where `file` is: an absolute path as it is; a relative one inside data/ when that file exists (the historical
 * behaviour), else relative to the current directory when that file exists. Undefined when neither exists.
 */
export function resolvePriceFile(file: string): string | undefined {
  if (path.isAbsolute(file)) return fs.existsSync(file) ? file : undefined;
  for (const candidate of [path.join(DATA_DIR, file), path.resolve(process.cwd(), file)]) {
    if (fs.existsSync(candidate) && fs.statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

/** A non-blank line of a CSV file and its 1-based line number. */
interface CsvLine {
  row: number;
  text: string;
}

/** The non-blank lines of `file` with their line numbers (a UTF-8 byte-order mark is dropped). */
function readCsvLines(file: string, what: string): CsvLine[] {
  const full = resolvePriceFile(file);
  if (full === undefined) throw new PriceDataError(`${file}: no such file — give a path to ${what}`);
  const text = fs.readFileSync(full, "utf8").replace(/^\uFEFF/, "");
  return text
    .split(/\r?\n/)
    .map((line, i) => ({ row: i + 1, text: line }))
    .filter((l) => l.text.trim() !== "");
}

/** A value quoted for a message: JSON string syntax, so the message stays on one line whatever the file holds. */
const quote = (s: string) => JSON.stringify(s);

/** The error for `row` of `file`. */
const rowError = (file: string, row: number, problem: string) => new PriceDataError(`${file}, row ${row}: ${problem}`);

/** A unix time in seconds: digits only, > 0, below the milliseconds threshold. */
function parseUnixSeconds(file: string, row: number, name: string, text: string): number {
  const s = text.trim();
  const value = /^\d+$/.test(s) ? Number(s) : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw rowError(file, row, `${name} ${quote(s)} is not a positive integer (unix seconds)`);
  }
  if (value >= MS_THRESHOLD) {
    throw rowError(file, row, `${name} ${s} looks like milliseconds: the column is unix seconds (divide by 1000)`);
  }
  return value;
}

/** A price: a plain decimal (digits, optionally "." and digits), > 0 at `decimals` decimals. */
function parsePrice(file: string, row: number, name: string, text: string, decimals: number): bigint {
  const s = text.trim();
  if (!/^-?\d+(\.\d+)?$/.test(s)) {
    throw rowError(file, row, `${name} ${quote(s)} is not a plain decimal number (digits with an optional "." part, e.g. 1657.2)`);
  }
  const value = parseDecimal(s, decimals);
  if (s.startsWith("-") || /^0+(\.0+)?$/.test(s)) throw rowError(file, row, `${name} ${s} is not positive (prices must be > 0)`);
  if (value === 0n) throw rowError(file, row, `${name} ${s} is 0 at ${decimals} decimals (prices must be > 0)`);
  return value;
}

// -----------------------------------------------------------------------------------------------------
// timestamp,price files

const PRICE_HEADER = "timestamp,price";

/**
 * Loads a `timestamp,price` CSV (format: data/SOURCES.md) and checks it: header `timestamp,price`, then one row
 * per observation with exactly two fields, the timestamp a positive integer of unix seconds strictly after the
 * previous row's, the price a plain decimal > 0. Blank lines are skipped. Anything else throws a PriceDataError
 * naming the file, the row and the problem.
 * @param file a file name inside DATA_DIR, an absolute path, or a path relative to the current directory
 * @param decimals decimals of the returned prices (8 = Chainlink USD feeds, 18 = WAD); extra digits are truncated
 */
export function loadPriceCsv(file: string, decimals = 8): PricePoint[] {
  const lines = readCsvLines(file, "a timestamp,price CSV");
  if (lines.length === 0) throw rowError(file, 1, `empty file: expected the header "${PRICE_HEADER}" and at least one row`);
  const header = lines[0];
  const found = header.text.split(",").map((f) => f.trim()).join(",");
  if (found !== PRICE_HEADER) {
    throw rowError(file, header.row, `expected the header "${PRICE_HEADER}", found ${quote(header.text.trim())}`);
  }
  if (lines.length === 1) throw rowError(file, header.row + 1, `no rows after the header "${PRICE_HEADER}"`);
  const points: PricePoint[] = [];
  for (const { row, text } of lines.slice(1)) {
    const fields = text.split(",");
    if (fields.length !== 2) {
      throw rowError(file, row, `expected 2 fields (timestamp,price), found ${fields.length}: ${quote(text.trim())}`);
    }
    const timestamp = parseUnixSeconds(file, row, "timestamp", fields[0]);
    const previous = points[points.length - 1];
    if (previous !== undefined && timestamp <= previous.timestamp) {
      throw rowError(file, row, `timestamp ${timestamp} is not after the previous row's ${previous.timestamp}`);
    }
    points.push({ timestamp, price: parsePrice(file, row, "price", fields[1], decimals) });
  }
  return points;
}

// -----------------------------------------------------------------------------------------------------
// OHLC files

/** One OHLC bar (8-decimal prices), `timestamp` = the bar's open, unix seconds. */
export interface OhlcBar {
  timestamp: number;
  open: bigint;
  high: bigint;
  low: bigint;
  close: bigint;
}

/** A bar of an OHLC file and the line it was read from (1-based, the header is row 1). */
export interface OhlcRow extends OhlcBar {
  row: number;
}

const OHLC_PRICES = ["open", "high", "low", "close"] as const;
const OHLC_LAYOUTS = "timestamp,open,high,low,close (or unix,open,high,low,close as in data/ohlc/)";

/**
 * The unix column of the data/ohlc/ source layout: an integer, written "1583712000" or "1583712000.0", in seconds
 * (older rows) or milliseconds (newer rows, >= 1e11, which must be a whole second); returned in seconds.
 */
function parseSourceUnix(file: string, row: number, text: string): number {
  const s = text.trim();
  const value = /^\d+(\.0+)?$/.test(s) ? Number(s.split(".")[0]) : NaN;
  if (!Number.isSafeInteger(value) || value <= 0) {
    throw rowError(file, row, `unix ${quote(s)} is not a positive integer (unix seconds or milliseconds)`);
  }
  if (value < MS_THRESHOLD) return value;
  if (value % 1000 !== 0) throw rowError(file, row, `unix ${s} (milliseconds) is not a whole second`);
  return value / 1000;
}

/**
 * Loads a whole OHLC file with the line of every bar, sorted by time (see loadOhlcCsv for the layouts and the
 * checks). For messages that name rows (loadOhlc's gap check, sim/path.ts).
 */
export function loadOhlcRows(file: string): OhlcRow[] {
  const lines = readCsvLines(file, `an OHLC CSV with the columns ${OHLC_LAYOUTS}`);
  if (lines.length === 0) throw rowError(file, 1, `empty file: expected a header with the columns ${OHLC_LAYOUTS}`);
  const header = lines[0];
  const names = header.text.split(",").map((f) => f.trim().toLowerCase());
  const timeColumn = names.includes("timestamp") ? "timestamp" : names.includes("unix") ? "unix" : undefined;
  const missing = [timeColumn ?? "timestamp", ...OHLC_PRICES].filter((c) => !names.includes(c));
  if (missing.length > 0) {
    const list = missing.map((c) => `"${c}"`).join(", ");
    throw rowError(
      file,
      header.row,
      `missing column${missing.length > 1 ? "s" : ""} ${list}: expected ${OHLC_LAYOUTS}, found ${quote(header.text.trim())}`,
    );
  }
  const [it, io, ih, il, ic] = [timeColumn!, ...OHLC_PRICES].map((c) => names.indexOf(c));
  if (lines.length === 1) throw rowError(file, header.row + 1, "no bars after the header");
  const bars: OhlcRow[] = lines.slice(1).map(({ row, text }) => {
    const f = text.split(",");
    if (f.length !== names.length) {
      throw rowError(file, row, `expected ${names.length} fields as in the header, found ${f.length}: ${quote(text.trim())}`);
    }
    const timestamp =
      timeColumn === "unix" ? parseSourceUnix(file, row, f[it]) : parseUnixSeconds(file, row, "timestamp", f[it]);
    const [open, high, low, close] = [io, ih, il, ic].map((i, k) => parsePrice(file, row, OHLC_PRICES[k], f[i], 8));
    const [o, h, l, c] = [io, ih, il, ic].map((i) => f[i].trim());
    if (high < open) throw rowError(file, row, `high ${h} is below the open ${o}`);
    if (high < close) throw rowError(file, row, `high ${h} is below the close ${c}`);
    if (low > open) throw rowError(file, row, `low ${l} is above the open ${o}`);
    if (low > close) throw rowError(file, row, `low ${l} is above the close ${c}`);
    return { row, timestamp, open, high, low, close };
  });
  bars.sort((a, b) => a.timestamp - b.timestamp || a.row - b.row);
  for (let i = 1; i < bars.length; i++) {
    if (bars[i].timestamp === bars[i - 1].timestamp) {
      throw rowError(file, bars[i].row, `a second bar at ${bars[i].timestamp} (unix seconds): row ${bars[i - 1].row} has the same time`);
    }
  }
  return bars;
}

/**
 * Loads a whole OHLC file, sorted by time, 8-decimal prices. Two layouts, told apart by the header (column names
 * are case-insensitive, in any order, other columns are ignored):
 * - generic: `timestamp,open,high,low,close`, timestamp in unix seconds (the bar's open);
 * - the data/ohlc/ source layout: `unix,date,symbol,open,high,low,close,...`, unix in seconds or milliseconds
 *   (converted to seconds).
 * Checked, with a PriceDataError naming the file, the row and the problem: the columns, the field count of every
 * row, times (positive integers; no two bars at one time), prices (plain decimals > 0), and every bar's range
 * (high >= max(open, close), low <= min(open, close)).
 * @param file a file name inside DATA_DIR, an absolute path, or a path relative to the current directory
 */
export function loadOhlcCsv(file: string): OhlcBar[] {
  return loadOhlcRows(file).map(({ timestamp, open, high, low, close }) => ({ timestamp, open, high, low, close }));
}

/**
 * The hourly bars of an OHLC file (loadOhlcCsv) between `from` and `to` (unix seconds, `to` exclusive), sorted by
 * time; throws a PriceDataError when two consecutive bars of the window are not 3600 s apart.
 */
export function loadOhlc(file: string, from: number, to: number): OhlcBar[] {
  const window = loadOhlcRows(file).filter((b) => b.timestamp >= from && b.timestamp < to);
  for (let i = 1; i < window.length; i++) {
    const gap = window[i].timestamp - window[i - 1].timestamp;
    if (gap !== 3600) {
      throw rowError(
        file,
        window[i].row,
        `gap before ${window[i].timestamp}: the bar comes ${gap} s after the previous one (row ${window[i - 1].row}), not 3600`,
      );
    }
  }
  return window.map(({ timestamp, open, high, low, close }) => ({ timestamp, open, high, low, close }));
}

// -----------------------------------------------------------------------------------------------------
// OHLC replay

/** One price update of a replay: `offset` seconds after the path's first step, price with 8 decimals. */
export interface Step {
  offset: number;
  price: bigint;
  /** index of the bar the step belongs to */
  bar: number;
  kind: "close" | "open" | "high" | "low";
}

/** The interval of a single bar, whose length no neighbour tells. */
export const SINGLE_BAR_INTERVAL = 3600;

/**
 * Four steps per bar, so that every bar's low and high are replayed: open → low → high → close for a down bar
 * (close < open), open → high → low → close otherwise, at the bar's time + 0, ¼, ½ and ¾ of its interval
 * (floor((k × interval) / 4) seconds, k = 0..3). A bar's interval is the next bar's time minus its own; the last bar
 * takes the previous bar's interval, a single bar SINGLE_BAR_INTERVAL (hourly bars: 0, 900, 1800, 2700 s).
 * Offsets count from the first bar's time. Throws on no bars, times that are not increasing integers at least
 * 4 s apart, prices <= 0 and bars whose high/low do not contain their open and close.
 */
export function ohlcPath(bars: OhlcBar[]): Step[] {
  if (bars.length === 0) throw new Error("ohlcPath: no bars");
  bars.forEach((b, i) => {
    if (!Number.isSafeInteger(b.timestamp) || b.timestamp <= 0) {
      throw new Error(`ohlcPath: bar ${i} has time ${b.timestamp}, not a positive integer (unix seconds)`);
    }
    if (i > 0 && b.timestamp - bars[i - 1].timestamp < 4) {
      throw new Error(
        `ohlcPath: bar ${i} (time ${b.timestamp}) is not at least 4 s after bar ${i - 1} (time ${bars[i - 1].timestamp}): bars must be in time order, each interval holds four steps`,
      );
    }
    if (b.open <= 0n || b.high <= 0n || b.low <= 0n || b.close <= 0n) throw new Error(`ohlcPath: bar ${i} has a price <= 0`);
    if (b.high < b.open || b.high < b.close || b.low > b.open || b.low > b.close) {
      throw new Error(`ohlcPath: bar ${i}: high ${b.high} and low ${b.low} do not contain open ${b.open} and close ${b.close}`);
    }
  });
  const t0 = bars[0].timestamp;
  const steps: Step[] = [];
  bars.forEach((b, i) => {
    const interval =
      bars.length === 1
        ? SINGLE_BAR_INTERVAL
        : i + 1 < bars.length
          ? bars[i + 1].timestamp - b.timestamp
          : b.timestamp - bars[i - 1].timestamp;
    const mid: [bigint, Step["kind"]][] =
      b.close < b.open
        ? [
            [b.low, "low"],
            [b.high, "high"],
          ]
        : [
            [b.high, "high"],
            [b.low, "low"],
          ];
    const seq: [bigint, Step["kind"]][] = [[b.open, "open"], ...mid, [b.close, "close"]];
    seq.forEach(([price, kind], k) =>
      steps.push({ offset: b.timestamp - t0 + Math.floor((k * interval) / 4), price, bar: i, kind }),
    );
  });
  return steps;
}

// -----------------------------------------------------------------------------------------------------
// Chainlink rounds

/** Loads a Chainlink rounds CSV (roundId,answer,startedAt,updatedAt,answeredInRound) with raw answers. */
export interface ChainlinkRound {
  roundId: bigint;
  answer: bigint;
  startedAt: number;
  updatedAt: number;
  answeredInRound: bigint;
}

export function loadChainlinkRounds(file: string): ChainlinkRound[] {
  const full = path.isAbsolute(file) ? file : path.join(DATA_DIR, file);
  if (!fs.existsSync(full)) throw new Error(`rounds file not found: ${full}`);
  const lines = fs.readFileSync(full, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  lines.shift();
  return lines.map((line) => {
    const [roundId, answer, startedAt, updatedAt, answeredInRound] = line.split(",");
    return {
      roundId: BigInt(roundId),
      answer: BigInt(answer),
      startedAt: Number(startedAt),
      updatedAt: Number(updatedAt),
      answeredInRound: BigInt(answeredInRound),
    };
  });
}
