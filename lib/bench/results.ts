/**
 * The benchmark's results: the schema of bench/results.json, the issue's targets and ratios (declared as data,
 * so a redesign changes a line here, not the code), their evaluation, and the printed table.
 */
import { replaceMarkedBlock } from "../format";

/** Bump when a field changes meaning; `validateResults` checks files against it. */
export const RESULTS_SCHEMA = "ballast-bench/1";

export type Condition = "steady" | "firstTouch";
export const CONDITIONS: readonly Condition[] = ["steady", "firstTouch"];

export const CONDITION_TEXT: Record<Condition, string> = {
  steady:
    "steady state with a fresh Chainlink-style round: the account and the keeper (or trader, liquidator, " +
    "swapper) have done this before in earlier transactions, so the measured transaction writes no slot from " +
    "zero to non-zero beyond what the action itself creates; a NEW round was pushed to the feed (not poked) " +
    "in the block before, so the transaction's own oracle read records it. Storage is cold in every " +
    "transaction (EIP-2929): nothing is warm across transactions.",
  firstTouch:
    "first touch: the first time this account and this keeper (trader, liquidator, swapper) do it (keeper " +
    "and recipient balances, per-account rebalance/reserve slots written from zero); a fresh round is " +
    "pushed before it too, so the two conditions differ only in first versus repeated use.",
};

/** How a figure was obtained. */
export type Method =
  /** gasUsed of the receipt of a successful transaction */
  | "receipt"
  /** gasUsed of the receipt of a mined transaction that reverted (explicit gas limit, no estimation) */
  | "receipt-reverted"
  /** the transaction ran out of gas at the per-transaction cap: no figure */
  | "over-tx-gas-cap"
  /** not measured (a precondition failed, e.g. the first-touch run could not execute) */
  | "not-measured";

export interface Figure {
  /** gasUsed, or null when `method` says why there is none */
  gas: number | null;
  method: Method;
  note?: string;
}

export type Protocol = "ballast" | "morpho-blue" | "uniswap-v3";

export interface Row {
  /** stable id, referenced by ratios and targets */
  id: string;
  protocol: Protocol;
  label: string;
  steady: Figure;
  firstTouch: Figure;
  /** what exactly ran (setup, sizes, which path), for a reader of the JSON */
  description: string;
}

export interface Derived {
  id: string;
  label: string;
  steady: number | null;
  firstTouch: number | null;
  formula: string;
}

export interface RatioSpec {
  id: string;
  label: string;
  numerator: string;
  denominator: string;
}

export interface Ratio extends RatioSpec {
  steady: number | null;
  firstTouch: number | null;
}

export type Status = "PASS" | "MISS" | "N/A";

export interface TargetSpec {
  id: string;
  /** the issue's wording */
  label: string;
  /** a row id, a derived id, or a ratio id */
  subject: string;
  kind: "gas" | "ratio";
  op: "<=" | "<";
  limit: number;
}

export interface Target extends TargetSpec {
  steady: { value: number | null; status: Status };
  firstTouch: { value: number | null; status: Status };
}

export interface BenchResults {
  schema: typeof RESULTS_SCHEMA;
  generatedAt: string;
  git: { commit: string | null; dirty: boolean | null };
  environment: {
    node: string;
    hardhat: string;
    network: string;
    hardfork: string;
    chainId: number;
    blockGasLimit: number;
    txGasCap: number;
    baseFeeGwei: number;
    compilers: Record<string, string>;
  };
  conditions: Record<Condition, string>;
  rows: Row[];
  derived: Derived[];
  ratios: Ratio[];
  targets: Target[];
  /** the keeper's health scan (lib/bench/scan.ts): RPC calls and wall time, not gas; absent in a subset run */
  keeperScan?: ScanRow[];
  /** blocks from a price push to the keeper's rebalance being mined (lib/bench/scan.ts); absent in a subset run */
  keeperLatency?: LatencyRow;
  /** seconds the run took (wall clock), compile included */
  durationSeconds: number;
}

/** One full health scan by the keeper's Scanner over `accounts` accounts with positions. */
export interface ScanRow {
  id: string;
  label: string;
  accounts: number;
  /** the scanner's chunk size (accounts per healthBatch call) */
  chunk: number;
  /** eth_calls of the scan, all of them */
  ethCalls: number;
  /** of which healthBatch */
  healthBatchCalls: number;
  /** JSON-RPC requests of the scan, all methods */
  rpcRequests: number;
  /** wall time of the scan, ms */
  wallMs: number;
  /** eth_estimateGas of one healthBatch over accounts 1..min(chunk, 200) (on-chain rows; absent for the mirror's) */
  healthBatchGas?: number;
  /** the issue's goals for a scan of 10,000 accounts */
  goals: { ethCalls: { limit: number; status: Status }; wallMs: { limit: number; status: Status } };
  description: string;
}

/** The keeper's latency: a price push that takes an account under its trigger, then one keeper cycle. */
export interface LatencyRow {
  id: string;
  label: string;
  /** blocks from the push's block to the rebalance's */
  blocks: number;
  /** wall time of the keeper's cycle that sent it, ms */
  cycleMs: number;
  /** eth_calls of that cycle */
  ethCalls: number;
  goals: { blocks: { limit: number; status: Status } };
  description: string;
}

// ------------------------------------------------------------------------------------------ row ids

export const ROW = {
  deposit: "ballast.deposit",
  open: "ballast.open",
  openRequest: "ballast.open.request",
  openExecute: "ballast.open.execute",
  increase: "ballast.increase",
  close: "ballast.close",
  topUp: "ballast.rebalance.topUp",
  reduce: "ballast.rebalance.reduce",
  release: "ballast.rebalance.release",
  inBand: "ballast.rebalance.nothingToRebalance",
  raceLoser: "ballast.rebalance.raceLoser",
  batch: (n: number) => `ballast.rebalanceBatch.${n}`,
  upkeep10: "ballast.performUpkeep.10",
  liquidatePartial: "ballast.liquidate.partial",
  liquidateFull: "ballast.liquidate.full",
  morphoMock: "morpho.liquidate.mockOracle",
  morphoChainlink: "morpho.liquidate.chainlinkFeed",
  uniswapSwap: "uniswap.exactInputSingle",
} as const;

/** Rows of the keeper's scan benchmark (`keeperScan`). */
export const SCAN_ROW = {
  full: (accounts: number, chunk: number) => `keeper.scan.${accounts}.chunk${chunk}`,
  mirrorBuild: (accounts: number) => `keeper.mirror.build.${accounts}`,
  mirror: (accounts: number) => `keeper.scan.${accounts}.mirror`,
} as const;

/** The issue's goal for the keeper's latency: the rebalance mined at most 1 block after the price push. */
export const LATENCY_GOAL = { blocks: 1 } as const;

/** The issue's goals for one full scan of 10,000 accounts: at most 4 eth_calls and 2 s. */
export const SCAN_GOALS = { ethCalls: 4, wallMs: 2_000 } as const;

export const DERIVED = {
  batchMarginal: "ballast.rebalanceBatch.marginalPerAccount",
} as const;

/** Our/their ratios printed and recorded. "Same feed": Morpho reads the MockAggregator Ballast reads. */
export const RATIO_SPECS: RatioSpec[] = [
  { id: "ratio.topUp/morphoChainlink", label: "TOP_UP / Morpho liquidate (same feed)", numerator: ROW.topUp, denominator: ROW.morphoChainlink },
  { id: "ratio.reduce/morphoChainlink", label: "REDUCE / Morpho liquidate (same feed)", numerator: ROW.reduce, denominator: ROW.morphoChainlink },
  {
    id: "ratio.liquidatePartial/morphoChainlink",
    label: "partial liquidation / Morpho liquidate (same feed)",
    numerator: ROW.liquidatePartial,
    denominator: ROW.morphoChainlink,
  },
  { id: "ratio.topUp/uniswapSwap", label: "TOP_UP / Uniswap V3 exactInputSingle", numerator: ROW.topUp, denominator: ROW.uniswapSwap },
  { id: "ratio.morphoChainlink/morphoMock", label: "Morpho liquidate: Chainlink feed / mock oracle", numerator: ROW.morphoChainlink, denominator: ROW.morphoMock },
];

/** The issue's targets. */
export const TARGET_SPECS: TargetSpec[] = [
  // Two-step orders: request + execute within the open target plus one transaction's intrinsic 21,000.
  { id: "target.open", label: "open, request + execute ≤ 171,000 (150,000 + one transaction)", subject: ROW.open, kind: "gas", op: "<=", limit: 171_000 },
  { id: "target.topUp", label: "TOP_UP ≤ 100,000", subject: ROW.topUp, kind: "gas", op: "<=", limit: 100_000 },
  {
    id: "target.topUpVsMorpho",
    label: "TOP_UP below Morpho's liquidate with the same feed",
    subject: "ratio.topUp/morphoChainlink",
    kind: "ratio",
    op: "<",
    limit: 1,
  },
  { id: "target.reduce", label: "REDUCE ≤ 130,000", subject: ROW.reduce, kind: "gas", op: "<=", limit: 130_000 },
  { id: "target.release", label: "RELEASE ≤ 100,000", subject: ROW.release, kind: "gas", op: "<=", limit: 100_000 },
  {
    id: "target.batchMarginal",
    label: "rebalanceBatch marginal ≤ 45,000 per account",
    subject: DERIVED.batchMarginal,
    kind: "gas",
    op: "<=",
    limit: 45_000,
  },
  {
    id: "target.liquidatePartial",
    label: "partial liquidation ≤ 1.25 × Morpho's liquidate with the same feed",
    subject: "ratio.liquidatePartial/morphoChainlink",
    kind: "ratio",
    op: "<=",
    limit: 1.25,
  },
  { id: "target.inBand", label: "NothingToRebalance in band ≤ 80,000", subject: ROW.inBand, kind: "gas", op: "<=", limit: 80_000 },
  { id: "target.raceLoser", label: "race loser ≤ 30,000", subject: ROW.raceLoser, kind: "gas", op: "<=", limit: 30_000 },
];

// ------------------------------------------------------------------------------------------ evaluation

function valueOf(subject: string, c: Condition, rows: Row[], derived: Derived[], ratios: Ratio[]): number | null | undefined {
  const row = rows.find((r) => r.id === subject);
  if (row) return row[c].gas;
  const d = derived.find((x) => x.id === subject);
  if (d) return d[c];
  const r = ratios.find((x) => x.id === subject);
  if (r) return r[c];
  return undefined;
}

export function computeRatios(rows: Row[], specs: RatioSpec[] = RATIO_SPECS): Ratio[] {
  const out: Ratio[] = [];
  for (const spec of specs) {
    const num = rows.find((r) => r.id === spec.numerator);
    const den = rows.find((r) => r.id === spec.denominator);
    if (!num || !den) continue; // a subset run (the test) has only some rows
    const ratio = (c: Condition): number | null => {
      const a = num[c].gas;
      const b = den[c].gas;
      return a === null || b === null || b === 0 ? null : Math.round((a / b) * 1000) / 1000;
    };
    out.push({ ...spec, steady: ratio("steady"), firstTouch: ratio("firstTouch") });
  }
  return out;
}

export function evaluateTargets(rows: Row[], derived: Derived[], ratios: Ratio[], specs: TargetSpec[] = TARGET_SPECS): Target[] {
  const out: Target[] = [];
  for (const spec of specs) {
    if (valueOf(spec.subject, "steady", rows, derived, ratios) === undefined) continue;
    const check = (c: Condition): { value: number | null; status: Status } => {
      const value = valueOf(spec.subject, c, rows, derived, ratios) ?? null;
      if (value === null) return { value, status: "N/A" };
      const pass = spec.op === "<=" ? value <= spec.limit : value < spec.limit;
      return { value, status: pass ? "PASS" : "MISS" };
    };
    out.push({ ...spec, steady: check("steady"), firstTouch: check("firstTouch") });
  }
  return out;
}

// ------------------------------------------------------------------------------------------ validation

function fail(path: string, what: string): never {
  throw new Error(`results schema: ${path} ${what}`);
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function checkFigure(f: unknown, at: string): void {
  if (!isRecord(f)) fail(at, "is not an object");
  const methods: Method[] = ["receipt", "receipt-reverted", "over-tx-gas-cap", "not-measured"];
  if (!methods.includes(f.method as Method)) fail(`${at}.method`, `is not one of ${methods.join(", ")}`);
  const measured = f.method === "receipt" || f.method === "receipt-reverted";
  if (measured && !(Number.isInteger(f.gas) && (f.gas as number) > 21_000)) fail(`${at}.gas`, "is not a gas figure above 21,000");
  if (!measured && f.gas !== null) fail(`${at}.gas`, `must be null for method ${String(f.method)}`);
  if (f.note !== undefined && typeof f.note !== "string") fail(`${at}.note`, "is not a string");
}

/** Throws with the offending path unless `x` is a well-formed results object; returns it typed. */
export function validateResults(x: unknown): BenchResults {
  if (!isRecord(x)) fail("(root)", "is not an object");
  if (x.schema !== RESULTS_SCHEMA) fail("schema", `is not ${RESULTS_SCHEMA}`);
  if (typeof x.generatedAt !== "string" || Number.isNaN(Date.parse(x.generatedAt))) fail("generatedAt", "is not an ISO date");
  if (!isRecord(x.git)) fail("git", "is not an object");
  const env = x.environment;
  if (!isRecord(env)) fail("environment", "is not an object");
  for (const k of ["node", "hardhat", "network", "hardfork"]) if (typeof env[k] !== "string") fail(`environment.${k}`, "is not a string");
  for (const k of ["chainId", "blockGasLimit", "txGasCap", "baseFeeGwei"]) if (typeof env[k] !== "number") fail(`environment.${k}`, "is not a number");
  if (!isRecord(env.compilers)) fail("environment.compilers", "is not an object");
  if (!isRecord(x.conditions)) fail("conditions", "is not an object");
  for (const c of CONDITIONS) if (typeof x.conditions[c] !== "string") fail(`conditions.${c}`, "is missing");
  if (!Array.isArray(x.rows) || x.rows.length === 0) fail("rows", "is not a non-empty array");
  const ids = new Set<string>();
  x.rows.forEach((r: unknown, i: number) => {
    const at = `rows[${i}]`;
    if (!isRecord(r)) fail(at, "is not an object");
    if (typeof r.id !== "string" || ids.has(r.id)) fail(`${at}.id`, "is missing or duplicated");
    ids.add(r.id);
    if (!["ballast", "morpho-blue", "uniswap-v3"].includes(r.protocol as string)) fail(`${at}.protocol`, "is unknown");
    if (typeof r.label !== "string" || typeof r.description !== "string") fail(at, "lacks label or description");
    for (const c of CONDITIONS) checkFigure(r[c], `${at}.${c}`);
  });
  const numOrNull = (v: unknown) => v === null || (typeof v === "number" && Number.isFinite(v));
  for (const [key, list] of [["derived", x.derived], ["ratios", x.ratios]] as const) {
    if (!Array.isArray(list)) fail(key, "is not an array");
    list.forEach((d: unknown, i: number) => {
      if (!isRecord(d) || typeof d.id !== "string" || typeof d.label !== "string") fail(`${key}[${i}]`, "lacks id or label");
      for (const c of CONDITIONS) if (!numOrNull(d[c])) fail(`${key}[${i}].${c}`, "is not a number or null");
    });
  }
  if (!Array.isArray(x.targets)) fail("targets", "is not an array");
  x.targets.forEach((t: unknown, i: number) => {
    if (!isRecord(t) || typeof t.id !== "string" || typeof t.limit !== "number") fail(`targets[${i}]`, "lacks id or limit");
    for (const c of CONDITIONS) {
      const v = t[c];
      if (!isRecord(v) || !numOrNull(v.value) || !["PASS", "MISS", "N/A"].includes(v.status as string)) {
        fail(`targets[${i}].${c}`, "is not { value, status }");
      }
    }
  });
  if (x.keeperScan !== undefined) {
    if (!Array.isArray(x.keeperScan)) fail("keeperScan", "is not an array");
    x.keeperScan.forEach((r: unknown, i: number) => {
      const at = `keeperScan[${i}]`;
      if (!isRecord(r) || typeof r.id !== "string" || typeof r.label !== "string" || typeof r.description !== "string") fail(at, "lacks id, label or description");
      for (const k of ["accounts", "chunk", "ethCalls", "healthBatchCalls", "rpcRequests", "wallMs"]) {
        if (!(Number.isInteger(r[k]) && (r[k] as number) >= 0)) fail(`${at}.${k}`, "is not a non-negative integer");
      }
      const g = r.goals;
      if (!isRecord(g)) fail(`${at}.goals`, "is not an object");
      for (const k of ["ethCalls", "wallMs"]) {
        const v = g[k];
        if (!isRecord(v) || typeof v.limit !== "number" || !["PASS", "MISS", "N/A"].includes(v.status as string)) fail(`${at}.goals.${k}`, "is not { limit, status }");
      }
    });
  }
  if (x.keeperLatency !== undefined) {
    const r = x.keeperLatency;
    if (!isRecord(r) || typeof r.id !== "string" || typeof r.label !== "string" || typeof r.description !== "string") {
      fail("keeperLatency", "lacks id, label or description");
    }
    for (const k of ["blocks", "cycleMs", "ethCalls"]) {
      if (!(Number.isInteger(r[k]) && (r[k] as number) >= 0)) fail(`keeperLatency.${k}`, "is not a non-negative integer");
    }
    const g = isRecord(r.goals) ? r.goals.blocks : undefined;
    if (!isRecord(g) || typeof g.limit !== "number" || !["PASS", "MISS", "N/A"].includes(g.status as string)) {
      fail("keeperLatency.goals.blocks", "is not { limit, status }");
    }
  }
  if (typeof x.durationSeconds !== "number") fail("durationSeconds", "is not a number");
  return x as unknown as BenchResults;
}

// ------------------------------------------------------------------------------------------ table

const fmtGas = (f: Figure): string => (f.gas === null ? (f.method === "over-tx-gas-cap" ? "> tx cap" : "—") : f.gas.toLocaleString("en-US"));
const fmtNum = (v: number | null, digits = 0): string =>
  v === null ? "—" : v.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });

function pad(cells: string[], widths: number[], right: boolean[]): string {
  return cells.map((c, i) => (right[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join("  ").trimEnd();
}

function table(header: string[], body: string[][], right: boolean[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = widths.map((w) => "-".repeat(w)).join("  ");
  return [pad(header, widths, right), line, ...body.map((r) => pad(r, widths, right))].join("\n");
}

function targetCells(targets: Target[], subject: string): string[] {
  const t = targets.filter((x) => x.subject === subject);
  if (t.length === 0) return ["", "", ""];
  const limit = t.map((x) => `${x.op === "<=" ? "≤" : "<"} ${x.kind === "gas" ? x.limit.toLocaleString("en-US") : `${x.limit}x`}`).join(", ");
  return [limit, t.map((x) => x.steady.status).join(","), t.map((x) => x.firstTouch.status).join(",")];
}

/** The printed report: figures with their targets, derived figures, ratios, then notes. */
export function formatTable(r: BenchResults): string {
  const out: string[] = [];
  out.push(
    `Gas benchmark — gasUsed from receipts, in-process Hardhat network (${r.environment.hardfork}, base fee ${r.environment.baseFeeGwei} gwei)`,
    `steady = fresh oracle round, account and keeper used before; first = first time this account/keeper does it`,
    "",
  );
  const right = [false, true, true, false, false, false];
  const head = ["action", "steady", "first touch", "target", "steady", "first"];
  out.push(
    table(
      head,
      r.rows.map((row) => [row.label, fmtGas(row.steady), fmtGas(row.firstTouch), ...targetCells(r.targets, row.id)]),
      right,
    ),
  );
  if (r.derived.length > 0) {
    out.push("");
    out.push(
      table(
        ["derived", "steady", "first touch", "target", "steady", "first"],
        r.derived.map((d) => [`${d.label} (${d.formula})`, fmtNum(d.steady), fmtNum(d.firstTouch), ...targetCells(r.targets, d.id)]),
        right,
      ),
    );
  }
  if (r.ratios.length > 0) {
    out.push("");
    out.push(
      table(
        ["ours / theirs", "steady", "first touch", "target", "steady", "first"],
        r.ratios.map((x) => [x.label, fmtNum(x.steady, 2) + "x", fmtNum(x.firstTouch, 2) + "x", ...targetCells(r.targets, x.id)]),
        right,
      ),
    );
  }
  const pass = r.targets.filter((t) => t.steady.status === "PASS").length;
  out.push("", `targets met (steady state): ${pass} of ${r.targets.length}`);
  if (r.keeperScan && r.keeperScan.length > 0) {
    out.push("");
    out.push(
      table(
        ["keeper scan", "eth_calls", "healthBatch", "requests", "ms", "goal calls", "goal ms"],
        r.keeperScan.map((x) => [
          x.label,
          String(x.ethCalls),
          String(x.healthBatchCalls),
          String(x.rpcRequests),
          x.wallMs.toLocaleString("en-US"),
          `≤ ${x.goals.ethCalls.limit}: ${x.goals.ethCalls.status}`,
          `≤ ${x.goals.wallMs.limit.toLocaleString("en-US")}: ${x.goals.wallMs.status}`,
        ]),
        [false, true, true, true, true, false, false],
      ),
    );
  }
  if (r.keeperLatency) {
    const l = r.keeperLatency;
    out.push("", `${l.label}: ${l.blocks} (goal ≤ ${l.goals.blocks.limit}: ${l.goals.blocks.status}); the cycle ${l.cycleMs.toLocaleString("en-US")} ms, ${l.ethCalls} eth_calls`);
  }
  const notes = r.rows.flatMap((row) => {
    if (row.steady.note !== undefined && row.steady.note === row.firstTouch.note) return [`${row.label}: ${row.steady.note}`];
    return CONDITIONS.flatMap((c) => (row[c].note ? [`${row.label} [${c === "steady" ? "steady" : "first touch"}]: ${row[c].note}`] : []));
  });
  if (notes.length > 0) out.push("", "notes:", ...notes.map((n) => `  - ${n}`));
  return out.join("\n");
}

// ------------------------------------------------------------------------------------------ README

/** Markers around the README's benchmark tables (`npm run bench:readme` rewrites what is between them). */
export const README_BEGIN = "<!-- bench:begin (generated from bench/results.json by `npm run bench:readme`) -->";
export const README_END = "<!-- bench:end -->";

const mdRow = (cells: string[]): string => `| ${cells.join(" | ")} |`;

/**
 * The README's benchmark tables, from a results file: every row with its target and status, the derived figures,
 * the ratios, and how many targets are met. The README block is exactly this (checked by test/bench/Readme.test.ts).
 */
export function formatMarkdown(r: BenchResults): string {
  const status = (t: Target[]): string =>
    t.length === 0 ? "" : t.map((x) => `${x.op === "<=" ? "≤" : "<"} ${x.kind === "gas" ? x.limit.toLocaleString("en-US") : `${x.limit}x`}: ${x.steady.status}`).join(", ");
  const out: string[] = [];
  out.push(mdRow(["action", "steady", "first touch", "target (steady)"]), mdRow(["---", "---:", "---:", "---"]));
  for (const row of r.rows) {
    out.push(mdRow([row.label, fmtGas(row.steady), fmtGas(row.firstTouch), status(r.targets.filter((t) => t.subject === row.id))]));
  }
  for (const d of r.derived) {
    out.push(mdRow([`${d.label} (${d.formula})`, fmtNum(d.steady), fmtNum(d.firstTouch), status(r.targets.filter((t) => t.subject === d.id))]));
  }
  for (const x of r.ratios) {
    out.push(mdRow([x.label, fmtNum(x.steady, 2) + "x", fmtNum(x.firstTouch, 2) + "x", status(r.targets.filter((t) => t.subject === x.id))]));
  }
  const pass = r.targets.filter((t) => t.steady.status === "PASS").length;
  out.push("", `Targets met (steady state): ${pass} of ${r.targets.length}. Commit measured: ${r.git.commit ?? "unknown"}${r.git.dirty ? " (with uncommitted changes)" : ""}.`);
  if (r.keeperScan && r.keeperScan.length > 0) {
    const goal = (g: { limit: number; status: Status }) => (g.status === "N/A" ? "n/a" : `≤ ${g.limit.toLocaleString("en-US")}: ${g.status}`);
    out.push("", mdRow(["keeper scan", "eth_calls", "of which healthBatch", "wall ms", "goal calls", "goal ms"]), mdRow(["---", "---:", "---:", "---:", "---", "---"]));
    for (const x of r.keeperScan) {
      out.push(mdRow([x.label, String(x.ethCalls), String(x.healthBatchCalls), x.wallMs.toLocaleString("en-US"), goal(x.goals.ethCalls), goal(x.goals.wallMs)]));
    }
  }
  if (r.keeperLatency) {
    const l = r.keeperLatency;
    out.push(
      "",
      `Latency: ${l.label}: ${l.blocks} (goal ≤ ${l.goals.blocks.limit}: ${l.goals.blocks.status}); that keeper cycle took ` +
        `${l.cycleMs.toLocaleString("en-US")} ms and ${l.ethCalls} eth_calls.`,
    );
  }
  return out.join("\n");
}

/** `readme` with the text between the benchmark markers replaced by `formatMarkdown(r)`. */
export function replaceReadmeBlock(readme: string, r: BenchResults): string {
  return replaceMarkedBlock(readme, README_BEGIN, README_END, formatMarkdown(r), "README.md lacks the benchmark");
}
