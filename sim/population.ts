/**
 * The population a backtest replays a crash on: groups of accounts with the same leverage, side and starting
 * capital — one control without a policy, and one account per policy with a USDC reserve equal to its margin.
 * Deterministic for a seed (the margins are drawn from it).
 */
import { ACTION, ACTION_NAMES, wad } from "../deploy/params";
import { wadText as fmtRatio } from "../lib/format";
import type { ActionName, PolicyReport, Side } from "./types";

export class SimInputError extends Error {}

export interface PolicySpec {
  name: string;
  trigger: bigint;
  target: bigint;
  /** 0 = no release */
  release: bigint;
  /** ACTION bits (deploy/params.ts) */
  actions: number;
  maxFeeUsd: bigint;
}

export interface Member {
  leverage: number;
  side: Side;
  /** index of the (leverage, side, capital) group */
  group: number;
  policy: PolicySpec | null;
  marginUsdc: bigint;
  /** USDC reserve: margin for a policy account; a control keeps the same amount idle outside the protocol */
  reserveUsdc: bigint;
}

export interface PopulationSpec {
  leverages: number[];
  sides: Side[];
  policies: PolicySpec[];
  /** total accounts (default: every leverage × side once, each group control + policies) */
  accounts?: number;
  seed: number;
  /** margins are drawn uniformly from [min, max] in steps of `step` whole USDC */
  margin: { min: number; max: number; step: number };
}

/**
 * 2x-5.5x: the initial margin of the deployment's ETH market (MAJOR_MARKET: 200 % stress volatility floor over a
 * one-day horizon, 1.5x factor) refuses new positions above ~5.8x, so 8x and 10x orders are cancelled with
 * BelowInitialMargin (`--leverages 8,10` shows it); positions still reach 8x-10x when the price moves against them.
 */
export const DEFAULT_LEVERAGES = [2, 3, 4, 5, 5.5];
export const DEFAULT_MARGIN = { min: 1_000, max: 3_000, step: 100 };
const MAX_FEE_USD = wad("50");


/** "top-up,reduce" → ACTION bits; refuses unknown names and RELEASE without a release ratio. */
export function parseActions(text: string): number {
  let bits = 0;
  for (const raw of text.split(",")) {
    const name = raw.trim() as ActionName;
    if (!(name in ACTION_NAMES)) throw new SimInputError(`--actions: "${raw}" is not an action — use top-up, reduce, release or reduce-first, comma-separated`);
    bits |= ACTION_NAMES[name];
  }
  if ((bits & ACTION.REDUCE_FIRST) !== 0 && (bits & ACTION.REDUCE) === 0) throw new SimInputError(`--actions ${text}: reduce-first orders a reduce: add reduce`);
  return bits;
}

export function actionNames(bits: number): ActionName[] {
  return (Object.keys(ACTION_NAMES) as ActionName[]).filter((n) => (bits & ACTION_NAMES[n]) !== 0);
}

export function policy(actions: number, trigger: bigint, target: bigint, release = 0n): PolicySpec {
  const text = (x: bigint) => fmtRatio(x);
  const name = `${actionNames(actions).join("+")} ${text(trigger)}→${text(target)}${release > 0n ? ` ↑${text(release)}` : ""}`;
  return { name, trigger, target, release, actions, maxFeeUsd: MAX_FEE_USD };
}

/**
 * The demo's policies: the same 1.3 → 1.6 band with TOP_UP, with REDUCE, and with both reduce-first (REDUCE above 1,
 * the reserve only to rescue below 1), so the report shows which costs what.
 */
export function defaultPolicies(trigger = wad("1.3"), target = wad("1.6")): PolicySpec[] {
  return [ACTION.TOP_UP, ACTION.REDUCE, ACTION.TOP_UP | ACTION.REDUCE | ACTION.REDUCE_FIRST].map((a) => policy(a, trigger, target));
}

export function policyReport(p: PolicySpec): PolicyReport {
  return {
    name: p.name,
    trigger: fmtRatio(p.trigger),
    target: fmtRatio(p.target),
    release: fmtRatio(p.release),
    actions: actionNames(p.actions),
    maxFeeUsd: fmtRatio(p.maxFeeUsd),
  };
}

/** mulberry32: a small, fast, well-distributed 32-bit PRNG; the same seed gives the same population everywhere. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Groups in grid order (leverage, then side), repeated when more accounts are asked for; each group's margin drawn
 * from the seed. Every group is a control followed by one account per policy; `accounts` cuts the last group short.
 */
export function buildPopulation(spec: PopulationSpec): Member[] {
  if (spec.leverages.length === 0) throw new SimInputError("no leverages: give at least one (e.g. 2,5,10)");
  for (const l of spec.leverages) {
    if (!Number.isInteger(l * 10) || l < 1 || l > 50) throw new SimInputError(`leverage ${l}: give a number in 1..50 with at most one decimal (e.g. 2.5)`);
  }
  const perGroup = 1 + spec.policies.length;
  const grid = spec.leverages.flatMap((leverage) => spec.sides.map((side) => ({ leverage, side })));
  const total = spec.accounts ?? grid.length * perGroup;
  if (!Number.isInteger(total) || total < 1 || total > 2_000) throw new SimInputError(`--accounts ${spec.accounts}: give a whole number in 1..2000`);
  const rand = prng(spec.seed);
  const { min, max, step } = spec.margin;
  const choices = Math.floor((max - min) / step) + 1;
  const out: Member[] = [];
  for (let g = 0; out.length < total; g++) {
    const { leverage, side } = grid[g % grid.length];
    const marginUsdc = BigInt(min + step * Math.floor(rand() * choices)) * 10n ** 6n;
    for (let k = 0; k < perGroup && out.length < total; k++) {
      const p = k === 0 ? null : spec.policies[k - 1];
      out.push({ leverage, side, group: g, policy: p, marginUsdc, reserveUsdc: marginUsdc });
    }
  }
  return out;
}
