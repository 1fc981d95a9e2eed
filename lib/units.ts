/**
 * Human amounts ("1.5" WETH, "250" USDC, "1900" USD) to and from fixed-point bigints, exactly: no floating point, no
 * rounding. A text with more decimals than the unit has, a sign where none is allowed, an exponent, a thousands
 * separator or anything else that is not a plain decimal number is refused with a one-line UnitsError saying what
 * is accepted. Used by the Hardhat tasks (tasks/) for every number a user types.
 */

export class UnitsError extends Error {}

export interface ParseOptions {
  /** what the number is, for the message ("--amount", "price"); default "amount" */
  what?: string;
  /** accept a leading "-" (default false) */
  allowNegative?: boolean;
  /** accept zero (default true) */
  allowZero?: boolean;
}

const DECIMAL = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/**
 * Parses a decimal text into an integer with `decimals` decimals: parseUnits("1.5", 18) = 1_500_000_000_000_000_000n.
 * Accepts "12", "12.", ".5", "0.000001", "+3"; refuses "", ".", "1e18", "1,000", "0x10", " 1", "1.2345678" with 6
 * decimals (more decimals than the unit has), and "-1" unless `allowNegative`. Trailing zeros beyond the unit's
 * decimals are accepted ("1.500000000" as 6 decimals): they change nothing.
 */
export function parseUnits(text: string, decimals: number, opts: ParseOptions = {}): bigint {
  const what = opts.what ?? "amount";
  if (!Number.isInteger(decimals) || decimals < 0 || decimals > 77) {
    throw new UnitsError(`${what}: unsupported number of decimals ${decimals}`);
  }
  const m = typeof text === "string" ? DECIMAL.exec(text) : null;
  if (!m || (m[2] === "" && (m[3] === undefined || m[3] === ""))) {
    throw new UnitsError(`${what} "${text}" is not a decimal number: write it like 1.5 or 250`);
  }
  const [, sign, whole, fracRaw = ""] = m;
  const frac = fracRaw.replace(/0+$/, "");
  if (frac.length > decimals) {
    throw new UnitsError(
      `${what} "${text}" has ${frac.length} decimals, at most ${decimals} allowed: round it to ${decimals} decimals`,
    );
  }
  const scale = 10n ** BigInt(decimals);
  const magnitude = BigInt(whole === "" ? "0" : whole) * scale + BigInt((frac + "0".repeat(decimals)).slice(0, decimals) || "0");
  if (sign === "-" && magnitude !== 0n && !opts.allowNegative) {
    throw new UnitsError(`${what} "${text}" is negative: give a positive number`);
  }
  if (magnitude === 0n && opts.allowZero === false) {
    throw new UnitsError(`${what} "${text}" is zero: give a positive number`);
  }
  return sign === "-" ? -magnitude : magnitude;
}

/** A strictly positive amount (the usual case for a task's --amount, --size, --price). */
export const parsePositive = (text: string, decimals: number, what = "amount") =>
  parseUnits(text, decimals, { what, allowZero: false });

/** A WAD (18 decimals) ratio or USD value: parseWad("1.6") = 1.6e18. */
export const parseWad = (text: string, opts: ParseOptions = {}) => parseUnits(text, 18, opts);

/**
 * Formats an integer with `decimals` decimals exactly, without trailing zeros or grouping:
 * formatUnits(1_500_000n, 6) = "1.5", formatUnits(-5n, 2) = "-0.05", formatUnits(7n * 10n ** 18n, 18) = "7".
 * parseUnits(formatUnits(x, d), d, { allowNegative: true }) === x for every x.
 */
export function formatUnits(value: bigint, decimals: number): string {
  if (!Number.isInteger(decimals) || decimals < 0) throw new UnitsError(`unsupported number of decimals ${decimals}`);
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const scale = 10n ** BigInt(decimals);
  const whole = (abs / scale).toString();
  const frac = decimals === 0 ? "" : (abs % scale).toString().padStart(decimals, "0").replace(/0+$/, "");
  return `${negative ? "-" : ""}${whole}${frac ? "." + frac : ""}`;
}

/**
 * Parses a non-negative integer ("0", "3600", "50"): seconds, basis points, ids. Refuses decimals, signs and
 * anything above `max` (default: Number.MAX_SAFE_INTEGER).
 */
export function parseInteger(text: string, what: string, max: bigint = BigInt(Number.MAX_SAFE_INTEGER)): bigint {
  if (typeof text !== "string" || !/^\d+$/.test(text)) {
    throw new UnitsError(`${what} "${text}" is not a whole number: write it like 0 or 3600`);
  }
  const v = BigInt(text);
  if (v > max) throw new UnitsError(`${what} ${text} is too large: at most ${max}`);
  return v;
}
