/** Formatting of fixed-point bigints for logs, tasks and reports. Display only: never used for decisions. */

const MAX_UINT = (1n << 256n) - 1n;

/** Formats a fixed-point bigint with `decimals` decimals, keeping `shown` fraction digits (truncated). */
export function formatFixed(value: bigint, decimals: number, shown = 2): string {
  const negative = value < 0n;
  const abs = negative ? -value : value;
  const scale = 10n ** BigInt(decimals);
  const whole = abs / scale;
  const frac = (abs % scale).toString().padStart(decimals, "0").slice(0, shown);
  const wholeText = whole.toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${negative ? "-" : ""}${wholeText}${shown > 0 ? "." + frac : ""}`;
}

/** A WAD USD value as "1,234.56". */
export const usd = (wadValue: bigint, shown = 2) => formatFixed(wadValue, 18, shown);

/** A WAD health ratio as "1.234", or "∞" for an account without requirement. */
export function health(wadValue: bigint): string {
  return wadValue === MAX_UINT ? "∞" : formatFixed(wadValue, 18, 3);
}
