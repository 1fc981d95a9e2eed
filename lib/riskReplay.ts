/**
 * Crash replays through the real contracts on the in-process Hardhat network: the evidence behind the risk
 * model (README, "Risk model"). One piece of code for `npm run risk:table` (scripts/risk-table.ts) and the
 * scenario test (test/scenario/RiskModel.test.ts).
 *
 * `replayPaths` deploys the local system (deploy/system.ts, with the InstantFillEngine of lib/instantFill.ts) and replays several price paths in parallel, each
 * on its own asset, Chainlink-style feed and market (MAJOR_MARKET parameters), all feeds set at a time aligned
 * to the hour so that the oracle's sampling grid and every time difference are the same on every run. Every
 * step of every path is one round (`FeedPusher.pushAndPoke`: the feed's round at the step's time, then `poke`)
 * in the block at that time; after 48 hours of warm-up a population of longs and shorts opens (one block per
 * path); after each later step, in the next block:
 * - a liquidator calls `liquidate` on every account whose health (`healthBatch`) is below 1 — first, before
 *   any rescue, so the race rule between a rescue and a liquidation is exercised adversarially (a refused
 *   liquidation reverts on chain and is recorded with its reason);
 * - a keeper calls `rebalanceBatch` on the policy accounts `needsRebalance` reports ready.
 * Every figure is read from the chain (events, views). The replay also values every account with the
 * contracts' formulas (to find the accounts near a threshold without a view per account and step, and for
 * check (c): a position valued at its entry price); it stops as soon as a formula and the engine disagree
 * (healths against `healthBatch`, IM at the open against `modifyPosition`, volatilities, equity and
 * maintenance margin against `accountState`), so the figures are the chain's to the wei.
 *
 * Works on both risk models: the current one (sampled σ, bounded-speed maintenance σ, rescue below 1) and the
 * previous one (one σ for MM and IM, sampled at every poke), detected from the oracle's ABI.
 */
import fs from "node:fs";
import path from "node:path";
import { ethers, network } from "hardhat";
import type { BaseContract, Interface, LogDescription, Result } from "ethers";

import { deployInstantFillSystem, type InstantFillSystem } from "./instantFill";
import { ACTION, CRYPTO_FEED, NARROW_POLICY, wad, type FeedConfig, type MarketConfig } from "../deploy/params";
import { DATA_DIR, loadOhlc, loadPriceCsv, ohlcPath, type OhlcBar, type Step } from "./prices";
import {
  abs,
  ceilDiv,
  mmr,
  mulDivFloorSigned,
  mulDivUp,
  requirements,
  sqrtHorizon,
  USDC_SCALE,
  WAD,
  wMulUp,
  type MarketTerms,
} from "./margin";

// =====================================================================================================
// Price paths

// The OHLC loader and replay live in lib/prices.ts (one copy, shared with sim/path.ts); re-exported for the
// callers of this module.
export { loadOhlc, ohlcPath, type OhlcBar, type Step };

/** Hourly closes of a `timestamp,price` file in data/ (lib/prices.ts), one step per close. */
export function closesPath(file: string): Step[] {
  const rows = loadPriceCsv(file, 8);
  const t0 = rows[0].timestamp;
  return rows.map((r, i) => ({ offset: r.timestamp - t0, price: r.price, bar: i, kind: "close" as const }));
}

/**
 * The detrended path: up to `openStep` the real path; after it the real absolute returns between consecutive
 * steps, each signed toward the entry price (the price at `openStep`): down while above it, up while below it,
 * the real sign when exactly at it. The volatility is the crash's, the price stays near entry. Prices are
 * exact rationals of the real ones, rounded down to 8 decimals.
 */
export function detrendedPath(steps: Step[], openStep: number): Step[] {
  const entry = steps[openStep].price;
  const out = steps.slice(0, openStep + 1).map((s) => ({ ...s }));
  let p = entry;
  for (let i = openStep + 1; i < steps.length; i++) {
    const prev = steps[i - 1].price;
    const next = steps[i].price;
    const realUp = next >= prev;
    const up = p === entry ? realUp : p < entry;
    const move = realUp ? next - prev : prev - next; // |Δ|, as a fraction of prev
    p = up ? (p * (prev + move)) / prev : (p * (prev - move)) / prev;
    out.push({ ...steps[i], price: p });
  }
  return out;
}

/** The public crashes the evidence is built on (data/SOURCES.md). */
export interface Crash {
  key: string;
  label: string;
  /** hourly closes in data/ */
  closes: string;
  /** the Binance OHLC window of the same days, when data/ohlc/ has it */
  ohlc?: { file: string; from: number; to: number };
}

const ETH_OHLC = "ohlc/andrewsiah_Binance_ETHUSDT_1h_crash_windows.csv";
const BTC_OHLC = "ohlc/andrewsiah_Binance_BTCUSDT_1h_crash_windows.csv";
export const CRASHES: Crash[] = [
  {
    key: "mar2020",
    label: "Mar 2020 ETH (Binance)",
    closes: "eth_usdt_binance_1h_2020-03-09_2020-03-17.csv",
    ohlc: { file: ETH_OHLC, from: 1583712000, to: 1584403200 },
  },
  {
    key: "may2021",
    label: "May 2021 ETH (Binance)",
    closes: "eth_usdt_binance_1h_2021-05-16_2021-05-24.csv",
    ohlc: { file: ETH_OHLC, from: 1621123200, to: 1621814400 },
  },
  { key: "jun2022", label: "Jun 2022 ETH (Bybit perp)", closes: "eth_usdt_bybitperp_1h_2022-06-10_2022-06-21.csv" },
  { key: "nov2022", label: "Nov 2022 ETH (Bybit perp)", closes: "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv" },
];
/** The BTC OHLC windows of the same files (Mar 2020, May 2021). */
export const BTC_OHLC_CRASHES: Crash[] = [
  {
    key: "mar2020-btc",
    label: "Mar 2020 BTC (Binance)",
    closes: "btc_usdt_binance_1h_2020-03-09_2020-03-17.csv",
    ohlc: { file: BTC_OHLC, from: 1583712000, to: 1584403200 },
  },
  {
    key: "may2021-btc",
    label: "May 2021 BTC (Binance)",
    closes: "btc_usdt_binance_1h_2021-05-16_2021-05-24.csv",
    ohlc: { file: BTC_OHLC, from: 1621123200, to: 1621814400 },
  },
];

// =====================================================================================================
// Requirements (the contracts' formulas: lib/margin.ts)

export { WAD };
/** floor(x / d) for signed x (Solidity's mulDivFloor(x, 1, d)). */
const floorDiv = (x: bigint, d: bigint) => mulDivFloorSigned(x, 1n, d);

/** The market terms of a replay: the requirement parameters, the fee, the keeper reward and sqrt(horizon). */
export type ReplayTerms = MarketTerms & Pick<MarketConfig, "feeRate"> & { keeperReward: bigint; sqrtHorizon: bigint };

/**
 * Whether a fresh account with `marginWad` of USDC may open |size| at `px` (WAD): equity after the fee >= IM,
 * IM = (N·mmr(σ_IM) rounded up)·imFactor + keeperReward, as TradeLogic and AccountLogic.positionTerms compute
 * it. `volTarget`/`volMaint`: the current model applies mmr at σ_maint and the IM at max of both (the
 * previous model passes its one σ twice).
 */
export function imAllows(
  m: ReplayTerms,
  marginWad: bigint,
  size: bigint,
  px: bigint,
  volTarget: bigint,
  volMaint: bigint
): boolean {
  const notional = mulDivUp(size, px, WAD);
  // The fee is paid from USDC margin in whole token units (settlement rounds against the account).
  const fee = ceilDiv(wMulUp(notional, m.feeRate), USDC_SCALE) * USDC_SCALE;
  return marginWad - fee >= requirements(m, notional, volTarget, volMaint, m.sqrtHorizon).im + m.keeperReward;
}

/** Largest |size| (WAD, to the wei) a fresh account with `marginWad` may open at `px`. */
export function maxSize(m: ReplayTerms, marginWad: bigint, px: bigint, volTarget: bigint, volMaint: bigint): bigint {
  let lo = 0n;
  let hi = (marginWad * WAD * 1000n) / px;
  while (hi - lo > 1n) {
    const mid = (lo + hi) / 2n;
    if (imAllows(m, marginWad, mid, px, volTarget, volMaint)) lo = mid;
    else hi = mid;
  }
  return lo;
}

// =====================================================================================================
// Chain driver: raw JSON-RPC (one request per call), blocks mined explicitly at the times the replay sets

type Rpc = (method: string, params?: unknown[]) => Promise<unknown>;
const rpc: Rpc = (method, params = []) => network.provider.send(method, params);
const hex = (n: bigint | number) => "0x" + BigInt(n).toString(16);

/** Transaction fee fields: the base fee is set explicitly on every block; 1,000 gwei always clears it. */
const MAX_FEE = hex(1000n * 10n ** 9n);

interface Sent {
  hash: string;
  what: string;
  accountId?: bigint;
}

class Chain {
  pending: Sent[] = [];
  gasQueued = 0n;
  /** number of the latest block (kept here: every block of a replay is mined by `mine`) */
  blockNumber = 0;
  private baseFeeSet: bigint | null = null;
  constructor(readonly blockGasLimit: bigint) {}

  async send(
    from: string,
    c: BaseContract,
    fn: string,
    args: unknown[],
    gas: bigint,
    what: string,
    accountId?: bigint
  ): Promise<void> {
    const data = c.interface.encodeFunctionData(fn, args);
    const hash = (await rpc("eth_sendTransaction", [
      { from, to: c.target as string, data, gas: hex(gas), maxFeePerGas: MAX_FEE, maxPriorityFeePerGas: "0x0" },
    ])) as string;
    this.pending.push({ hash, what, accountId });
    this.gasQueued += gas;
  }

  /** A view on the pending block (the next block's time, every queued transaction applied). */
  async view(c: BaseContract, fn: string, args: unknown[] = [], tag: string = "pending", from?: string): Promise<Result> {
    const data = c.interface.encodeFunctionData(fn, args);
    const ret = (await rpc("eth_call", [{ to: c.target as string, data, ...(from ? { from } : {}) }, tag])) as string;
    return c.interface.decodeFunctionResult(fn, ret);
  }

  /** A state-changing call simulated on the pending block: the custom error's name when it reverts. */
  simulate(from: string, c: BaseContract, fn: string, args: unknown[]): Promise<string | null> {
    return this.simulateAt(from, c, fn, args, "pending");
  }

  async simulateAt(from: string, c: BaseContract, fn: string, args: unknown[], tag: string): Promise<string | null> {
    const data = c.interface.encodeFunctionData(fn, args);
    try {
      await rpc("eth_call", [{ from, to: c.target as string, data }, tag]);
      return null;
    } catch (e) {
      return revertName(c.interface, e);
    }
  }

  /** Mines the queued transactions in one block at `time` with the given base fee; returns their receipts. */
  private async mineBlock(time: bigint, baseFee: bigint): Promise<void> {
    // A base fee of 0 stays 0 (EIP-1559 moves it in proportion to itself): set once.
    if (baseFee !== 0n || this.baseFeeSet !== 0n) await rpc("hardhat_setNextBlockBaseFeePerGas", [hex(baseFee)]);
    this.baseFeeSet = baseFee;
    await rpc("evm_mine", [Number(time)]);
    this.blockNumber++;
  }

  /** Mines the queued transactions and returns the block's logs (one request): for blocks whose every
   *  transaction is known to emit, the caller checks the events instead of each receipt. */
  async mineLogs(time: bigint, baseFee: bigint): Promise<{ address: string; topics: string[]; data: string }[]> {
    await this.mineBlock(time, baseFee);
    const n = hex(this.blockNumber);
    const logs = (await rpc("eth_getLogs", [{ fromBlock: n, toBlock: n }])) as {
      address: string;
      topics: string[];
      data: string;
    }[];
    this.pending = [];
    this.gasQueued = 0n;
    return logs;
  }

  async mine(
    time: bigint,
    baseFee: bigint
  ): Promise<{ sent: Sent; status: number; logs: { address: string; topics: string[]; data: string }[]; gasUsed: bigint }[]> {
    await this.mineBlock(time, baseFee);
    const out = [];
    for (const s of this.pending) {
      const r = (await rpc("eth_getTransactionReceipt", [s.hash])) as {
        status: string;
        logs: { address: string; topics: string[]; data: string }[];
        gasUsed: string;
      } | null;
      if (r === null) throw new Error(`transaction ${s.what} was not mined in the block at ${time} (block gas limit?)`);
      out.push({ sent: s, status: Number(r.status), logs: r.logs, gasUsed: BigInt(r.gasUsed) });
    }
    this.pending = [];
    this.gasQueued = 0n;
    return out;
  }
}

function revertName(iface: Interface, e: unknown): string {
  const seen = new Set<unknown>();
  const find = (x: unknown): string | undefined => {
    if (x === null || x === undefined || seen.has(x)) return undefined;
    if (typeof x === "string") return /^0x[0-9a-fA-F]{8,}$/.test(x) ? x : undefined;
    if (typeof x !== "object") return undefined;
    seen.add(x);
    const o = x as Record<string, unknown>;
    for (const k of ["data", "error", "info", "cause"]) {
      const d = find(o[k]);
      if (d) return d;
    }
    return undefined;
  };
  const data = find(e);
  if (data) {
    try {
      const parsed = iface.parseError(data);
      if (parsed) return parsed.name;
    } catch {
      /* not one of this contract's errors */
    }
    return `revert ${data.slice(0, 10)}`;
  }
  return `error: ${e instanceof Error ? e.message.split("\n")[0] : String(e)}`;
}

function parseLogs(ifaces: Interface[], logs: { topics: string[]; data: string }[]): LogDescription[] {
  const out: LogDescription[] = [];
  for (const l of logs) {
    for (const i of ifaces) {
      try {
        const p = i.parseLog(l);
        if (p) {
          out.push(p);
          break;
        }
      } catch {
        /* another contract's event */
      }
    }
  }
  return out;
}

// =====================================================================================================
// The replay

export type Side = "long" | "short";
/** control: no policy; policy: 1.3/1.6 TOP_UP|REDUCE with a USDC reserve equal to its margin; funded: the same
 *  policy with a reserve that makes margin + reserve = the notional at entry (a large reserve). */
export type Variant = "control" | "policy" | "funded";
export type PathKind = "closes" | "detrended" | "ohlc";

/** One path of a replay: its own asset, feed and market, its own population. */
export interface PathSpec {
  /** e.g. "mar2020/closes" */
  key: string;
  crash: string;
  label: string;
  kind: PathKind;
  steps: Step[];
  /** index of the step at which the population opens (the steps before warm the volatility up) */
  openStep: number;
  variants: Variant[];
  leverages: number[];
  /** include the largest leverage IM allows at the open */
  includeMax: boolean;
  /** check (c) on this path's max-IM control accounts at every step */
  entryChecks: boolean;
}

export interface ReplayConfig {
  /** USDC margin of every account (whole USDC) */
  marginUsdc: bigint;
  /** "volatility-only" (near entry): health below 1 with the price within ± this percentage of entry */
  nearEntryPct: number;
  /** base fee of every block (wei): the rebalancer's keeper fee is baseFeeUsd + gas × base fee × ETH price */
  baseFee: bigint;
  /** feed parameters of every path */
  feed: FeedConfig;
  /** volatility parameters set on every path's asset after its feed (current model only; default: the
   *  oracle's defaults). For exploring defaults: e.g. `{ maxChangePerDay: wad("0.1") }`. */
  volParams?: { tau?: number; floor?: bigint; cap?: bigint; interval?: number; maxChangePerDay?: bigint };
  /** market parameters of every path over the deployment's ETH market (e.g. `{ imVolFloor: wad("1.5") }`) */
  market?: Partial<MarketConfig>;
  /** Current model: the maintenance σ's speed during the warm-up (null: the tested speed throughout). The
   *  feeds are new, so σ and the maintenance σ start at the floor; a live oracle has tracked σ for weeks
   *  before a crash. At 0.5 a day (0.2 now) the maintenance σ reached at most 1.1 in the 48 h warm-up and was still
   *  28-108 % against a σ of 46-199 % at the opens of May 2021, Jun 2022 and Nov 2022: a cushion the live
   *  system would not have. The warm-up therefore runs at the fastest speed the oracle accepts, and the
   *  tested speed is set in the opening block, before anything opens. */
  warmupMaxChangePerDay: bigint | null;
}

export const DEFAULT_LEVERAGES = [2, 3, 5, 8, 10];
/** Hours of warm-up before the population opens: a new feed's volatility starts at its floor. */
export const WARMUP_HOURS = 48;
export const POLICY = NARROW_POLICY;
/**
 * Defaults: 2,000 USDC per account (a population of 36 accounts per path stays far below a market's 500k USD
 * open-interest cap, so no trade is refused for open interest); base fee 0, so the keeper fee is the flat
 * 1 USD (gas is not what these replays measure); CRYPTO_FEED with a 50 % breaker, as the demo: the crash paths
 * move up to 21 % in an hour and an OHLC step up to 35 %, and a tripped breaker would hide the very lows
 * these replays are about.
 */
export const DEFAULT_CONFIG: ReplayConfig = {
  marginUsdc: 2_000n,
  nearEntryPct: 4,
  baseFee: 0n,
  feed: { ...CRYPTO_FEED, maxJumpBps: 5000 },
  warmupMaxChangePerDay: wad("10"),
};

/**
 * The standard evidence: per crash, the hourly closes (36 accounts: 2x-10x and the IM maximum, long and short,
 * control / policy / funded), the detrended closes (the 12 controls), and where data/ohlc/ has the window the
 * OHLC path (36 accounts). 48 hours of warm-up each.
 */
export function standardPaths(crashes: Crash[] = [...CRASHES, ...BTC_OHLC_CRASHES]): PathSpec[] {
  const all: Variant[] = ["control", "policy", "funded"];
  const out: PathSpec[] = [];
  for (const c of crashes) {
    const base = { crash: c.key, leverages: DEFAULT_LEVERAGES, includeMax: true };
    const isBtcOnly = BTC_OHLC_CRASHES.includes(c);
    if (!isBtcOnly) {
      const closes = closesPath(c.closes);
      out.push({
        ...base,
        key: `${c.key}/closes`,
        label: c.label,
        kind: "closes",
        steps: closes,
        openStep: WARMUP_HOURS,
        variants: all,
        entryChecks: true,
      });
      out.push({
        ...base,
        key: `${c.key}/detrended`,
        label: c.label,
        kind: "detrended",
        steps: detrendedPath(closes, WARMUP_HOURS),
        openStep: WARMUP_HOURS,
        variants: ["control"],
        entryChecks: false,
      });
    }
    if (c.ohlc) {
      const steps = ohlcPath(loadOhlc(c.ohlc.file, c.ohlc.from, c.ohlc.to));
      out.push({
        ...base,
        key: `${c.key}/ohlc`,
        label: c.label,
        kind: "ohlc",
        steps,
        openStep: 4 * WARMUP_HOURS,
        variants: all,
        entryChecks: true,
      });
    }
  }
  return out;
}

export interface Liquidation {
  step: number;
  /** hours since the open */
  hour: number;
  price: bigint;
  /** the position's entry price before this liquidation (a partial liquidation re-enters at its price) */
  entry: bigint;
  /** (price − entry) / entry, percent */
  movePct: number;
  /** |move| <= nearEntryPct: health fell below 1 with the price within ±x % of entry ("volatility-only") */
  nearEntry: boolean;
  /** below 1 at this price even at the maintenance rate of the opening block (the σ the position was opened
   *  at): the price move alone explains it. False: only the requirement's rise since the open does. */
  priceExplained: boolean;
  healthBefore: bigint;
  healthAfter: bigint;
  fraction: bigint;
}

export interface AccountResult {
  id: bigint;
  label: string;
  side: Side;
  /** nominal leverage, or "max" for the largest size IM allows at the open */
  leverage: number | "max";
  variant: Variant;
  opened: boolean;
  openError?: string;
  /** signed size asked at the open */
  size: bigint;
  entry: bigint;
  /** notional at entry / margin */
  leverageActual: number;
  marginUsd: bigint;
  reserveUsd: bigint;
  liquidations: Liquidation[];
  badDebtUsd: bigint;
  /** lowest health seen on a price block after the open (0 when never opened) */
  minHealth: bigint;
  rebalances: number;
  /** rebalances that started below health 1 (rescues) */
  rescues: number;
  /** liquidations refused because the account's own reserve could rescue it (`RescueAvailable`) */
  rescueFirst: number;
  finalEquity: bigint;
  finalReserveUsd: bigint;
  /** unpaid debt at the end (negative settlement balance not written off) */
  finalDebtUsd: bigint;
}

/** Check (c): the position of the largest size IM allowed at the open, valued at its entry price. */
export interface EntryCheck {
  side: Side;
  accountId: bigint;
  /** min over steps of E(entry) − MM(entry), WAD USD (negative: liquidatable at its entry price) */
  minSlack: bigint;
  minSlackHour: number;
  /** min over steps of the health at the entry price (E/MM rounded down like the engine) */
  minHealthAtEntry: bigint;
  /** steps after the open at which E(entry) < MM(entry) */
  liquidatableSteps: number;
  firstLiquidatableHour: number | null;
  /** the maintenance σ at the first such step */
  volAtFirst: bigint | null;
  /** steps at which E and MM of the untouched account were checked against `accountState` (all equal) */
  mirrorChecks: number;
}

export interface PathResult {
  key: string;
  crash: string;
  label: string;
  kind: PathKind;
  model: "bounded-speed" | "previous";
  steps: number;
  openStep: number;
  entryPrice: bigint;
  marginUsd: bigint;
  /** largest size IM allows at the open (to the wei, confirmed on chain) and its leverage */
  maxSizeAtOpen: bigint;
  maxLeverageCalm: number;
  /** lowest, over the steps after the open, of the largest leverage IM allows a fresh account (same margin) */
  maxLeverageMin: number;
  maxLeverageMinHour: number;
  /** σ (IM side) and maintenance σ in the opening block */
  volAtOpen: [bigint, bigint];
  /** largest σ (IM side) and maintenance σ seen after the open */
  peakVol: bigint;
  peakVolMaint: bigint;
  accounts: AccountResult[];
  liquidations: number;
  badDebtUsd: bigint;
  unpaidDebtUsd: bigint;
  /** steps at which some position of the path had no valid price */
  unpricedSteps: number;
  entryChecks: EntryCheck[];
  /** healths compared with `healthBatch` (all equal) */
  healthChecks: number;
}

export interface ReplayResult {
  model: "bounded-speed" | "previous";
  paths: PathResult[];
  blocks: number;
  wallSeconds: number;
  maxGas: { open: bigint; liquidate: bigint; rebalanceBatch: bigint };
}

const GAS = {
  setAnswer: 200_000n,
  poke: 400_000n,
  push: 500_000n,
  open: 900_000n,
  liquidate: 2_000_000n,
  rebalanceEach: 1_200_000n,
  misc: 400_000n,
};

/** Accounts per `rebalanceBatch` transaction (a transaction's gas is capped at 2^24). */
const REBALANCE_BATCH = 12;

/** Engine events (its IMarginEngine and IRebalancer interfaces) whose first argument is an account id. */
const ACCOUNT_EVENTS = new Set([
  "Liquidated",
  "BadDebt",
  "Rebalanced",
  "PositionModified",
  "SettlementChanged",
  "RebalanceSkipped",
]);

/** Market asset of path k: an address without code (a market needs only an oracle feed for its asset). */
const pathAsset = (k: number) => ethers.getAddress("0xba11a57000000000000000000000000000000" + (0x100 + k).toString(16));

/** Runs the paths in parallel on one snapshot of the in-process network (reverted afterwards). */
export async function replayPaths(paths: PathSpec[], config: Partial<ReplayConfig> = {}): Promise<ReplayResult> {
  if (network.name !== "hardhat") throw new Error(`replays run on the in-process network; got --network ${network.name}`);
  const cfg = { ...DEFAULT_CONFIG, ...config };
  const wall0 = Date.now();
  const snapshot = await rpc("evm_snapshot");
  try {
    const r = await run(paths, cfg);
    return { ...r, wallSeconds: (Date.now() - wall0) / 1000 };
  } finally {
    await rpc("evm_setAutomine", [true]);
    await rpc("evm_revert", [snapshot]);
  }
}

/** One account as the replay follows it: the engine's ledger, re-read after every block that touches it. */
interface Tracked {
  res: AccountResult;
  path: number;
  policy: boolean;
  collateral: bigint;
  settlement: bigint;
  size: bigint;
  entry: bigint;
  entryFunding: bigint;
  done: boolean;
}

type Funding = { fundingIndex: bigint; lastFundingTime: bigint; longOI: bigint; shortOI: bigint };

async function run(paths: PathSpec[], cfg: ReplayConfig): Promise<Omit<ReplayResult, "wallSeconds">> {
  const marginUsdc = cfg.marginUsdc * 10n ** 6n;
  const marginWad = marginUsdc * USDC_SCALE;
  const [deployer, lp, trader, keeper, liquidator] = await ethers.getSigners();
  // Positions open at the step's price in one block: the InstantFillEngine (lib/instantFill.ts), whose fill is the
  // production TradeLogic.fill without the fill round a two-step order waits for.
  const sys: InstantFillSystem = await deployInstantFillSystem(deployer);
  const { engine, oracle, vault, pool, usdc, rebalancer } = sys;
  const boundedSpeed = oracle.interface.getFunction("volatilities") !== null;
  const chain = new Chain(BigInt((await ethers.provider.getBlock("latest"))!.gasLimit));
  let blocks = 0;
  const maxGas = { open: 0n, liquidate: 0n, rebalanceBatch: 0n };
  const mine = async (time: bigint) => {
    blocks++;
    const receipts = await chain.mine(time, cfg.baseFee);
    for (const r of receipts) {
      const k = r.sent.what as keyof typeof maxGas;
      if (k in maxGas && r.gasUsed > maxGas[k]) maxGas[k] = r.gasUsed;
    }
    return receipts;
  };
  const mineAll = async (time: bigint) => {
    const receipts = await mine(time);
    for (const r of receipts) if (r.status !== 1) throw new Error(`${r.sent.what} ${r.sent.accountId ?? ""} reverted`);
    return receipts;
  };
  const latestTime = async () => BigInt((await ethers.provider.getBlock("latest"))!.timestamp);

  // ---- pool, markets (one per path, its own asset), population (accounts, margin, policies)
  const lpUsdc = 10_000_000n * 10n ** 6n;
  await (await usdc.mint(lp.address, lpUsdc)).wait();
  await (await usdc.connect(lp).approve(pool, lpUsdc)).wait();
  await (await pool.connect(lp).deposit(lpUsdc, lp.address)).wait();
  await (await usdc.mint(trader.address, 10n ** 15n)).wait(); // 1e9 USDC: margins and reserves
  await (await usdc.connect(trader).approve(vault, ethers.MaxUint256)).wait();
  const ethParams = await engine.marketParams(sys.ethMarket);
  const marketParams = {
    baseMMR: ethParams.baseMMR,
    volK: ethParams.volK,
    sizeK: ethParams.sizeK,
    maxMMR: ethParams.maxMMR,
    imFactor: ethParams.imFactor,
    feeRate: ethParams.feeRate,
    oiCapFraction: ethParams.oiCapFraction,
    maxFundingRate: ethParams.maxFundingRate,
    // the previous model's ABI has no IM volatility floor
    imVolFloor: (ethParams as unknown as { imVolFloor?: bigint }).imVolFloor ?? 0n,
    skewScale: ethParams.skewScale,
    oiCapUsd: ethParams.oiCapUsd,
    ...cfg.market,
  };
  const rp = await engine.riskParams();
  const terms: ReplayTerms = { ...marketParams, keeperReward: rp.keeperReward, sqrtHorizon: sqrtHorizon(rp.volHorizon) };

  await rpc("evm_setAutomine", [false]);
  chain.blockNumber = Number(await rpc("eth_blockNumber"));
  const firstMarket = await engine.marketCount();
  const assets = paths.map((_, k) => pathAsset(k));
  const markets = paths.map((_, k) => firstMarket + BigInt(k));
  for (const asset of assets)
    await chain.send(deployer.address, engine, "createMarket", [{ asset, ...marketParams }], GAS.misc, "createMarket");
  await mineAll((await latestTime()) + 1n);

  const tracked = new Map<bigint, Tracked>();
  const byPath: bigint[][] = paths.map(() => []);
  let nextId = (await vault.accountCount()) + 1n;
  for (const [k, p] of paths.entries()) {
    const levs: (number | "max")[] = [...p.leverages, ...(p.includeMax ? (["max"] as const) : [])];
    for (const variant of p.variants) {
      for (const side of ["long", "short"] as Side[]) {
        for (const leverage of levs) {
          const id = nextId++;
          await chain.send(trader.address, vault, "createAccount", [], GAS.misc, "createAccount");
          await chain.send(trader.address, vault, "depositMargin", [id, usdc.target, marginUsdc], GAS.misc, "depositMargin");
          if (variant !== "control") {
            await chain.send(
              trader.address,
              engine,
              "setRebalancePolicy",
              [id, { ...POLICY, topUpAssets: [usdc.target] }],
              GAS.misc,
              "setRebalancePolicy"
            );
          }
          if (chain.gasQueued > chain.blockGasLimit - 4n * GAS.misc) await mineAll((await latestTime()) + 1n);
          byPath[k].push(id);
          tracked.set(id, {
            path: k,
            policy: variant !== "control",
            collateral: 0n,
            settlement: 0n,
            size: 0n,
            entry: 0n,
            entryFunding: 0n,
            done: false,
            res: {
              id,
              label: `${side} ${leverage === "max" ? "max" : leverage + "x"} ${variant}`,
              side,
              leverage,
              variant,
              opened: false,
              size: 0n,
              entry: 0n,
              leverageActual: 0,
              marginUsd: marginWad,
              reserveUsd: 0n,
              liquidations: [],
              badDebtUsd: 0n,
              minHealth: ethers.MaxUint256,
              rebalances: 0,
              rescues: 0,
              rescueFirst: 0,
              finalEquity: 0n,
              finalReserveUsd: 0n,
              finalDebtUsd: 0n,
            },
          });
        }
      }
    }
  }
  await mineAll((await latestTime()) + 1n);
  if ((await vault.accountCount()) !== nextId - 1n) throw new Error("account ids are not consecutive");

  // ---- feeds: a fresh feed per path, set at T0 (aligned to the hour). σ starts at the floor on both models
  // (a new asset), and every step's time is T0 + its offset: the oracle's sampling grid (1 h of the feed's
  // clock) and every time difference are the same on every run.
  const aggFactory = await ethers.getContractFactory("MockAggregator", deployer);
  const deployOpts = { gasLimit: 1_000_000, maxFeePerGas: MAX_FEE, maxPriorityFeePerGas: 0 };
  const feeds = [];
  for (let k = 0; k < paths.length; k++) feeds.push(await aggFactory.deploy(8, deployOpts));
  // Sets a feed's round and pokes the router in one transaction (contracts/test/FeedPusher.sol).
  const pusher = await (await ethers.getContractFactory("FeedPusher", deployer)).deploy(deployOpts);
  const rounds = paths.map(() => 1n); // round 1 is set at T0
  await mine((await latestTime()) + 1n);
  const T0 = (((await latestTime()) + 3n * 3600n) / 3600n + 1n) * 3600n;
  // The oracle's default volatility parameters, as setFeed gave them to WETH.
  const w = await oracle.volParams(sys.weth);
  const defaultVol = boundedSpeed
    ? {
        tau: w.tau,
        floor: w.floor,
        cap: w.cap,
        interval: (w as unknown as { interval: bigint }).interval,
        maxChangePerDay: (w as unknown as { maxChangePerDay: bigint }).maxChangePerDay,
      }
    : null;
  const testedVol = { ...defaultVol, ...cfg.volParams };
  for (const [k, p] of paths.entries()) {
    await chain.send(deployer.address, feeds[k], "setAnswer", [p.steps[0].price], GAS.setAnswer, "setAnswer");
    await chain.send(
      deployer.address,
      oracle,
      "setFeed",
      [assets[k], { feed: feeds[k].target, ...cfg.feed }],
      GAS.misc,
      "setFeed"
    );
    if (cfg.volParams !== undefined && !boundedSpeed)
      throw new Error("volParams: only the current model has the sampling grid and the speed");
    if (boundedSpeed && (cfg.volParams !== undefined || cfg.warmupMaxChangePerDay !== null)) {
      const warm = cfg.warmupMaxChangePerDay === null ? {} : { maxChangePerDay: cfg.warmupMaxChangePerDay };
      await chain.send(
        deployer.address,
        oracle,
        "setVolParams",
        [assets[k], { ...testedVol, ...warm }],
        GAS.misc,
        "setVolParams"
      );
    }
    await chain.send(keeper.address, oracle, "poke", [assets[k]], GAS.poke, "poke");
  }
  const t0Receipts = await mineAll(T0);

  // ---- per-path state
  const volsAt = async (k: number, tag: string): Promise<[bigint, bigint]> => {
    if (boundedSpeed) {
      const r = await chain.view(oracle, "volatilities", [assets[k]], tag);
      return [r[0] as bigint, r[1] as bigint];
    }
    const v = (await chain.view(oracle, "volatility", [assets[k]], tag))[0] as bigint;
    return [v, v];
  };
  // The volatilities each poke leaves, read from its events (ObservationRecorded: σ after the round;
  // VolatilitySampled: the maintenance σ stored at a sample) and carried to any time as the oracle does
  // (`_approach`): no view call per step. Checked against `volatilities` every 48 steps and at every open.
  const volState = paths.map(() => ({ target: 0n, mmVol: 0n, mmVolAt: 0n }));
  const volParams: { floor: bigint; cap: bigint; maxChangePerDay: bigint }[] = [];
  for (const a of assets) {
    const v = await oracle.volParams(a);
    volParams.push({
      floor: BigInt(v.floor),
      cap: BigInt(v.cap),
      maxChangePerDay: boundedSpeed ? BigInt((v as unknown as { maxChangePerDay: bigint }).maxChangePerDay) : 0n,
    });
  }
  const approach = (k: number, from: bigint, to: bigint, elapsed: bigint) => {
    const v = volParams[k];
    let vol: bigint;
    if (to > from) {
      const step = ceilDiv(v.maxChangePerDay * elapsed, 86_400n);
      vol = to - from > step ? from + step : to;
    } else {
      const step = (v.maxChangePerDay * elapsed) / 86_400n;
      vol = from - to > step ? from - step : to;
    }
    return vol < v.floor ? v.floor : vol > v.cap ? v.cap : vol;
  };
  const volsMirror = (k: number, time: bigint): [bigint, bigint] => {
    const st = volState[k];
    if (!boundedSpeed) return [st.target, st.target];
    return [st.target, approach(k, st.mmVol, st.target, time - st.mmVolAt)];
  };
  const assetIndex = new Map(assets.map((a, k) => [a.toLowerCase(), k]));
  for (const st of volState) st.mmVolAt = T0; // setFeed (a new asset) puts the maintenance σ at the floor at T0
  /** Reads the pokes' events of a block; returns the paths that recorded a round. */
  const readVolEvents = (logs: { address: string; topics: string[]; data: string }[]) => {
    const recorded = new Set<number>();
    for (const ev of parseLogs(
      [oracle.interface],
      logs.filter((l) => l.address.toLowerCase() === (oracle.target as string).toLowerCase())
    )) {
      const k = assetIndex.get((ev.args[0] as string).toLowerCase());
      if (k === undefined) continue;
      if (ev.name === "ObservationRecorded") {
        volState[k].target = ev.args[3] as bigint;
        recorded.add(k);
      }
      if (ev.name === "VolatilitySampled") {
        // The sample's boundary; σ_mm's clock never runs backwards (a first sample after setFeed sits before it).
        volState[k].mmVol = ev.args[3] as bigint;
        const at = ev.args[2] as bigint;
        if (at > volState[k].mmVolAt) volState[k].mmVolAt = at;
      }
    }
    return recorded;
  };
  const checkVols = async (k: number, tag: string, time: bigint) => {
    const chainVols = await volsAt(k, tag);
    const mine_ = volsMirror(k, time);
    if (chainVols[0] !== mine_[0] || chainVols[1] !== mine_[1]) {
      throw new Error(`${paths[k].key}: volatilities ${chainVols} on chain, ${mine_} from the events`);
    }
    return mine_;
  };
  readVolEvents(t0Receipts.flatMap((r) => r.logs));
  for (const [k, st] of volState.entries()) st.mmVol = volParams[k].floor;
  const readFunding = async (k: number): Promise<Funding> => {
    const st = (await chain.view(engine, "marketState", [markets[k]], "latest"))[0] as unknown as Funding;
    return { fundingIndex: st.fundingIndex, lastFundingTime: st.lastFundingTime, longOI: st.longOI, shortOI: st.shortOI };
  };
  /** AccountLogic.fundingIndexNow at `time` and price `price` (WAD). */
  const fundingIndexAt = (f: Funding, time: bigint, price: bigint) => {
    const dt = time - f.lastFundingTime;
    if (dt === 0n) return f.fundingIndex;
    let rate = ((f.longOI - f.shortOI) * terms_maxFunding) / terms_skewScale;
    if (rate > terms_maxFunding) rate = terms_maxFunding;
    if (rate < -terms_maxFunding) rate = -terms_maxFunding;
    return f.fundingIndex + (((rate * price) / WAD) * dt) / 86_400n;
  };
  const terms_maxFunding = BigInt(marketParams.maxFundingRate);
  const terms_skewScale = BigInt(marketParams.skewScale);
  /** The engine's valuation of a tracked account at `px` and `time` (AccountLogic.valuation, one market). */
  const value = (a: Tracked, f: Funding, px: bigint, time: bigint, volMaint: bigint) => {
    const equity =
      a.collateral +
      a.settlement +
      floorDiv(a.size * (px - a.entry) - a.size * (fundingIndexAt(f, time, px) - a.entryFunding), WAD);
    if (a.size === 0n) return { equity, mm: 0n, health: ethers.MaxUint256 };
    const notional = mulDivUp(abs(a.size), px, WAD);
    const mm = wMulUp(notional, mmr(terms, notional, volMaint, terms.sqrtHorizon)) + terms.keeperReward;
    return { equity, mm, health: equity <= 0n ? 0n : (equity * WAD) / mm };
  };
  const refresh = async (id: bigint) => {
    const a = tracked.get(id)!;
    const pos = (await chain.view(engine, "position", [id, markets[a.path]], "latest"))[0] as unknown as {
      size: bigint;
      entryPrice: bigint;
      entryFunding: bigint;
    };
    const st = (await chain.view(engine, "accountState", [id], "latest"))[0] as unknown as {
      collateral: bigint;
      settlement: bigint;
    };
    a.size = pos.size;
    a.entry = pos.entryPrice;
    a.entryFunding = pos.entryFunding;
    a.collateral = st.collateral;
    a.settlement = st.settlement;
  };

  const results: PathResult[] = paths.map((p) => ({
    key: p.key,
    crash: p.crash,
    label: p.label,
    kind: p.kind,
    model: boundedSpeed ? "bounded-speed" : "previous",
    steps: p.steps.length,
    openStep: p.openStep,
    entryPrice: 0n,
    marginUsd: marginWad,
    maxSizeAtOpen: 0n,
    maxLeverageCalm: 0,
    maxLeverageMin: Infinity,
    maxLeverageMinHour: 0,
    volAtOpen: [0n, 0n],
    peakVol: 0n,
    peakVolMaint: 0n,
    accounts: [],
    liquidations: 0,
    badDebtUsd: 0n,
    unpaidDebtUsd: 0n,
    unpricedSteps: 0,
    entryChecks: [],
    healthChecks: 0,
  }));
  const funding: (Funding | null)[] = paths.map(() => null);
  const openBlock: number[] = paths.map(() => 0);
  const price: bigint[] = paths.map(() => 0n);
  const checks: (EntryCheck & { size: bigint; collateral: bigint; settlement: bigint; entryFunding: bigint })[][] = paths.map(
    () => []
  );
  const leverageOf = (size: bigint, px: bigint) => Number((mulDivUp(size, px, WAD) * 10_000n) / marginWad) / 10_000;
  const ifaces = [engine.interface, rebalancer.interface];

  // The timeline: every step of every path, by time.
  const timeline = new Map<number, [number, number][]>();
  paths.forEach((p, k) =>
    p.steps.forEach((s, i) => {
      if (i > 0) timeline.set(s.offset, [...(timeline.get(s.offset) ?? []), [k, i]]);
    })
  );
  const times = [...timeline.keys()].sort((x, y) => x - y);

  for (const offset of times) {
    const at = timeline.get(offset)!;
    const T = T0 + BigInt(offset);
    let cursor = T + 1n; // the next free block time after the price block

    // ---- the price block: a new round of every path with a step now, poked in the same block
    for (const [k, i] of at) {
      const args = [feeds[k].target, oracle.target, assets[k], ++rounds[k], paths[k].steps[i].price, T];
      await chain.send(keeper.address, pusher, "pushAndPoke", args, GAS.push, "pushAndPoke");
    }
    blocks++;
    const recorded = readVolEvents(await chain.mineLogs(T, cfg.baseFee));
    if (at.some(([k]) => !recorded.has(k))) throw new Error(`a price push at ${T - T0} recorded no round`);
    const priceBlock = chain.blockNumber;

    // ---- valuations on the price block
    const toCheck: bigint[] = [];
    const mirror = new Map<bigint, bigint>();
    const opening: number[] = [];
    const ending: number[] = [];
    for (const [k, i] of at) {
      const p = paths[k];
      price[k] = p.steps[i].price * 10n ** 10n;
      if (i === p.steps.length - 1) ending.push(k);
      if (i < p.openStep) continue;
      if (i === p.openStep) {
        opening.push(k);
        continue;
      }
      const res = results[k];
      const hour = (p.steps[i].offset - p.steps[p.openStep].offset) / 3600;
      const [vT, vM] = (i - p.openStep) % 48 === 0 ? await checkVols(k, "latest", T) : volsMirror(k, T);
      if (vT > res.peakVol) res.peakVol = vT;
      if (vM > res.peakVolMaint) res.peakVolMaint = vM;
      const lev = leverageOf(maxSize(terms, marginWad, price[k], vT, vM), price[k]);
      if (lev < res.maxLeverageMin) {
        res.maxLeverageMin = lev;
        res.maxLeverageMinHour = hour;
      }
      const f = funding[k]!;
      for (const id of byPath[k]) {
        const a = tracked.get(id)!;
        if (a.size === 0n) continue;
        const h = value(a, f, price[k], T, vM).health;
        mirror.set(id, h);
        if (h < a.res.minHealth) a.res.minHealth = h;
        // Every account near a threshold is valued by the engine too (and decided on the engine's value);
        // every 96 steps, all of them.
        if (h < (a.policy ? POLICY.triggerRatio : WAD) + WAD / 20n || (i - p.openStep) % 96 === 0) toCheck.push(id);
      }
      // (c): the max-IM position valued at its entry price with this step's requirement:
      // E(entry) = C + S + U(entry) (funding only), MM(entry) = N(entry)·mmr(N(entry), σ_maint) + reward.
      for (const c of checks[k]) {
        const shadow: Tracked = {
          ...tracked.get(c.accountId)!,
          collateral: c.collateral,
          settlement: c.settlement,
          size: c.size,
          entry: res.entryPrice,
          entryFunding: c.entryFunding,
        };
        const { equity, mm, health } = value(shadow, f, res.entryPrice, T, vM);
        const slack = equity - mm;
        if (slack < c.minSlack) {
          c.minSlack = slack;
          c.minSlackHour = hour;
        }
        if (health < c.minHealthAtEntry) c.minHealthAtEntry = health;
        if (slack < 0n) {
          c.liquidatableSteps++;
          if (c.firstLiquidatableHour === null) {
            c.firstLiquidatableHour = hour;
            c.volAtFirst = vM;
          }
        }
        // The formulas at the step's own price against the engine, while the account is as opened.
        const a = tracked.get(c.accountId)!;
        if (a.res.liquidations.length === 0 && a.res.rebalances === 0 && (c.mirrorChecks < 3 || (i - p.openStep) % 24 === 0)) {
          const now = (await chain.view(engine, "accountState", [c.accountId], "latest"))[0] as unknown as {
            equity: bigint;
            maintenanceMargin: bigint;
          };
          const mine_ = value(a, f, price[k], T, vM);
          if (now.equity !== mine_.equity || now.maintenanceMargin !== mine_.mm) {
            throw new Error(`${p.key}: valuation formulas disagree with accountState at step ${i} (account ${c.accountId})`);
          }
          c.mirrorChecks++;
        }
      }
    }

    // ---- the engine's healths of the accounts near a threshold (equal to the formulas, or the replay stops)
    const engineHealth = new Map<bigint, bigint>();
    if (toCheck.length > 0) {
      const hb = await chain.view(engine, "healthBatch", [toCheck], "latest");
      const healths = hb[0] as bigint[];
      const priced = hb[1] as boolean[];
      const unpricedPaths = new Set<number>();
      toCheck.forEach((id, n) => {
        const a = tracked.get(id)!;
        if (!priced[n]) {
          unpricedPaths.add(a.path);
          return;
        }
        if (healths[n] !== mirror.get(id)) {
          throw new Error(
            `${paths[a.path].key}: health of ${a.res.label} is ${healths[n]} on chain, ${mirror.get(id)} by the formulas`
          );
        }
        results[a.path].healthChecks++;
        engineHealth.set(id, healths[n]);
      });
      for (const k of unpricedPaths) results[k].unpricedSteps++;
    }

    // ---- opens: one block per opening path, right after the price block
    for (const k of opening) {
      const p = paths[k];
      const res = results[k];
      const px = price[k];
      res.entryPrice = px;
      const To = cursor++;
      await rpc("evm_setNextBlockTimestamp", [Number(To)]);
      if (boundedSpeed && cfg.warmupMaxChangePerDay !== null) {
        // The warm-up is over: the tested speed, first in the opening block.
        await chain.send(deployer.address, oracle, "setVolParams", [assets[k], testedVol], GAS.misc, "setVolParams");
        volParams[k].maxChangePerDay = BigInt(testedVol.maxChangePerDay as bigint);
      }
      const [oT, oM] = await checkVols(k, "pending", To);
      res.volAtOpen = [oT, oM];
      // The largest size IM allows, to the wei: the formula's answer, confirmed on chain (it opens, one wei
      // more reverts BelowInitialMargin).
      const probe = byPath[k][0];
      res.maxSizeAtOpen = maxSize(terms, marginWad, px, oT, oM);
      const okMax = await chain.simulate(trader.address, engine, "modifyPosition", [
        probe,
        markets[k],
        res.maxSizeAtOpen,
        ethers.MaxUint256,
      ]);
      const overMax = await chain.simulate(trader.address, engine, "modifyPosition", [
        probe,
        markets[k],
        res.maxSizeAtOpen + 1n,
        ethers.MaxUint256,
      ]);
      if (okMax !== null || overMax !== "BelowInitialMargin") {
        throw new Error(
          `${p.key}: IM formula disagrees with the engine at the open: max ${res.maxSizeAtOpen} → ${okMax}, +1 wei → ${overMax}`
        );
      }
      res.maxLeverageCalm = leverageOf(res.maxSizeAtOpen, px);
      res.maxLeverageMin = res.maxLeverageCalm;
      for (const id of byPath[k]) {
        const a = tracked.get(id)!.res;
        const size = a.leverage === "max" ? res.maxSizeAtOpen : (BigInt(a.leverage) * marginWad * WAD) / px;
        a.size = a.side === "long" ? size : -size;
        a.entry = px;
        a.leverageActual = leverageOf(size, px);
        const notional = mulDivUp(size, px, WAD);
        const reserveUsdc =
          a.variant === "policy" ? marginUsdc : a.variant === "funded" ? ceilDiv(notional, USDC_SCALE) - marginUsdc : 0n;
        a.reserveUsd = reserveUsdc * USDC_SCALE;
        if (reserveUsdc > 0n)
          await chain.send(trader.address, vault, "deposit", [id, usdc.target, reserveUsdc], GAS.misc, "deposit");
        await chain.send(
          trader.address,
          engine,
          "modifyPosition",
          [id, markets[k], a.size, a.side === "long" ? ethers.MaxUint256 : 0n],
          GAS.open,
          "open",
          id
        );
      }
      if (chain.gasQueued > chain.blockGasLimit) throw new Error(`${p.key}: the opening block is full: fewer accounts`);
      const receipts = await mine(To);
      openBlock[k] = chain.blockNumber;
      for (const r of receipts) {
        if (r.sent.what !== "open") {
          if (r.status !== 1) throw new Error(`${p.key}: ${r.sent.what} reverted at the open`);
          continue;
        }
        const a = tracked.get(r.sent.accountId!)!;
        a.res.opened = r.status === 1;
        if (a.res.opened) continue;
        // Why it did not open (the same call after the block: no position, same price): it must be IM, and only
        // above the largest size IM allows.
        a.res.openError =
          (await chain.simulateAt(
            trader.address,
            engine,
            "modifyPosition",
            [a.res.id, markets[k], a.res.size, a.res.side === "long" ? ethers.MaxUint256 : 0n],
            "latest"
          )) ?? "opens on retry";
        if (a.res.openError !== "BelowInitialMargin" || abs(a.res.size) <= res.maxSizeAtOpen)
          throw new Error(`${p.key}: open of ${a.res.label} failed: ${a.res.openError}`);
        a.res.minHealth = 0n;
      }
      for (const id of byPath[k]) await refresh(id);
      funding[k] = await readFunding(k);
      if (p.entryChecks) {
        for (const id of byPath[k]) {
          const a = tracked.get(id)!;
          if (a.res.leverage !== "max" || a.res.variant !== "control" || !a.res.opened) continue;
          checks[k].push({
            side: a.res.side,
            accountId: id,
            minSlack: ethers.MaxInt256,
            minSlackHour: 0,
            minHealthAtEntry: ethers.MaxUint256,
            liquidatableSteps: 0,
            firstLiquidatableHour: null,
            volAtFirst: null,
            mirrorChecks: 0,
            size: a.size,
            collateral: a.collateral,
            settlement: a.settlement,
            entryFunding: a.entryFunding,
          });
        }
      }
    }

    // ---- the block after the price: the liquidator first (every account below 1), then the keeper
    // (`rebalanceBatch` on the policy accounts `needsRebalance` says are ready). Both decide on the price
    // block's state (views on it are cheap); the transactions run one second later, in the next block, and a
    // liquidation that no longer applies there reverts and is recorded with its reason.
    const liquidatable = [...engineHealth.entries()].filter(([, h]) => h < WAD).map(([id]) => id);
    const low = [...engineHealth.entries()]
      .filter(([id, h]) => tracked.get(id)!.policy && h < POLICY.triggerRatio)
      .map(([id]) => id);
    if (liquidatable.length > 0 || low.length > 0) {
      const explained = new Map<bigint, boolean>();
      const flush = async () => {
        const Ta = cursor++;
        const entryBefore = new Map([...tracked.entries()].map(([id, a]) => [id, a.entry]));
        const receipts = await mine(Ta);
        const touched = new Set<bigint>();
        for (const r of receipts) {
          if (r.status !== 1) {
            const a = tracked.get(r.sent.accountId ?? -1n);
            if (r.sent.what !== "liquidate" || a === undefined) throw new Error(`${r.sent.what} reverted on chain at ${Ta - T0}`);
            // Refused: why (the same call on the price block's state, before this block's rescue if any).
            const why = await chain.simulateAt(liquidator.address, engine, "liquidate", [a.res.id], hex(priceBlock));
            if (why === "RescueAvailable") a.res.rescueFirst++;
            else if (why !== "NotLiquidatable")
              throw new Error(`${paths[a.path].key}: liquidation of ${a.res.label} reverted: ${why}`);
            continue;
          }
          for (const ev of parseLogs(ifaces, r.logs)) {
            if (!ACCOUNT_EVENTS.has(ev.name)) continue;
            const id = ev.args[0] as bigint;
            const a = tracked.get(id);
            if (a === undefined) continue;
            touched.add(id);
            const p = paths[a.path];
            const step = at.find(([k]) => k === a.path)![1];
            if (ev.name === "Liquidated") {
              const entry = entryBefore.get(id)!;
              const px = price[a.path];
              const movePct = Number(((px - entry) * 1_000_000n) / entry) / 10_000;
              a.res.liquidations.push({
                step,
                hour: (p.steps[step].offset - p.steps[p.openStep].offset) / 3600,
                price: px,
                entry,
                movePct,
                nearEntry: Math.abs(movePct) <= cfg.nearEntryPct,
                priceExplained: explained.get(id)!,
                healthBefore: ev.args.healthBefore as bigint,
                healthAfter: ev.args.healthAfter as bigint,
                fraction: ev.args.fraction as bigint,
              });
            } else if (ev.name === "BadDebt") {
              a.res.badDebtUsd += ev.args.amountUsd as bigint;
            } else if (ev.name === "Rebalanced") {
              a.res.rebalances++;
              if ((ev.args.healthBefore as bigint) < WAD) a.res.rescues++;
            }
          }
        }
        for (const id of touched) await refresh(id);
        for (const k of new Set([...touched].map((id) => tracked.get(id)!.path))) funding[k] = await readFunding(k);
      };
      for (const id of liquidatable) {
        const a = tracked.get(id)!;
        // σ-at-open counterfactual: below 1 at this price at the maintenance rate of the opening block?
        const st = (await chain.view(engine, "accountState", [id], "latest"))[0] as unknown as {
          equity: bigint;
          notional: bigint;
        };
        const rateOpen = (
          await chain.view(engine, "maintenanceRate", [markets[a.path], st.notional], hex(openBlock[a.path]))
        )[0] as bigint;
        explained.set(id, st.equity < wMulUp(st.notional, rateOpen) + terms.keeperReward);
        // Sent whatever happens: a liquidation the rescue rule refuses reverts on chain (RescueAvailable).
        if (chain.gasQueued + GAS.liquidate > chain.blockGasLimit) await flush();
        await chain.send(liquidator.address, engine, "liquidate", [id], GAS.liquidate, "liquidate", id);
      }
      const ready: bigint[] = [];
      for (const id of low) {
        // Below 1 too: the view says Ready only for a rescue (the current model), Liquidatable otherwise.
        const nr = await chain.view(rebalancer, "needsRebalance", [id], "latest", keeper.address);
        if (nr[0] as boolean) ready.push(id);
      }
      for (let n = 0; n < ready.length; n += REBALANCE_BATCH) {
        const batch = ready.slice(n, n + REBALANCE_BATCH);
        const gas = GAS.misc + GAS.rebalanceEach * BigInt(batch.length);
        if (chain.gasQueued + gas > chain.blockGasLimit) await flush();
        await chain.send(keeper.address, rebalancer, "rebalanceBatch", [batch], gas, "rebalanceBatch");
      }
      if (chain.pending.length > 0) await flush();
    }

    // ---- paths that end now: final state
    for (const k of ending) {
      const res = results[k];
      for (const id of byPath[k]) {
        const a = tracked.get(id)!;
        const st = (await chain.view(engine, "accountState", [id], "latest"))[0] as unknown as {
          equity: bigint;
          settlement: bigint;
        };
        a.res.finalEquity = st.equity;
        a.res.finalDebtUsd = st.settlement < 0n ? -st.settlement : 0n;
        a.res.finalReserveUsd = ((await chain.view(vault, "reserveOf", [id, usdc.target], "latest"))[0] as bigint) * USDC_SCALE;
        a.done = true;
        res.accounts.push(a.res);
      }
      res.liquidations = res.accounts.reduce((n, a) => n + a.liquidations.length, 0);
      res.badDebtUsd = res.accounts.reduce((n, a) => n + a.badDebtUsd, 0n);
      res.unpaidDebtUsd = res.accounts.reduce((n, a) => n + a.finalDebtUsd, 0n);
      res.entryChecks = checks[k].map(({ size: _s, collateral: _c, settlement: _t, entryFunding: _f, ...c }) => c);
    }
  }
  return { model: boundedSpeed ? "bounded-speed" : "previous", paths: results, blocks, maxGas };
}

// =====================================================================================================
// Summaries, the pinned baseline and the table (scripts/risk-table.ts, test/scenario/RiskModel.test.ts)

export interface VariantCounts {
  opened: number;
  /** accounts liquidated at least once */
  liquidated: number;
  liquidations: number;
  badDebtUsd: string;
}

/** What the table and the tests read from one path, JSON-safe (WAD values as decimal strings). */
export interface PathSummary {
  key: string;
  crash: string;
  label: string;
  kind: PathKind;
  model: "bounded-speed" | "previous";
  steps: number;
  openStep: number;
  entryPrice: string;
  maxSizeAtOpen: string;
  maxLeverageCalm: number;
  maxLeverageMin: number;
  maxLeverageMinHour: number;
  volAtOpen: [string, string];
  peakVol: string;
  peakVolMaint: string;
  liquidations: number;
  /** liquidations the price move alone does not explain (below 1 only at a requirement above the opening one) */
  volatilityOnly: number;
  /** liquidations with the price within ±nearEntryPct of entry */
  nearEntry: number;
  badDebtUsd: string;
  unpaidDebtUsd: string;
  variants: Record<Variant, VariantCounts>;
  entryChecks: {
    side: Side;
    liquidatableSteps: number;
    firstLiquidatableHour: number | null;
    minHealthAtEntry: string;
    minSlack: string;
  }[];
  accounts: {
    label: string;
    opened: boolean;
    liquidations: { hour: number; movePct: number; priceExplained: boolean }[];
    badDebtUsd: string;
    rescues: number;
    /** final equity + reserve, WAD USD */
    finalTotal: string;
  }[];
}

/** data/risk-baseline.json: the previous model's figures, measured once with this library on its commit. */
export interface Baseline {
  note: string;
  /** the commit whose contracts were measured */
  commit: string;
  model: "bounded-speed" | "previous";
  /** `populationFingerprint()` of the measurement: the tests refuse a baseline of another population */
  population: unknown;
  paths: Record<string, PathSummary>;
}

export const BASELINE_FILE = path.join(DATA_DIR, "risk-baseline.json");

export function summarise(r: PathResult): PathSummary {
  const opened = r.accounts.filter((a) => a.opened);
  const liqs = opened.flatMap((a) => a.liquidations);
  const variants = {} as Record<Variant, VariantCounts>;
  for (const v of ["control", "policy", "funded"] as Variant[]) {
    const of = opened.filter((a) => a.variant === v);
    variants[v] = {
      opened: of.length,
      liquidated: of.filter((a) => a.liquidations.length > 0).length,
      liquidations: of.reduce((n, a) => n + a.liquidations.length, 0),
      badDebtUsd: of.reduce((n, a) => n + a.badDebtUsd, 0n).toString(),
    };
  }
  return {
    key: r.key,
    crash: r.crash,
    label: r.label,
    kind: r.kind,
    model: r.model,
    steps: r.steps,
    openStep: r.openStep,
    entryPrice: r.entryPrice.toString(),
    maxSizeAtOpen: r.maxSizeAtOpen.toString(),
    maxLeverageCalm: r.maxLeverageCalm,
    maxLeverageMin: r.maxLeverageMin,
    maxLeverageMinHour: r.maxLeverageMinHour,
    volAtOpen: [r.volAtOpen[0].toString(), r.volAtOpen[1].toString()],
    peakVol: r.peakVol.toString(),
    peakVolMaint: r.peakVolMaint.toString(),
    liquidations: liqs.length,
    volatilityOnly: liqs.filter((l) => !l.priceExplained).length,
    nearEntry: liqs.filter((l) => l.nearEntry).length,
    badDebtUsd: r.badDebtUsd.toString(),
    unpaidDebtUsd: r.unpaidDebtUsd.toString(),
    variants,
    entryChecks: r.entryChecks.map((c) => ({
      side: c.side,
      liquidatableSteps: c.liquidatableSteps,
      firstLiquidatableHour: c.firstLiquidatableHour,
      minHealthAtEntry: c.minHealthAtEntry.toString(),
      minSlack: c.minSlack.toString(),
    })),
    accounts: r.accounts.map((a) => ({
      label: a.label,
      opened: a.opened,
      liquidations: a.liquidations.map((l) => ({ hour: l.hour, movePct: l.movePct, priceExplained: l.priceExplained })),
      badDebtUsd: a.badDebtUsd.toString(),
      rescues: a.rescues,
      finalTotal: (a.finalEquity + a.finalReserveUsd).toString(),
    })),
  };
}

/** What makes two measurements comparable: the paths (files, steps, prices), the population and the config. */
export function populationFingerprint(paths: PathSpec[], config: Partial<ReplayConfig> = {}): unknown {
  const cfg = { ...DEFAULT_CONFIG, ...config };
  let h = 0n;
  for (const p of paths) for (const s of p.steps) h = (h * 1_000_003n + s.price + BigInt(s.offset)) % (1n << 61n);
  return {
    paths: paths.map(
      (p) =>
        `${p.key}:${p.steps.length}:${p.openStep}:${p.variants.join("+")}:${p.leverages.join("+")}${p.includeMax ? "+max" : ""}`
    ),
    pricesHash: h.toString(),
    marginUsdc: cfg.marginUsdc.toString(),
    nearEntryPct: cfg.nearEntryPct,
    baseFee: cfg.baseFee.toString(),
    maxJumpBps: cfg.feed.maxJumpBps,
    heartbeat: cfg.feed.heartbeat,
    warmupMaxChangePerDay: cfg.warmupMaxChangePerDay === null ? null : cfg.warmupMaxChangePerDay.toString(),
    volParams:
      cfg.volParams === undefined ? null : Object.fromEntries(Object.entries(cfg.volParams).map(([k, v]) => [k, String(v)])),
    policy: {
      trigger: POLICY.triggerRatio.toString(),
      target: POLICY.targetRatio.toString(),
      actions: POLICY.actions,
      maxFeeUsd: POLICY.maxFeeUsd.toString(),
    },
  };
}

export function loadBaseline(file: string = BASELINE_FILE): Baseline {
  if (!fs.existsSync(file)) throw new Error(`baseline not found: ${file} (npm run risk:table -- see scripts/risk-table.ts)`);
  return JSON.parse(fs.readFileSync(file, "utf8")) as Baseline;
}

const usd2 = (wadText: string) => {
  const v = BigInt(wadText);
  const cents = (v < 0n ? -v : v) / 10n ** 16n;
  const whole = (cents / 100n).toString().replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return `${v < 0n ? "-" : ""}${whole}.${(cents % 100n).toString().padStart(2, "0")}`;
};
const px2 = (wadText: string) => usd2(wadText);
const pct = (wadText: string) => `${(Number(BigInt(wadText) / 10n ** 14n) / 100).toFixed(0)} %`;

function entryCell(s: PathSummary | undefined): string {
  if (s === undefined) return "—";
  if (s.entryChecks.length === 0) return "n/a";
  const worst = s.entryChecks.reduce((a, b) => (b.liquidatableSteps > a.liquidatableSteps ? b : a));
  const minH = s.entryChecks.reduce(
    (m, c) => (BigInt(c.minHealthAtEntry) < m ? BigInt(c.minHealthAtEntry) : m),
    ethers.MaxUint256
  );
  const h = (Number(minH / 10n ** 15n) / 1000).toFixed(3);
  if (worst.liquidatableSteps === 0) return `never (min health ${h})`;
  const n = s.kind === "ohlc" ? `${worst.liquidatableSteps}×15 min` : `${worst.liquidatableSteps} h`;
  return `from h${worst.firstLiquidatableHour}, ${n} (min ${h})`;
}

/**
 * The table behind the evidence, one block per crash: the previous model (pinned baseline) and the current one
 * side by side.
 */
export function formatTable(current: PathSummary[], baseline: Baseline | null, currentName = "current model"): string {
  const prevName = baseline ? `previous (${baseline.commit.slice(0, 7)})` : "previous (no baseline)";
  const out: string[] = [];
  const crashes = [...new Set(current.map((s) => s.crash))];
  const W0 = 58;
  const W = 40;
  const row = (name: string, f: (s: PathSummary | undefined) => string, kind: PathKind) => {
    const cur = current.find((s) => s.crash === crash && s.kind === kind);
    if (cur === undefined) return;
    const prev = baseline?.paths[cur.key];
    out.push(name.padEnd(W0) + f(prev).padEnd(W) + f(cur));
  };
  let crash = "";
  for (crash of crashes) {
    const any = current.find((s) => s.crash === crash)!;
    const kinds = current.filter((s) => s.crash === crash).map((s) => s.kind);
    out.push("");
    out.push(
      `${any.label}: entry ${px2(any.entryPrice)} after ${any.kind === "ohlc" ? any.openStep / 4 : any.openStep} h of warm-up; ${[
        ...new Set(kinds),
      ].join(", ")}`
    );
    out.push("".padEnd(W0) + prevName.padEnd(W) + currentName);
    const lev = (s: PathSummary | undefined) =>
      s ? `${s.maxLeverageCalm.toFixed(2)}x / ${s.maxLeverageMin.toFixed(2)}x (h${s.maxLeverageMinHour})` : "—";
    const liq = (s: PathSummary | undefined) => (s ? `${s.liquidations} / ${usd2(s.badDebtUsd)}` : "—");
    const vol = (s: PathSummary | undefined) =>
      s ? `${s.liquidations} (${s.volatilityOnly} σ-only, ${s.nearEntry} near entry)` : "—";
    const variant = (v: Variant) => (s: PathSummary | undefined) =>
      s ? `${s.variants[v].liquidated} of ${s.variants[v].opened} (bad debt ${usd2(s.variants[v].badDebtUsd)})` : "—";
    const sigma = (s: PathSummary | undefined) =>
      s ? `${pct(s.volAtOpen[0])} / ${pct(s.volAtOpen[1])} → ${pct(s.peakVol)} / ${pct(s.peakVolMaint)}` : "—";
    for (const kind of ["closes", "ohlc"] as PathKind[]) {
      const tag = kind === "closes" ? "closes" : "OHLC";
      row(`Max leverage IM allows, calm / lowest (${tag})`, lev, kind);
      row(`σ / maintenance σ: at the open → peak (${tag})`, sigma, kind);
    }
    row("Detrended closes: liquidations within IM (σ-only, ±4 %)", vol, "detrended");
    row("Hourly closes: liquidations / bad debt USD", liq, "closes");
    row("OHLC through the lows: liquidations / bad debt USD", liq, "ohlc");
    for (const kind of ["closes", "ohlc"] as PathKind[]) {
      const tag = kind === "closes" ? "closes" : "OHLC";
      row(`Policy, reserve = margin: liquidated (${tag})`, variant("policy"), kind);
      row(`Policy, large reserve (= notional): liquidated (${tag})`, variant("funded"), kind);
      row(`Max-IM position liquidatable at entry price (${tag})`, entryCell, kind);
    }
  }
  return out.join("\n");
}
