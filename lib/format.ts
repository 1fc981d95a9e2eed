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

/** A wei amount (a gas price) in gwei, exact and shortest: 50_000_000n → "0.05". */
export function gweiText(wei: bigint): string {
  const frac = (wei % 10n ** 9n).toString().padStart(9, "0").replace(/0+$/, "");
  return `${wei / 10n ** 9n}${frac ? "." + frac : ""}`;
}

/** A WAD USD value as "1,234.56". */
export const usd = (wadValue: bigint, shown = 2) => formatFixed(wadValue, 18, shown);

/** A WAD health ratio as "1.234", or "∞" for an account without requirement. */
export function health(wadValue: bigint): string {
  return wadValue === MAX_UINT ? "∞" : formatFixed(wadValue, 18, 3);
}

/** A WAD as its exact, shortest decimal ("1234.5", "1.3", "-0.000001", "0"): for reports and JSON, never rounded. */
export function wadText(x: bigint): string {
  const neg = x < 0n;
  const a = neg ? -x : x;
  const frac = (a % 10n ** 18n).toString().padStart(18, "0").replace(/0+$/, "");
  return `${neg ? "-" : ""}${a / 10n ** 18n}${frac ? "." + frac : ""}`;
}

/** Parses wadText's output (or any plain decimal with at most 18 decimals) back to a WAD. */
export function parseWadText(s: string): bigint {
  const neg = s.startsWith("-");
  const [w, f = ""] = (neg ? s.slice(1) : s).split(".");
  const v = BigInt(w) * 10n ** 18n + BigInt((f + "0".repeat(18)).slice(0, 18));
  return neg ? -v : v;
}

/**
 * Rows as aligned columns, one string: `header` then a dashed rule (when `rule`) then `body`; columns whose index is
 * in `right` are right-aligned (numbers), the rest left-aligned; trailing spaces trimmed.
 */
export function textTable(header: string[], body: string[][], opts: { right?: (column: number) => boolean; rule?: boolean } = {}): string {
  const rows = [header, ...(opts.rule ? [header.map(() => "")] : []), ...body];
  const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  if (opts.rule) rows[1] = widths.map((w) => "-".repeat(w));
  const right = opts.right ?? (() => false);
  return rows.map((r) => r.map((c, i) => (right(i) ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd()).join("\n");
}

/**
 * `text` with what lies between the lines `begin` and `end` replaced by `body` (README blocks generated from JSON);
 * `what` names the markers in the error ("README.md lacks the benchmark markers …").
 */
export function replaceMarkedBlock(text: string, begin: string, end: string, body: string, what = "the file lacks the"): string {
  const a = text.indexOf(begin);
  const b = text.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${what} markers ${begin} … ${end}`);
  return text.slice(0, a + begin.length) + "\n" + body + "\n" + text.slice(b);
}
