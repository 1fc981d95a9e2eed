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

/**
 * Loads a `timestamp,price` CSV from data/ (see data/SOURCES.md).
 * @param file file name inside DATA_DIR, or an absolute path
 * @param decimals decimals of the returned prices (8 = Chainlink USD feeds, 18 = WAD)
 */
export function loadPriceCsv(file: string, decimals = 8): PricePoint[] {
  const full = path.isAbsolute(file) ? file : path.join(DATA_DIR, file);
  if (!fs.existsSync(full)) {
    throw new Error(`price file not found: ${full} (price files live in data/ of the repository)`);
  }
  const lines = fs.readFileSync(full, "utf8").split(/\r?\n/).filter((l) => l.trim() !== "");
  const header = lines.shift();
  if (header?.trim() !== "timestamp,price") throw new Error(`${full}: expected header "timestamp,price", got "${header}"`);
  return lines.map((line, i) => {
    const [ts, price] = line.split(",");
    const timestamp = Number(ts);
    if (!Number.isSafeInteger(timestamp)) throw new Error(`${full}:${i + 2}: bad timestamp "${ts}"`);
    return { timestamp, price: parseDecimal(price, decimals) };
  });
}

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
