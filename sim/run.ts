/**
 * The commands over the backtester, shared by `npm run demo` (scripts/demo.ts), `npx hardhat sim:backtest` and
 * `npx hardhat sim:sweep` (tasks/sim.ts): every argument is checked and the price data loaded and validated before
 * anything is deployed; a mistake is a one-line SimInputError or PriceDataError.
 */
import fs from "node:fs";
import path from "node:path";

import { parseUnits, UnitsError } from "../lib/units";
import { DATA_DIR } from "../lib/prices";
import { summaryTable } from "./accounting";
import { DEFAULT_GAS_PRICE, DEFAULT_WARMUP_SECONDS, openStepOf, runBacktest } from "./backtest";
import { writeReport } from "./html";
import { buildPath } from "./path";
import { progressBar } from "./progress";
import {
  DEFAULT_LEVERAGES,
  DEFAULT_MARGIN,
  defaultPolicies,
  parseActions,
  policy,
  SimInputError,
  type PolicySpec,
} from "./population";
import { sweepReport, sweepTable } from "./sweep";
import type { BacktestReport, SweepReport } from "./types";
import { ACTION, POLICY_BOUNDS, POLICY_RATIO_UNIT } from "../deploy/params";
import { wadText as fmt } from "../lib/format";

export const DEFAULT_DATA = "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv";
export const DEFAULT_SCENARIO = "ftx-2022";
export const REPORTS_DIR = path.resolve(__dirname, "..", "reports");

export interface BacktestArgs {
  data: string;
  ohlc?: string;
  accounts?: string;
  seed?: string;
  /** "trigger,target[,release]" */
  policy?: string;
  /** "top-up,reduce" */
  actions?: string;
  sampling?: string;
  leverages?: string;
  /** base fee of the replay's blocks, gwei (default 0.05: a rollup) */
  gasGwei?: string;
  /** hours of the path published before the population opens (default: 48, or a quarter of a shorter path) */
  warmup?: string;
  /** report name (reports/<scenario>.json|html); default: the data file's name */
  scenario?: string;
  out?: string;
  quiet?: boolean;
}

export interface SweepArgs extends Omit<BacktestArgs, "policy" | "actions"> {
  triggers: string;
  targets: string;
  /** action sets separated by "|": "top-up|reduce|top-up,reduce|top-up,reduce,reduce-first" */
  actions?: string;
}

/** A decimal option as a fixed-point bigint (lib/units.ts), its mistake as the simulator's one-line error. */
function decimal(text: string, decimals: number, what: string): bigint {
  try {
    return parseUnits(text.trim(), decimals, { what, allowZero: true });
  } catch (e) {
    if (e instanceof UnitsError) throw new SimInputError(e.message);
    throw e;
  }
}

const ratio = (text: string, what: string) => decimal(text, 18, what);

const int = (text: string | undefined, what: string, min: number, max: number): number | undefined => {
  if (text === undefined) return undefined;
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) throw new SimInputError(`${what} "${text}": give a whole number in ${min}..${max}`);
  return n;
};

/**
 * Checks one policy as the engine's setRebalancePolicy would (RebalanceLogic: the same rules with named errors), one
 * line each, so that nothing is deployed for a policy the engine would refuse.
 */
function checkPolicy(p: PolicySpec): PolicySpec {
  const one = 10n ** 18n;
  const band = fmt(POLICY_BOUNDS.minBand);
  if (p.trigger <= one) throw new SimInputError(`policy ${p.name}: trigger must be above 1 (health 1 is liquidation)`);
  if (p.target <= p.trigger) throw new SimInputError(`policy ${p.name}: target must be above the trigger`);
  if (p.target < p.trigger + POLICY_BOUNDS.minBand) throw new SimInputError(`policy ${p.name}: target must be at least trigger + ${band}`);
  if (p.target > POLICY_BOUNDS.maxTarget) throw new SimInputError(`policy ${p.name}: target must be at most ${fmt(POLICY_BOUNDS.maxTarget)}`);
  if (p.release !== 0n && p.release <= p.target) throw new SimInputError(`policy ${p.name}: release must be 0 (none) or above the target`);
  if (p.release !== 0n && p.release < p.target + POLICY_BOUNDS.minBand) throw new SimInputError(`policy ${p.name}: release must be at least target + ${band}`);
  if (p.release > POLICY_BOUNDS.maxRelease) throw new SimInputError(`policy ${p.name}: release must be at most ${fmt(POLICY_BOUNDS.maxRelease)}`);
  if ((p.actions & ACTION.RELEASE) !== 0 && p.release === 0n) throw new SimInputError(`policy ${p.name}: the release action needs a release ratio (--policy trigger,target,release)`);
  for (const [what, r] of [["trigger", p.trigger], ["target", p.target], ["release", p.release]] as const) {
    if (r % POLICY_RATIO_UNIT !== 0n) throw new SimInputError(`policy ${p.name}: ${what} ${fmt(r)} has more than 6 decimals (a policy keeps whole millionths)`);
  }
  return p;
}

function policiesOf(args: BacktestArgs): PolicySpec[] {
  if (args.policy === undefined) {
    if (args.actions === undefined) return defaultPolicies();
    return [checkPolicy(policy(parseActions(args.actions), ratio("1.3", "trigger"), ratio("1.6", "target")))];
  }
  const parts = args.policy.split(",");
  if (parts.length < 2 || parts.length > 3) throw new SimInputError(`--policy "${args.policy}": give trigger,target[,release], e.g. 1.3,1.6 or 1.3,1.6,3`);
  const [trigger, target] = [ratio(parts[0], "--policy trigger"), ratio(parts[1], "--policy target")];
  const release = parts[2] === undefined ? 0n : ratio(parts[2], "--policy release");
  const actions = args.actions === undefined ? ACTION.TOP_UP | ACTION.REDUCE | (release > 0n ? ACTION.RELEASE : 0) : parseActions(args.actions);
  return [checkPolicy(policy(actions, trigger, target, release))];
}

function leveragesOf(text: string | undefined): number[] {
  if (text === undefined) return DEFAULT_LEVERAGES;
  return text.split(",").map((t) => {
    const n = Number(t);
    if (!/^\d+(\.\d)?$/.test(t.trim()) || n < 1 || n > 50) throw new SimInputError(`--leverages: "${t}" is not a leverage — give numbers in 1..50 with at most one decimal, e.g. 2,3,5`);
    return n;
  });
}

/**
 * Where the data comes from, from data/SOURCES.md's table (the repository's files; a source "same …" is the previous
 * row's source, "same : file" its repository), else the path given.
 */
export function sourceOf(file: string): string {
  const name = path.basename(file);
  const sources = path.join(DATA_DIR, "SOURCES.md");
  if (!fs.existsSync(sources)) return `user data: ${file}`;
  let repo = "";
  let previous = "";
  for (const line of fs.readFileSync(sources, "utf8").split("\n")) {
    const cols = line.split("|").map((c) => c.trim());
    if (cols.length < 4 || !cols[1].endsWith(".csv")) continue;
    const [market, source] = [cols[cols.length - 3], cols[cols.length - 2]];
    const full = source === "same" ? previous : source.startsWith("same") ? `${repo}${source.slice(4)}` : source;
    repo = full.split(" : ")[0];
    previous = full;
    if (cols[1] === name) return `${market}; ${full.replace(/ +$/, "")} (data/SOURCES.md)`;
  }
  return `user data: ${file}`;
}

/**
 * The warm-up: `--warmup` hours if given; else 48 hours, or a quarter of the path (whole hours, at least one) when the
 * path is shorter than four times that, so that a short file still replays three quarters of its length.
 */
export function warmupOf(text: string | undefined, points: { time: number }[]): number {
  const hours = int(text, "--warmup", 1, 24 * 365);
  if (hours !== undefined) return hours * 3600;
  const span = points.length > 0 ? points[points.length - 1].time - points[0].time : 0;
  return Math.min(DEFAULT_WARMUP_SECONDS, Math.max(3600, Math.floor(span / 4 / 3600) * 3600));
}

/** `--gas-gwei`: a decimal number of gwei up to the keeper's 500 gwei cap, as wei. */
function gweiOf(text: string): bigint {
  const wei = decimal(text, 9, "--gas-gwei");
  if (wei > 500n * 10n ** 9n) throw new SimInputError(`--gas-gwei ${text}: at most 500 (the replay's keeper caps its fee there)`);
  return wei;
}

/** Everything a backtest needs, checked and loaded: nothing is deployed before this returns. */
export function prepare(args: BacktestArgs, policies: PolicySpec[]) {
  const sampling = args.sampling ?? "close";
  if (sampling !== "close" && sampling !== "chainlink") throw new SimInputError(`--sampling "${sampling}": use close or chainlink`);
  const accounts = int(args.accounts, "--accounts", 1, 2_000);
  const seed = int(args.seed, "--seed", 0, 2 ** 32 - 1) ?? 1;
  const leverages = leveragesOf(args.leverages);
  const { points, rows } = buildPath({ data: args.data, ohlc: args.ohlc, sampling });
  const warmupSeconds = warmupOf(args.warmup, points);
  const gasPrice = args.gasGwei === undefined ? DEFAULT_GAS_PRICE : gweiOf(args.gasGwei);
  openStepOf(points, warmupSeconds); // the path must cover the warm-up and a replay after it
  const scenario = args.scenario ?? path.basename(args.data).replace(/\.csv$/i, "");
  if (!/^[A-Za-z0-9._-]+$/.test(scenario)) throw new SimInputError(`--scenario "${scenario}": use letters, digits, ".", "_" and "-" only (it names the report files)`);
  return {
    scenario,
    points,
    warmupSeconds,
    gasPrice,
    data: { file: args.data, ohlc: args.ohlc ?? null, source: args.ohlc === undefined ? sourceOf(args.data) : `prices from the OHLC bars: ${sourceOf(args.ohlc)}; window from ${sourceOf(args.data)}`, sampling: sampling as "close" | "chainlink", rows },
    population: { leverages, sides: ["long", "short"] as const, policies, accounts, seed, margin: DEFAULT_MARGIN },
  };
}

/** Replays a prepared backtest with a progress bar labelled `label`. */
function replay(p: ReturnType<typeof prepare>, title: string, command: string, label: string, quiet?: boolean): Promise<BacktestReport> {
  return runBacktest({
    scenario: p.scenario,
    title,
    command,
    data: p.data,
    points: p.points,
    warmupSeconds: p.warmupSeconds,
    gasPrice: p.gasPrice,
    population: { ...p.population, sides: [...p.population.sides] },
    progress: progressBar(label, { quiet }),
  });
}

export async function backtestCommand(args: BacktestArgs, command: string, title?: string): Promise<{ report: BacktestReport; files: { json: string; html: string } }> {
  const p = prepare(args, policiesOf(args));
  const report = await replay(p, title ?? `Backtest: ${p.data.file} (${p.data.sampling} sampling)`, command, "replay", args.quiet);
  const files = writeReport(args.out ?? REPORTS_DIR, report);
  return { report, files };
}

/** The sweep's policies: every trigger < target pair, with every action set. */
export function sweepPolicies(args: SweepArgs): PolicySpec[] {
  const list = (text: string, what: string) => text.split(",").map((t) => ratio(t, what));
  const triggers = list(args.triggers, "--triggers");
  const targets = list(args.targets, "--targets");
  const sets = (args.actions ?? "top-up|reduce|top-up,reduce|top-up,reduce,reduce-first").split("|").map(parseActions);
  const out: PolicySpec[] = [];
  for (const actions of sets) for (const tr of triggers) for (const ta of targets) if (ta > tr) out.push(checkPolicy(policy(actions, tr, ta)));
  if (out.length === 0) throw new SimInputError(`--triggers ${args.triggers} --targets ${args.targets}: no pair has target above trigger`);
  if (out.length > 60) throw new SimInputError(`the grid has ${out.length} policies: at most 60 (fewer triggers, targets or action sets)`);
  return out;
}

export async function sweepCommand(args: SweepArgs, command: string): Promise<{ report: SweepReport; files: { json: string; html: string } }> {
  const policies = sweepPolicies(args);
  const p = prepare({ ...args, policy: undefined, actions: undefined, scenario: args.scenario ?? `sweep-${path.basename(args.data).replace(/\.csv$/i, "")}` }, policies);
  const backtest = await replay(p, `Policy sweep: ${p.data.file} (${policies.length} policies)`, command, "sweep", args.quiet);
  const report = sweepReport(backtest);
  const files = writeReport(args.out ?? REPORTS_DIR, report);
  return { report, files };
}

export { summaryTable, sweepTable };
