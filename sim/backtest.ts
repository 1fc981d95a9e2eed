/**
 * The backtest (README "Backtest and demo"): a real price path replayed through the real contracts on the in-process
 * Hardhat network, with the keeper of keeper/ — its indexer, scanner, strategy and executor, the same code a
 * keeper runs against a live chain — acting after every price.
 *
 * 1. Deploys the local system (deploy/system.ts: production engine, mock tokens, Chainlink-style feeds) and seeds
 *    the LP pool.
 * 2. Warm-up: the first `warmupSeconds` of the path are published as rounds before anyone trades, so the oracle's
 *    volatility has tracked the market (a new feed starts at its floor; during the warm-up its speed limit is
 *    raised, then set back to the deployment's default before the population opens — lib/riskReplay.ts explains
 *    why).
 * 3. The population (sim/population.ts) opens through two-step orders requested after the warm-up's last round;
 *    the keeper fills them at the next round.
 * 4. Every later point: the round is published (FeedPusher: setRound + poke, one transaction, at the point's time
 *    on the chain's clock), then the keeper cycles until it has nothing left to do (at most 3 cycles: a fill can
 *    call for a rebalance, a rebalance for nothing more). Healths are read after the keeper.
 * Every figure comes from the chain: the keeper's receipts (Rebalanced, Liquidated, BadDebt, OrderExecuted,
 * OrderCancelled, gasUsed) and the views at the end.
 */
import { HDNodeWallet, MaxUint256, type TransactionReceipt, type Wallet } from "ethers";
import { ethers, network } from "hardhat";

import { CRYPTO_FEED, MAJOR_MARKET, wad } from "../deploy/params";
import { deployLocalSystem, type LocalSystem } from "../deploy/system";
import { recordOfLocalSystem } from "../lib/deployment";
import { reasonName, requestOrder } from "../lib/orders";
import { engineInterface, errorName, revertData } from "../keeper/abi";
import { parseConfig } from "../keeper/config";
import { Keeper } from "../keeper/keeper";
import { createLogger } from "../keeper/log";
import { Eip1193Provider } from "../keeper/rpc";
import { FeedPusher__factory } from "../typechain-types";
import { gweiText, usd, wadText as dec } from "../lib/format";
import { ceilDiv } from "../lib/margin";
import { summarise } from "./accounting";
import { buildPopulation, policyReport, SimInputError, type Member, type PopulationSpec } from "./population";
import type { PathPoint } from "./path";
import type { AccountEvent, AccountReport, BacktestReport } from "./types";
import { BACKTEST_SCHEMA } from "./types";

const WAD = 10n ** 18n;
const USDC_SCALE = 10n ** 12n;
const MAX_UINT = MaxUint256;
const MNEMONIC = "test test test test test test test test test test test junk";
/** The backtest's keeper signs with this key of Hardhat's mnemonic (index 1020: no test or task sends from it). */
export const SIM_KEEPER = HDNodeWallet.fromPhrase(MNEMONIC, undefined, "m/44'/60'/0'/0/1020") as unknown as Wallet;
/** Hours of path published before the population opens (the oracle's volatility needs history). */
export const DEFAULT_WARMUP_SECONDS = 48 * 3600;
/** Orders are requested right after a round; the next one comes within a step. A day is the engine's maximum. */
const ORDER_LIFETIME = 6n * 3600n;
const MAX_CYCLES_PER_STEP = 3;
/** The engine's rules that refuse an opening order at its request (the population then stays flat, reported). */
const REQUEST_REFUSALS = new Set(["BelowInitialMargin", "OpenInterestCap", "PositionTooLarge"]);
/**
 * The ETH market's open-interest cap for a population: MAJOR_MARKET's, or twice the larger side's notional at entry
 * (Σ leverage × margin, USD) rounded up to 100k USD when that is more.
 */
export function simOiCap(members: Member[]): bigint {
  const side = (s: string) => members.filter((m) => m.side === s).reduce((sum, m) => sum + BigInt(Math.round(m.leverage * 10)) * m.marginUsdc, 0n) / 10n;
  const need = 2n * (side("long") > side("short") ? side("long") : side("short")) * USDC_SCALE;
  const step = wad("100000");
  const rounded = ((need + step - 1n) / step) * step;
  return rounded > MAJOR_MARKET.oiCapUsd ? rounded : MAJOR_MARKET.oiCapUsd;
}

export interface BacktestOptions {
  scenario: string;
  title: string;
  command: string;
  data: BacktestReport["data"];
  points: PathPoint[];
  population: PopulationSpec;
  warmupSeconds?: number;
  /** base fee of every block from the set-up on, wei (default DEFAULT_GAS_PRICE: a rollup's) */
  gasPrice?: bigint;
  /** called after every point */
  progress?: (done: number, total: number) => void;
  /**
   * Called once the replay is over, before the chain is reverted: tests read the deployment's state and events here.
   * `chainTime(i)` is the block time at which point i was published.
   */
  inspect?: (chain: { sys: LocalSystem; ids: bigint[]; chainTime: (i: number) => number; keeper: string }) => Promise<void>;
}

interface Tracked {
  member: Member;
  id: bigint;
  label: string;
  variant: string;
  opened: boolean;
  entryPrice: bigint;
  health: (bigint | null)[];
  events: AccountEvent[];
  liquidations: number;
  penalties: bigint;
  rebalances: { topUp: number; reduce: number; release: number };
  keeperFees: bigint;
  /** trading fees of the account's reductions by rebalance (PositionModified.fee) */
  tradingFees: bigint;
  gas: number;
  /** gas of the transactions acting on it × their gas price × ETH at the step, WAD USD */
  gasUsd: bigint;
  badDebt: bigint;
  orderFee: bigint;
  /** the rule that cancelled the opening order */
  openRefused: string | null;
}

const rpc = (method: string, params: unknown[] = []) => network.provider.send(method, params);
const latest = async () => (await ethers.provider.getBlock("latest"))!.timestamp;
/**
 * The next block: at `time` (default one second after the latest) and at base fee `baseFee`. Hardhat stamps blocks
 * with the wall clock (plus an offset) and moves the base fee with each block's gas, so without this a
 * transaction's time — with it funding and the oracle's clock — and its gas price would depend on how fast the
 * machine ran and on what else was mined.
 */
async function pinNextBlock(baseFee: bigint, time?: number): Promise<void> {
  await rpc("evm_setNextBlockTimestamp", [time ?? (await latest()) + 1]);
  await rpc("hardhat_setNextBlockBaseFeePerGas", ["0x" + baseFee.toString(16)]);
}

/**
 * Base fee of the replay's blocks: 0.05 gwei, an optimistic rollup's order of magnitude, where the deployment's
 * defaults (0.5 USDC order fee, 1 USD + 600k gas rebalance fee) are calibrated. `--gas-gwei 20` prices an L1.
 */
export const DEFAULT_GAS_PRICE = 50_000_000n;
/** What the keeper's profitability check charges per action: the bench's measured gas, rounded up (README). */
const KEEPER_GAS = { rebalance: 300_000, rebalanceBatchBase: 100_000, rebalanceBatchPerAccount: 200_000, liquidate: 350_000, executeOrder: 300_000 };

/** Runs a backtest and returns its report; the chain is reverted to where it was afterwards. */
export async function runBacktest(opts: BacktestOptions): Promise<BacktestReport> {
  if (network.name !== "hardhat") throw new Error(`the backtest runs on the in-process network; got --network ${network.name}`);
  const snapshot = await rpc("evm_snapshot");
  const wall0 = Date.now();
  try {
    return await run(opts, wall0);
  } finally {
    await rpc("evm_revert", [snapshot]);
  }
}

/** Index of the first point at or after the warm-up (the population opens after it is published). */
export function openStepOf(points: PathPoint[], warmupSeconds: number): number {
  if (points.length < 3) throw new SimInputError(`the path has ${points.length} points: a backtest needs at least 3`);
  const i = points.findIndex((p) => p.time - points[0].time >= warmupSeconds);
  if (i < 0 || i >= points.length - 1) {
    const hours = (points[points.length - 1].time - points[0].time) / 3600;
    throw new SimInputError(`the path covers ${hours.toFixed(1)} h: too short for a ${warmupSeconds / 3600} h warm-up and a replay after it`);
  }
  return i;
}

async function run(opts: BacktestOptions, wall0: number): Promise<BacktestReport> {
  const { points } = opts;
  const warmup = opts.warmupSeconds ?? DEFAULT_WARMUP_SECONDS;
  const openStep = openStepOf(points, warmup);
  const members = buildPopulation(opts.population);
  const gasPrice = opts.gasPrice ?? DEFAULT_GAS_PRICE;
  const pin = (time?: number) => pinNextBlock(gasPrice, time);
  const [deployer, lp, trader] = await ethers.getSigners();
  await rpc("hardhat_setBalance", [SIM_KEEPER.address, "0x56BC75E2D63100000"]); // 100 ETH for gas

  const sys = await deployLocalSystem(deployer, { eth: points[0].price, btc: 30_000n * 10n ** 8n });
  // Many traders on one market: MAJOR_MARKET's 500k USD open-interest cap would refuse the later orders of a large
  // population (a sweep holds ~190 accounts). When the population's notional on one side exceeds half the cap, the
  // cap is raised to twice that notional (the pool's own cap, oiCapFraction × LP capital = 5M USD, still applies),
  // so no order is refused for open interest. The size term of the maintenance margin (sizeK × N / oiCapUsd) is
  // smaller under a larger cap. The demo's 40 accounts stay within the production cap. Refusals are in the report.
  const oiCap = simOiCap(members);
  if (oiCap !== MAJOR_MARKET.oiCapUsd) {
    await (await sys.engine.setMarketParams(sys.ethMarket, { asset: sys.weth, ...MAJOR_MARKET, oiCapUsd: oiCap })).wait();
  }
  const vol = await sys.oracle.volParams(sys.weth);
  const tested = { tau: vol.tau, floor: vol.floor, cap: vol.cap, interval: vol.interval, maxChangePerDay: vol.maxChangePerDay };
  const pusher = await new FeedPusher__factory(deployer).deploy();

  const lpUsdc = 10_000_000n * 10n ** 6n;
  await (await sys.usdc.mint(lp.address, lpUsdc)).wait();
  await (await sys.usdc.connect(lp).approve(sys.pool, lpUsdc)).wait();
  await (await sys.pool.connect(lp).deposit(lpUsdc, lp.address)).wait();
  await (await sys.usdc.mint(trader.address, 10n ** 15n)).wait();
  await (await sys.usdc.connect(trader).approve(sys.vault, MAX_UINT)).wait();

  const startBlock = await ethers.provider.getBlockNumber();
  const keeper = await Keeper.create(
    parseConfig(
      {
        network: "hardhat",
        rpcUrls: ["http://in-process"],
        chainId: 31337,
        dbPath: ":memory:",
        logLevel: "silent",
        minProfitUsd: "0",
        maxFeePerGasGwei: "500",
        priorityFeeGwei: "0.001",
        reorgDepth: 0,
        scanChunk: 500,
        gas: KEEPER_GAS,
      },
      () => "backtest",
      {},
    ),
    {
      rec: await recordOfLocalSystem(sys, { network: "hardhat", chainId: 31337, startBlock, deployer: deployer.address }),
      endpoints: [{ name: "in-process", provider: new Eip1193Provider(network.provider, 31337) }],
      signer: SIM_KEEPER,
      log: createLogger("silent"),
      // every keeper transaction one second after the block before it: the same figures on every run
      hooks: { beforeBroadcast: () => pin() },
    },
  );

  // The chain's clock: the path's first point at T0, an hour boundary a few hours ahead (the oracle samples σ on
  // an hourly grid of the feed's clock, so every run sees the same grid).
  const T0 = Math.floor(((await latest()) + 3 * 3600) / 3600 + 1) * 3600;
  // The oracle's state at T0 depends on T0 only, not on how long the deployment took: two hours before T0 the feed
  // is configured, the warm-up speed set and the volatility reset (σ and σ_mm at the floor from that second).
  // The real paths move up to ~21 % in an hour (35 % within an OHLC bar): a 50 % breaker, so a tripped breaker
  // does not hide the very lows a crash replay is about (the production feed config keeps its own).
  await pin(T0 - 7200);
  await (await sys.oracle.setFeed(sys.weth, { feed: sys.ethFeed, ...CRYPTO_FEED, maxJumpBps: 5000 })).wait();
  await pin();
  await (await sys.oracle.setVolParams(sys.weth, { ...tested, maxChangePerDay: wad("10") })).wait();
  await pin();
  await (await sys.oracle.resetVolatility(sys.weth)).wait();
  // The order fee pays the keeper's execution: the deployment's 0.5 USDC, or what 300k gas costs at this gas price
  // and the path's first ETH price (rounded up to a cent) when that is more — what a deployment on such a chain sets.
  const execUsdc = ceilDiv(300_000n * gasPrice * points[0].price * 10n ** 10n, WAD * 10n ** 16n) * 10n ** 4n;
  if (execUsdc > (await sys.engine.orderFee())) {
    await pin();
    await (await sys.engine.setOrderFee(execUsdc)).wait();
  }
  const keeperReward = (await sys.engine.riskParams()).keeperReward;
  const chainTime = (p: PathPoint) => T0 + (p.time - points[0].time);
  let round = (await sys.ethFeed.latestRoundData())[0];
  const published: number[] = [];
  const publish = async (p: PathPoint) => {
    const t = Math.max(chainTime(p), (await latest()) + 1);
    published.push(t);
    await pin(t);
    round += 1n;
    await (await pusher.pushAndPoke(sys.ethFeed, sys.oracle, sys.weth, round, p.price, t)).wait();
  };

  const tracked: Tracked[] = [];
  const byId = new Map<bigint, Tracked>();
  const iface = engineInterface();
  const engineAddress = (await sys.engine.getAddress()).toLowerCase();
  let stepIndex = 0;

  /** The receipt of a keeper transaction: its events booked to their accounts, its gas shared by those it acted on. */
  const record = (receipt: TransactionReceipt) => {
    const acted = new Set<Tracked>();
    const pending: AccountEvent[] = [];
    const fees = new Map<Tracked, bigint>();
    const reduced = new Set<Tracked>();
    const add = (t: Tracked, e: AccountEvent) => {
      t.events.push(e);
      pending.push(e);
    };
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== engineAddress) continue;
      const ev = iface.parseLog(log);
      if (!ev || ev.args.accountId === undefined) continue;
      const t = byId.get(ev.args.accountId as bigint);
      if (!t) continue;
      const base = { step: stepIndex, gas: Number(receipt.gasUsed), txAccounts: 0 };
      if (ev.name === "Rebalanced") {
        const a = ev.args;
        acted.add(t);
        const parts: [AccountEvent["kind"], bigint][] = [
          ["top-up", a.toppedUpUsd],
          ["reduce", a.reducedNotionalUsd],
          ["release", a.releasedUsd],
        ];
        let fee: bigint = a.feeUsd;
        t.keeperFees += fee;
        if (a.reducedNotionalUsd > 0n) reduced.add(t);
        for (const [kind, amount] of parts) {
          if (amount === 0n) continue;
          if (kind === "top-up") t.rebalances.topUp++;
          else if (kind === "reduce") t.rebalances.reduce++;
          else t.rebalances.release++;
          add(t, { ...base, kind, feeUsd: dec(fee), amountUsd: dec(amount), healthBefore: hdec(a.healthBefore), healthAfter: hdec(a.healthAfter) });
          fee = 0n; // the fee is charged once per rebalance: shown on its first part
        }
      } else if (ev.name === "PositionModified") {
        fees.set(t, (fees.get(t) ?? 0n) + (ev.args.fee as bigint));
      } else if (ev.name === "Liquidated") {
        const a = ev.args;
        acted.add(t);
        t.liquidations++;
        // LiquidationLogic charges the account the keeper reward and the penalty (part of which may end as bad debt)
        const charged = a.penalty + keeperReward;
        t.penalties += charged;
        add(t, { ...base, kind: "liquidation", feeUsd: dec(charged), amountUsd: dec(a.closedNotional), healthBefore: hdec(a.healthBefore), healthAfter: hdec(a.healthAfter) });
      } else if (ev.name === "BadDebt") {
        t.badDebt += ev.args.amountUsd;
      } else if (ev.name === "OrderCancelled") {
        t.openRefused = reasonName(sys.engine, ev.args.reason);
      } else if (ev.name === "OrderExecuted") {
        t.opened = true;
        t.entryPrice = ev.args.price;
        add(t, { ...base, kind: "open", feeUsd: dec(t.orderFee * USDC_SCALE), amountUsd: "0", healthBefore: null, healthAfter: null });
      }
    }
    // a reduction by rebalance pays the trading fee; the opening fill's (the same for every account) is not counted
    for (const [t, fee] of fees) if (reduced.has(t)) t.tradingFees += fee;
    for (const e of pending) e.txAccounts = Math.max(1, acted.size);
    // a batch's gas is shared equally by the accounts it acted on (units rounded down: display only); the gas in USD
    // at the transaction's price and the step's ETH price (the backtest's asset is ETH), rounded down
    const ethWad = points[stepIndex].price * 10n ** 10n;
    for (const t of acted) {
      const share = receipt.gasUsed / BigInt(acted.size);
      t.gas += Number(share);
      t.gasUsd += (share * receipt.gasPrice * ethWad) / WAD;
    }
  };

  const ids: bigint[] = [];
  let pool0 = { capital: 0n, insurance: 0n };
  const keeperCycles = async () => {
    for (let c = 0; c < MAX_CYCLES_PER_STEP; c++) {
      const report = await keeper.cycle();
      if (report.plan.actions.length === 0) return;
      for (const r of report.results) {
        if (!r.hash) continue;
        const receipt = await ethers.provider.getTransactionReceipt(r.hash);
        if (receipt) record(receipt);
      }
    }
  };

  try {
    for (let i = 0; i < points.length; i++) {
      stepIndex = i;
      await publish(points[i]);
      // health as the round left it, before the keeper acts (the events carry the health after each action)
      if (ids.length > 0) {
        const [healths, priced] = await sys.engine.healthBatch(ids);
        tracked.forEach((t, k) => t.health.push(!priced[k] || healths[k] === MAX_UINT ? null : healths[k]));
      }
      if (i === openStep) {
        // the deployment's tested σ speed from here on, then the population requests its orders
        await pin();
        await (await sys.oracle.setVolParams(sys.weth, tested)).wait();
        pool0 = { capital: await sys.pool.capital(), insurance: await sys.pool.insuranceBalance() };
        await openPopulation(sys, trader, pin, members, i, points[i].price, tracked, byId, ids);
      } else if (i > openStep) {
        await keeperCycles();
      }
      opts.progress?.(i + 1, points.length);
    }

    const orderFee = await sys.engine.orderFee();
    const accounts: AccountReport[] = [];
    const controls = new Map<number, Tracked>();
    for (const t of tracked) if (t.member.policy === null) controls.set(t.member.group, t);
    const wealthOf = new Map<Tracked, bigint>();
    let tradersUpnl = 0n;
    for (const t of tracked) {
      const st = await sys.engine.accountState(t.id);
      tradersUpnl += st.unrealisedPnl;
      const reserveLeft = (await sys.vault.reserveOf(t.id, sys.usdc)) * USDC_SCALE;
      // a control keeps the reserve idle, outside the protocol: it counts as cash
      const idle = t.member.policy === null ? t.member.reserveUsdc * USDC_SCALE : 0n;
      wealthOf.set(t, st.equity + reserveLeft + idle);
      accounts.push(accountReport(t, st.equity, reserveLeft + idle));
    }
    for (const [k, t] of tracked.entries()) {
      const control = controls.get(t.member.group);
      accounts[k].controlId = control ? control.id.toString() : null;
      accounts[k].wealthVsControlUsd = control ? dec(wealthOf.get(t)! - wealthOf.get(control)!) : "0";
    }
    const report: BacktestReport = {
      schema: BACKTEST_SCHEMA,
      scenario: opts.scenario,
      title: opts.title,
      command: opts.command,
      data: opts.data,
      seed: opts.population.seed,
      steps: { time: points.map((p) => p.time), price: points.map((p) => Number(p.price) / 1e8), openStep },
      accounts,
      groups: [],
      totals: {
        accounts: 0,
        liquidations: 0,
        rebalances: 0,
        keeperFeesUsd: "0",
        badDebtUsd: "0",
        gasUsed: 0,
        lpPnlUsd: dec(((await sys.pool.capital()) - pool0.capital) * USDC_SCALE - tradersUpnl),
        insuranceChangeUsd: dec(((await sys.pool.insuranceBalance()) - pool0.insurance) * USDC_SCALE),
        wallSeconds: 0,
      },
      findings: [],
      assumptions: [
        `Gas: every block's base fee is ${gweiText(gasPrice)} gwei; the keeper's profitability check charges the bench's measured gas (rebalance ${KEEPER_GAS.rebalance.toLocaleString("en-US")}, liquidation ${KEEPER_GAS.liquidate.toLocaleString("en-US")}).`,
        `Orders: the order fee is ${dec(orderFee * USDC_SCALE)} USDC; orders are requested after the warm-up's last round and filled at the next.`,
        `Oracle: the price breaker trips at 50 % (production 25 %) so a crash's lows are replayed; the first ${warmup / 3600} h warm the volatility up at the fastest speed the oracle accepts, then the deployment's speed applies.`,
        oiCap === MAJOR_MARKET.oiCapUsd
          ? `Market: the production ETH market (open-interest cap ${usd(oiCap, 0)} USD).`
          : `Market: the open-interest cap is raised from ${usd(MAJOR_MARKET.oiCapUsd, 0)} to ${usd(oiCap, 0)} USD to fit the population (the size term of the maintenance margin is smaller).`,
        "Owners never act during the replay (no deposits, withdrawals or closes): a policy account's only protection is its policy.",
      ],
    };
    summarise(report);
    await opts.inspect?.({ sys, ids, chainTime: (i) => published[i], keeper: SIM_KEEPER.address });
    report.totals.wallSeconds = Math.round((Date.now() - wall0) / 100) / 10;
    return report;
  } finally {
    await keeper.close();
  }
}

/** Accounts, deposits, policies, then one market order each, requested after the round at `price` (8 decimals). */
async function openPopulation(
  sys: LocalSystem,
  trader: Awaited<ReturnType<typeof ethers.getSigners>>[number],
  pin: () => Promise<void>,
  members: Member[],
  openStep: number,
  price: bigint,
  tracked: Tracked[],
  byId: Map<bigint, Tracked>,
  ids: bigint[],
) {
  const priceWad = price * 10n ** 10n;
  const orderFee = await sys.engine.orderFee();
  const now = BigInt((await ethers.provider.getBlock("latest"))!.timestamp);
  const usdc = await sys.usdc.getAddress();
  for (const m of members) {
    await pin();
    await (await sys.vault.connect(trader).createAccount()).wait();
    const id = await sys.vault.accountCount();
    await pin();
    await (await sys.vault.connect(trader).depositMargin(id, usdc, m.marginUsdc)).wait();
    // the order's fee is escrowed from the USDC reserve; a policy account also keeps its reserve there
    const reserve = orderFee + (m.policy ? m.reserveUsdc : 0n);
    await pin();
    await (await sys.vault.connect(trader).deposit(id, usdc, reserve)).wait();
    if (m.policy) {
      const p = m.policy;
      await pin();
      await (
        await sys.engine.connect(trader).setRebalancePolicy(id, {
          actions: p.actions,
          cooldown: 0,
          triggerRatio: p.trigger,
          targetRatio: p.target,
          releaseRatio: p.release,
          maxFeeUsd: p.maxFeeUsd,
          topUpAssets: [usdc],
        })
      ).wait();
    }
    // leverage × margin of notional at the round's price; any fill within ±50 % of it is accepted
    const size = (BigInt(Math.round(m.leverage * 10)) * m.marginUsdc * USDC_SCALE * WAD) / (10n * priceWad);
    const long = m.side === "long";
    await pin();
    // A request the engine refuses (e.g. BelowInitialMargin: the account cannot back what the order adds) leaves the
    // account flat; the report names the rule. Any other failure is the backtester's and stops it.
    let refused: string | null = null;
    try {
      await requestOrder(sys.engine, trader, {
        accountId: id,
        marketId: sys.ethMarket,
        sizeDelta: long ? size : -size,
        acceptablePrice: long ? (priceWad * 3n) / 2n : priceWad / 2n,
        deadline: now + ORDER_LIFETIME,
      });
    } catch (e) {
      const name = errorName(revertData(e));
      if (!REQUEST_REFUSALS.has(name)) throw e;
      refused = name;
    }
    const variant = m.policy ? m.policy.name : "control";
    const t: Tracked = {
      member: m,
      id,
      label: `${m.leverage}x ${m.side} ${variant}`,
      variant,
      opened: false,
      entryPrice: 0n,
      health: [],
      events: [],
      liquidations: 0,
      penalties: 0n,
      rebalances: { topUp: 0, reduce: 0, release: 0 },
      keeperFees: 0n,
      tradingFees: 0n,
      gas: 0,
      gasUsd: 0n,
      badDebt: 0n,
      orderFee,
      openRefused: refused,
    };
    // no account before the opening step, no position at it (steps 0..openStep)
    for (let k = 0; k <= openStep; k++) t.health.push(null);
    tracked.push(t);
    byId.set(id, t);
    ids.push(id);
  }
}

function accountReport(t: Tracked, equity: bigint, reserveLeft: bigint): AccountReport {
  const m = t.member;
  const healths = t.health.filter((h): h is bigint => h !== null);
  const min = healths.length ? healths.reduce((a, b) => (b < a ? b : a)) : null;
  return {
    id: t.id.toString(),
    label: t.label,
    leverage: m.leverage,
    side: m.side,
    variant: t.variant,
    policy: m.policy ? policyReport(m.policy) : null,
    startCapitalUsd: dec((m.marginUsdc + m.reserveUsdc + t.orderFee) * USDC_SCALE),
    marginUsd: dec(m.marginUsdc * USDC_SCALE),
    reserveUsd: dec(m.reserveUsdc * USDC_SCALE),
    opened: t.opened,
    openRefused: t.openRefused,
    entryPrice: dec(t.entryPrice),
    health: t.health.map(hdec),
    minHealth: hdec(min),
    events: t.events,
    liquidations: t.liquidations,
    penaltiesUsd: dec(t.penalties),
    rebalances: t.rebalances,
    keeperFeesUsd: dec(t.keeperFees),
    tradingFeesUsd: dec(t.tradingFees),
    gasUsed: t.gas,
    gasUsd: dec(t.gasUsd),
    badDebtUsd: dec(t.badDebt),
    finalEquityUsd: dec(equity),
    reserveLeftUsd: dec(reserveLeft),
    // the population never withdraws during a replay: what it owns is equity and reserve
    withdrawnUsd: "0",
    wealthUsd: dec(equity + reserveLeft),
    controlId: null,
    wealthVsControlUsd: "0",
  };
}

/** A health as a decimal string; null for none (no position: the engine's type(uint256).max). */
export function hdec(h: bigint | null): string | null {
  return h === null || h === MAX_UINT ? null : dec(h);
}
