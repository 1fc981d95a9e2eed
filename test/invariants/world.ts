/**
 * The invariant suite's world: one fixture (three trading accounts, two LPs, a keeper, a stranger and a crew of
 * just-in-time attackers), whole-system snapshots read in one call, transactions at pinned block times, and the
 * decoding of every revert and event.
 *
 * Time is explicit: every block is mined at `Model.now` (then `now` moves on by a second), so a sequence replays
 * to the same block times and the same results whatever the wall clock does. A step that must be compared before
 * and after at constant prices and time reads its "before" from the pending block (the block its transaction
 * will be mined in, same timestamp) and its "after" from that block.
 */
import { ethers, network } from "hardhat";
import { sqrtHorizon, type ChainState, type MarketTerms as MaintenanceTerms } from "../helpers/marginMath";
import type { PolicyIn } from "../helpers/rebalance";
import {
  Interface,
  type ContractTransactionResponse,
  type InterfaceAbi,
  type Result,
  type TransactionReceipt,
} from "ethers";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { CRYPTO_FEED, HAIRCUTS, ACTION, wad } from "../../deploy/params";
import { systemFixture, USDC, E18, E8, type SystemFixture } from "../helpers/fixtures";
import {
  LiquidityPool__factory,
  IMarginEngine__factory,
  MockAggregator__factory,
  MockERC20__factory,
  OracleRouter__factory,
  IRebalancer__factory,
  IVault__factory,
  type MockAggregator,
} from "../../typechain-types";
import { LENS_ADDRESS, lensCall, type RawCall, type RawResult } from "./lens";

export const WAD = 10n ** 18n;
/** Where the time goes (printed with FC_STATS=1). */
export const PROFILE = { snapshots: 0, snapshotMs: 0, txs: 0, txMs: 0, simulations: 0, simulationMs: 0 };
export const USDC_SCALE = 10n ** 12n;
export type Signer = SystemFixture["alice"];

// ============================================================================================ ABI and decoding

/** A function of a contract's own ABI (TypeChain), so a struct's layout is never restated here. */
const fn = (iface: Interface, name: string): string => iface.getFunction(name)!.format("full");
const ENGINE_ABI = IMarginEngine__factory.createInterface() as unknown as Interface;
const ORACLE_ABI = OracleRouter__factory.createInterface() as unknown as Interface;

/** Every read the snapshots make, in human-readable form (one interface for every target). */
const READS = new Interface([
  "function balanceOf(address) view returns (uint256)",
  "function totalTracked(address) view returns (uint256)",
  "function accountCount() view returns (uint256)",
  "function reserveOf(uint256,address) view returns (uint256)",
  "function marginBalances(uint256) view returns (uint256 mask, uint256[] amounts)",
  "function accountState(uint256) view returns (tuple(uint256 collateral,int256 settlement,int256 unrealisedPnl,int256 equity,uint256 notional,uint256 maintenanceMargin,uint256 initialMargin,uint256 health))",
  "function healthBatch(uint256[]) view returns (uint256[] healths, bool[] priced)",
  fn(ENGINE_ABI, "position"),
  "function rebalancePolicy(uint256) view returns (tuple(uint8 actions,uint32 cooldown,uint64 triggerRatio,uint64 targetRatio,uint64 releaseRatio,uint128 maxFeeUsd,address[] topUpAssets))",
  "function insuranceBalance() view returns (uint256)",
  "function poolBalance() view returns (uint256)",
  "function capital() view returns (uint256)",
  "function totalAssets() view returns (uint256)",
  "function mintAssets() view returns (uint256)",
  "function totalSupply() view returns (uint256)",
  "function maxRedeem(address) view returns (uint256)",
  "function lockedShares(address) view returns (uint256 shares, uint256 unlockAt)",
  "function previewDeposit(uint256) view returns (uint256)",
  "function previewRedeem(uint256) view returns (uint256)",
  "function holdPeriod() view returns (uint32)",
  "function lastRebalanceAt(uint256) view returns (uint256)",
  "function totalDebtUsd() view returns (uint256)",
  "function keeperRewardsOf(address) view returns (uint256)",
  "function totalKeeperRewards() view returns (uint256)",
  fn(ENGINE_ABI, "marketState"),
  "function tryPrice(address) view returns (bool ok, uint256 priceWad)",
  fn(ORACLE_ABI, "observation"),
  "function volatilities(address) view returns (uint256 target, uint256 maintenance)",
  "function rescueAvailable(uint256) view returns (bool)",
  "function liquidationFraction(uint256) view returns (uint256)",
  "function riskParams() view returns (tuple(uint64 liquidationTargetRatio,uint64 fullLiquidationHealth,uint64 liquidationPenalty,uint64 keeperPenaltyShare,uint128 keeperReward,uint128 dustNotional,uint64 collateralDiscount,uint32 volHorizon))",
  "function marketParams(uint256) view returns (tuple(address asset,uint64 baseMMR,uint64 volK,uint64 sizeK,uint64 maxMMR,uint64 imFactor,uint64 feeRate,uint64 oiCapFraction,uint64 maxFundingRate,uint64 imVolFloor,uint128 skewScale,uint128 oiCapUsd))",
  "function latestRoundData() view returns (uint80 roundId,int256 answer,uint256 startedAt,uint256 updatedAt,uint80 answeredInRound)",
  "function needsRebalance(uint256) view returns (bool needed, uint8 status, tuple(uint8 action,address[] assets,uint256[] amounts,uint256 reduceFraction,uint256 feeUsd,address keeper) plan)",
  // owner actions simulated through the Lens (an operator of every account), for INV_EXIT
  "function releaseMargin(uint256,address,uint256)",
  "function withdraw(uint256,address,uint256,address)",
  "function modifyPosition(uint256,uint256,int256,uint256)",
]);

const ABIS: InterfaceAbi[] = [
  IVault__factory.abi,
  IMarginEngine__factory.abi,
  LiquidityPool__factory.abi,
  OracleRouter__factory.abi,
  IRebalancer__factory.abi,
  MockERC20__factory.abi,
  MockAggregator__factory.abi,
  ["error Error(string)", "error Panic(uint256)"],
];
const IFACES = ABIS.map((a) => new Interface(a));

export interface Decoded {
  name: string;
  args: Result | unknown[];
  /** raw revert data (empty when none) */
  data: string;
}

/** Decodes revert data with every ABI of the system ("?0x…" when no ABI knows the selector). */
export function decodeRevert(data: string | undefined): Decoded {
  if (!data || data === "0x") return { name: "<no data>", args: [], data: data ?? "" };
  for (const iface of IFACES) {
    try {
      const e = iface.parseError(data);
      if (e) return { name: e.name, args: e.args, data };
    } catch {
      /* next */
    }
  }
  return { name: `?${data.slice(0, 10)}`, args: [], data };
}

/** The revert data of an ethers/Hardhat error, wherever it sits in the error object. */
function revertDataOf(e: unknown, depth = 0): string | undefined {
  if (!e || typeof e !== "object" || depth > 6) return undefined;
  const o = e as Record<string, unknown>;
  if (typeof o.data === "string" && o.data.startsWith("0x")) return o.data;
  for (const k of ["error", "info", "cause", "data", "payload"]) {
    const d = revertDataOf(o[k], depth + 1);
    if (d !== undefined) return d;
  }
  return undefined;
}

export interface Ev {
  name: string;
  args: Result;
  address: string;
}

/** Every log of the receipt that some ABI of the system knows, decoded. */
export function parseEvents(receipt: TransactionReceipt): Ev[] {
  const out: Ev[] = [];
  for (const log of receipt.logs) {
    for (const iface of IFACES) {
      let parsed;
      try {
        parsed = iface.parseLog({ topics: [...log.topics], data: log.data });
      } catch {
        parsed = null;
      }
      if (parsed) {
        out.push({ name: parsed.name, args: parsed.args, address: log.address });
        break;
      }
    }
  }
  return out;
}

/** Short display of an error: name(arg, arg). */
export function fmtErr(d: Decoded): string {
  const args = Array.from(d.args as unknown[]).map((a) => String(a));
  return `${d.name}(${args.join(", ")})`;
}

// ============================================================================================ the fixture

export const ASSET_NAMES = ["USDC", "WETH", "WBTC"] as const;
export const DECIMALS = [6n, 18n, 8n];
export const HAIRCUT = [HAIRCUTS.USDC, HAIRCUTS.WETH, HAIRCUTS.WBTC];
/** Token index (listing order) of each market's asset: ETH market → WETH (1), BTC market → WBTC (2). */
export const MARKET_TOKEN = [1, 2];
export const MARKET_NAMES = ["ETH", "BTC"];
export const N_JIT = 8;

export interface InvariantFixture extends SystemFixture {
  carol: Signer;
  stranger: Signer;
  /** Just-in-time LP attackers: fresh addresses with USDC and no shares. */
  jit: Signer[];
  /** Listing order: USDC, WETH, WBTC. */
  tokens: string[];
  accountOwners: Signer[];
}

/**
 * The system fixture (ETH 2,000, BTC 30,000, 1M USDC in the pool) plus three funded accounts with open positions
 * and rebalancing policies, funded actors with every approval, and block base fee 0 (the keeper fee is then its
 * flat part, and an eth_call plans exactly what the transaction will do).
 */
export async function invariantFixture(): Promise<InvariantFixture> {
  const f = await systemFixture();
  const signers = await ethers.getSigners();
  const carol = signers[5];
  const stranger = signers[6];
  const jit = signers.slice(10, 10 + N_JIT);
  const tokens = [await f.usdc.getAddress(), await f.weth.getAddress(), await f.wbtc.getAddress()];
  const vault = await f.vault.getAddress();
  const pool = await f.pool.getAddress();
  const engine = await f.engine.getAddress();
  const max = ethers.MaxUint256;
  const owners = [f.alice, f.bob, carol];

  for (const who of owners) {
    await f.usdc.mint(who.address, USDC(2_000_000));
    await f.weth.mint(who.address, E18(1_000));
    await f.wbtc.mint(who.address, E8(50));
    await f.usdc.connect(who).approve(vault, max);
    await f.weth.connect(who).approve(vault, max);
    await f.wbtc.connect(who).approve(vault, max);
  }
  await f.usdc.mint(f.lp.address, USDC(5_000_000));
  await f.usdc.connect(f.lp).approve(pool, max);
  for (const who of jit) {
    await f.usdc.mint(who.address, USDC(20_000_000));
    await f.usdc.connect(who).approve(pool, max);
  }
  await f.usdc.mint(f.keeper.address, USDC(1_000_000));
  await f.usdc.connect(f.keeper).approve(engine, max);
  await f.usdc.mint(stranger.address, USDC(10_000_000));
  await f.weth.mint(stranger.address, E18(100));
  await f.wbtc.mint(stranger.address, E8(10));
  for (const t of [f.usdc, f.weth, f.wbtc]) await t.connect(stranger).approve(vault, max);
  await f.usdc.connect(stranger).approve(pool, max);

  // Accounts 1 (alice), 2 (bob), 3 (carol): 20k, 2k and 1k USDC margin (bob and carol margin mostly in WETH and
  // WBTC, so losses run into debt and collateral sales); each a reserve of 10k USDC, 5 WETH, 0.2 WBTC.
  const usdcMargin = [USDC(20_000), USDC(2_000), USDC(1_000)];
  for (const [i, who] of owners.entries()) {
    await f.vault.connect(who).createAccount();
    const id = await f.vault.accountCount();
    await f.vault.connect(who).depositMargin(id, f.usdc, usdcMargin[i]);
    await f.vault.connect(who).deposit(id, f.usdc, USDC(10_000));
    await f.vault.connect(who).deposit(id, f.weth, E18(5));
    await f.vault.connect(who).deposit(id, f.wbtc, 20_000_000n);
    // The Lens address (never a contract on chain) simulates owner actions for INV_EXIT.
    await f.vault.connect(who).setOperator(id, LENS_ADDRESS, true);
  }
  await f.vault.connect(f.bob).depositMargin(2n, f.weth, E18(10));
  await f.vault.connect(carol).depositMargin(3n, f.wbtc, E8(1));
  // Positions: 1 long 40 ETH (80k); 2 short 2 BTC (60k); 3 long 1 BTC and short 20 ETH.
  await f.engine.connect(f.alice).modifyPosition(1n, f.ethMarket, E18(40), max);
  await f.engine.connect(f.bob).modifyPosition(2n, f.btcMarket, -E18(2), 0n);
  await f.engine.connect(carol).modifyPosition(3n, f.btcMarket, E18(1), max);
  await f.engine.connect(carol).modifyPosition(3n, f.ethMarket, -E18(20), 0n);
  await f.engine.connect(f.alice).setRebalancePolicy(1n, {
    actions: ACTION.ALL,
    cooldown: 0,
    triggerRatio: wad("1.5"),
    targetRatio: wad("2"),
    releaseRatio: wad("4"),
    maxFeeUsd: wad("20"),
    topUpAssets: [tokens[0], tokens[1]],
  });
  await f.engine.connect(f.bob).setRebalancePolicy(2n, {
    actions: ACTION.TOP_UP | ACTION.REDUCE,
    cooldown: 60,
    triggerRatio: wad("1.3"),
    targetRatio: wad("1.5"),
    releaseRatio: 0n,
    maxFeeUsd: wad("5"),
    topUpAssets: [tokens[1], tokens[0]],
  });
  await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x0"]);
  await network.provider.send("evm_mine", []);
  return { ...f, carol, stranger, jit, tokens, accountOwners: owners };
}

// ============================================================================================ snapshots

/** An account's valuation as `accountState` returns it (the mirrors' type). */
export type AccountState = ChainState;

/** A rebalancing policy as `rebalancePolicy` returns it (the shared test type). */
export type Policy = PolicyIn;

export interface Obs {
  price: bigint;
  updatedAt: bigint;
  breakerUntil: bigint;
  varianceRate: bigint;
  tripped: boolean;
}

/** The engine's risk parameters and market terms the rescue rule reads (constant in the invariant world: no step
 *  changes them). */
export interface Risk {
  liquidationTargetRatio: bigint;
  keeperReward: bigint;
  /** sqrt(volHorizon / year), WAD rounded up: the σ term of mmr */
  sqrtH: bigint;
  /** per market (ETH, BTC): what mmr reads, for mmNow = Σ N·mmr(max(σ, σ_mm)) + keeperReward (the maintenance
   *  margin at the current volatility, which a rescue must lift the account to the liquidation target of) */
  mmTerms: MaintenanceTerms[];
}

/** The market parameters the actions' IM estimate reads (constant in the invariant world: no step changes them). */
export interface MarketTerms {
  baseMMR: bigint;
  volK: bigint;
  sizeK: bigint;
  imFactor: bigint;
  /** IM's stress volatility: IM prices a position at no less than it */
  imVolFloor: bigint;
}

/** An account's equity and maintenance margin (accountState), read in light snapshots too: the rescue rule. */
export interface Valuation {
  equity: bigint;
  maintenanceMargin: bigint;
}

export interface Feed {
  roundId: bigint;
  answer: bigint;
  startedAt: bigint;
  updatedAt: bigint;
}

export interface AccountSnap {
  id: bigint;
  owner: string;
  reserve: bigint[];
  margin: bigint[];
  marginMask: bigint;
  /** bit m set iff a position in market m (from the sizes) */
  positionMask: bigint;
  /** per market */
  sizes: bigint[];
  entries: bigint[];
  entryFunding: bigint[];
  /** settlement balance S, followed through SettlementChanged events (known even when nothing can be priced) */
  settlement: bigint;
  /** rebalancing policy, followed through RebalancePolicySet events */
  policy: Policy;
  /** block time of the account's last applied rebalance (0: never), followed through RebalanceApplied events */
  lastRebalanceAt: number;
  /** equity and MM (accountState) in every snapshot, light or full; undefined when the account cannot be valued */
  valuation?: Valuation;
  /** the engine's `rescueAvailable(id)` (undefined when it reverts: an unpriced position market) */
  rescueView?: boolean;
  /** the engine's `liquidationFraction(id)` (undefined when it reverts) */
  liqFraction?: bigint;
  /** the engine's valuation: healthBatch in a light snapshot, accountState in a full one */
  priced: boolean;
  health?: bigint;
  /** full snapshots: accountState, or why it reverted */
  state?: AccountState;
  stateError?: Decoded;
}

export interface Snapshot {
  /** timestamp the reads ran at (the pending block's for a "before" snapshot) */
  ts: number;
  tag: "latest" | "pending";
  /** full: accountState of every account and the pool's valuations; light: healthBatch and balances */
  full: boolean;
  vaultBalance: bigint[];
  tracked: bigint[];
  accountCount: bigint;
  poolUsdc: bigint;
  insurance: bigint;
  totalSupply: bigint;
  /** the keeper's USDC: its balance plus the rewards the engine credited it and it has not claimed */
  keeperUsdc: bigint;
  /** Σ unclaimed keeper rewards: held by the pool, not LP capital */
  keeperRewards: bigint;
  /** per market (ETH, BTC): the oracle's view of its asset, the recorded observation, the feed's latest round */
  tryPrice: { ok: boolean; px: bigint }[];
  obs: Obs[];
  feeds: Feed[];
  /** per market: the oracle's (σ target, σ_mm), annualised WAD, read from the chain (the suite does not model σ) */
  vols: { target: bigint; maintenance: bigint }[];
  /** the engine's risk parameters (read once per run) */
  risk: Risk;
  /** the accounts' valuation, rescueAvailable and liquidationFraction were read (every full snapshot; the light
   *  "before" of a liquidation or a rebalance) */
  rescueRead: boolean;
  accounts: AccountSnap[];
  /** full snapshots (and light ones of LP steps) */
  capital?: bigint;
  totalAssets?: bigint;
  totalAssetsError?: Decoded;
  mintAssets?: bigint;
  holdPeriod?: bigint;
  totalDebtUsd?: bigint;
  /** full snapshots: each market's running state (funding, per-side open interest and aggregates) */
  markets?: MarketState[];
  lp?: { shares: bigint; maxRedeem: bigint; locked: bigint; unlockAt: bigint };
  /** light snapshots */
  healthBatchError?: Decoded;
  /** extra reads a step asked for, by key */
  extra: Record<string, { ok: boolean; value?: Result; error?: Decoded }>;
}

export interface MarketState {
  fundingIndex: bigint;
  lastFundingTime: bigint;
  longOI: bigint;
  shortOI: bigint;
  /** Σ size × (entryPrice − entryFunding) over the side */
  longEntryNetSum: bigint;
  shortEntryNetSum: bigint;
}

export interface Extra {
  key: string;
  target: string;
  fn: string;
  args: unknown[];
}

type Decode = "uint" | "bool" | "abi";

interface Pending {
  call: RawCall;
  fn: string;
  decode: Decode;
  set: (ok: boolean, value: Result | undefined, raw: RawResult) => void;
}

const fragments = new Map<string, ReturnType<Interface["getFunction"]>>();
const fragment = (fn: string) => {
  let f = fragments.get(fn);
  if (!f) fragments.set(fn, (f = READS.getFunction(fn)!));
  return f;
};
const big = (v: Result | undefined) => v![0] as bigint;

function pend(list: Pending[], target: string, fn: string, args: unknown[], set: Pending["set"], decode: Decode = "abi") {
  list.push({ call: { target, data: READS.encodeFunctionData(fragment(fn)!, args) }, fn, decode, set });
}

/**
 * The state the invariants look at, in one eth_call (views cost ~0.2 ms each, valuations ~2 ms in the
 * in-process EVM, so a light snapshot — the "before" of a step — reads healths through one healthBatch and skips
 * the pool's valuations; a full one — every "after" — reads accountState of every account and the pool).
 */
export async function snapshot(
  m: Model,
  w: World,
  tag: "latest" | "pending",
  ts: number,
  opts: { full: boolean; pool?: boolean; rescue?: boolean; extra?: Extra[] },
): Promise<Snapshot> {
  if (!opts.full) return lightSnapshot(m, w, tag, ts, opts);
  const f = w.f;
  const L: Pending[] = [];
  const s: Snapshot = {
    ts,
    tag,
    full: true,
    vaultBalance: [0n, 0n, 0n],
    tracked: [0n, 0n, 0n],
    accountCount: 0n,
    poolUsdc: 0n,
    insurance: 0n,
    totalSupply: 0n,
    keeperUsdc: 0n,
    keeperRewards: 0n,
    tryPrice: [],
    obs: [],
    feeds: [],
    vols: [],
    risk: m.risk,
    rescueRead: true,
    accounts: [],
    extra: {},
  };
  w.tokens.forEach((t, k) => {
    pend(L, t, "balanceOf", [w.addr.vault], (ok, v) => (s.vaultBalance[k] = big(v)), "uint");
    pend(L, w.addr.vault, "totalTracked", [t], (ok, v) => (s.tracked[k] = big(v)), "uint");
  });
  pend(L, w.addr.vault, "accountCount", [], (ok, v) => (s.accountCount = big(v)), "uint");
  pend(L, w.addr.engine, "poolBalance", [], (ok, v) => (s.poolUsdc = big(v)), "uint");
  pend(L, w.addr.pool, "insuranceBalance", [], (ok, v) => (s.insurance = big(v)), "uint");
  pend(L, w.addr.pool, "totalSupply", [], (ok, v) => (s.totalSupply = big(v)), "uint");
  pend(L, w.tokens[0], "balanceOf", [f.keeper.address], (ok, v) => (s.keeperUsdc += big(v)), "uint");
  pend(L, w.addr.engine, "keeperRewardsOf", [f.keeper.address], (ok, v) => (s.keeperUsdc += big(v)), "uint");
  pend(L, w.addr.engine, "totalKeeperRewards", [], (ok, v) => (s.keeperRewards = big(v)), "uint");
  pend(L, w.addr.pool, "capital", [], (ok, v) => (s.capital = ok ? big(v) : undefined), "uint");
  pend(L, w.addr.pool, "totalAssets", [], (ok, v, raw) => {
    if (ok) s.totalAssets = big(v);
    else s.totalAssetsError = decodeRevert(raw.data);
  }, "uint");
  pend(L, w.addr.pool, "mintAssets", [], (ok, v) => (s.mintAssets = ok ? big(v) : undefined), "uint");
  pend(L, w.addr.pool, "holdPeriod", [], (ok, v) => (s.holdPeriod = ok ? big(v) : undefined), "uint");
  pend(L, w.addr.engine, "totalDebtUsd", [], (ok, v) => (s.totalDebtUsd = ok ? big(v) : undefined), "uint");
  const markets: MarketState[] = [];
  for (let mk = 0; mk < 2; mk++) {
    pend(L, w.addr.engine, "marketState", [mk], (ok, v) => {
      if (!ok) return;
      const x = v![0];
      markets[mk] = {
        fundingIndex: x.fundingIndex,
        lastFundingTime: x.lastFundingTime,
        longOI: x.longOI,
        shortOI: x.shortOI,
        longEntryNetSum: x.longEntryNetSum,
        shortEntryNetSum: x.shortEntryNetSum,
      };
      if (markets.length === 2 && markets[0] && markets[1]) s.markets = markets;
    });
  }
  const lp = { shares: 0n, maxRedeem: 0n, locked: 0n, unlockAt: 0n };
  s.lp = lp;
  pend(L, w.addr.pool, "balanceOf", [f.lp.address], (ok, v) => (lp.shares = big(v)), "uint");
  pend(L, w.addr.pool, "lockedShares", [f.lp.address], (ok, v) => {
    if (ok) [lp.locked, lp.unlockAt] = [v![0], v![1]];
  });
  if (opts.pool) pend(L, w.addr.pool, "maxRedeem", [f.lp.address], (ok, v) => (lp.maxRedeem = ok ? big(v) : 0n), "uint");
  w.marketAssets.forEach((asset, mk) => {
    pend(L, w.addr.oracle, "tryPrice", [asset], (ok, v) => (s.tryPrice[mk] = { ok: v![0], px: v![1] }));
    pend(L, w.addr.oracle, "observation", [asset], (ok, v) => {
      const o = v![0];
      s.obs[mk] = { price: o.price, updatedAt: o.updatedAt, breakerUntil: o.breakerUntil, varianceRate: o.varianceRate, tripped: o.tripped };
    });
    pend(L, w.addr.oracle, "volatilities", [asset], (ok, v) => (s.vols[mk] = { target: v![0], maintenance: v![1] }));
    pend(L, w.feedAddrs[mk], "latestRoundData", [], (ok, v) => {
      s.feeds[mk] = { roundId: v![0], answer: v![1], startedAt: v![2], updatedAt: v![3] };
    });
  });
  w.accountIds.forEach((id, i) => {
    const a: AccountSnap = {
      id,
      owner: w.accountOwners[i].address,
      reserve: [0n, 0n, 0n],
      margin: [0n, 0n, 0n],
      marginMask: 0n,
      positionMask: 0n,
      sizes: [0n, 0n],
      entries: [0n, 0n],
      entryFunding: [0n, 0n],
      settlement: m.settlement[i],
      policy: m.policies[i],
      lastRebalanceAt: m.lastRebalanceAt[i] ?? 0,
      priced: false,
    };
    s.accounts.push(a);
    pend(L, w.addr.vault, "marginBalances", [id], (ok, v) => {
      a.marginMask = v![0];
      a.margin = [...(v![1] as bigint[])];
    });
    w.tokens.forEach((t, k) => pend(L, w.addr.vault, "reserveOf", [id, t], (ok, v) => (a.reserve[k] = big(v)), "uint"));
    for (let mk = 0; mk < 2; mk++) {
      pend(L, w.addr.engine, "position", [id, mk], (ok, v) => {
        a.sizes[mk] = v![0].size;
        a.entries[mk] = v![0].entryPrice;
        a.entryFunding[mk] = v![0].entryFunding;
        if (a.sizes[mk] !== 0n) a.positionMask |= 1n << BigInt(mk);
      });
    }
    pend(L, w.addr.engine, "accountState", [id], (ok, v, raw) => {
      if (!ok) {
        a.stateError = decodeRevert(raw.data);
        return;
      }
      const st = v![0];
      a.state = {
        collateral: st.collateral,
        settlement: st.settlement,
        unrealisedPnl: st.unrealisedPnl,
        equity: st.equity,
        notional: st.notional,
        maintenanceMargin: st.maintenanceMargin,
        initialMargin: st.initialMargin,
        health: st.health,
      };
      a.priced = true;
      a.health = st.health;
      a.valuation = { equity: st.equity, maintenanceMargin: st.maintenanceMargin };
    });
    pendRescue(L, w, a);
  });
  return run(L, s, tag, opts.extra);
}

/**
 * The "before" of a step, read at the pending block. Balances, positions, observations and feed rounds cannot
 * change without a transaction, so they are the last "after" (`m.snap`); only what moves with time is read:
 * healths (funding) through one healthBatch, the oracle's views (staleness), and — for LP steps — the pool's
 * valuations and locks.
 */
async function lightSnapshot(m: Model, w: World, tag: "latest" | "pending", ts: number, opts: { pool?: boolean; rescue?: boolean; extra?: Extra[] }): Promise<Snapshot> {
  const last = m.snap;
  const s: Snapshot = {
    ...last,
    ts,
    tag,
    full: false,
    rescueRead: opts.rescue === true,
    tryPrice: [],
    accounts: last.accounts.map((a, i) => ({
      ...a,
      policy: m.policies[i],
      lastRebalanceAt: m.lastRebalanceAt[i] ?? 0,
      priced: false,
      health: undefined,
      state: undefined,
      stateError: undefined,
      valuation: undefined,
      rescueView: undefined,
      liqFraction: undefined,
    })),
    capital: undefined,
    totalAssets: undefined,
    totalAssetsError: undefined,
    mintAssets: undefined,
    totalDebtUsd: undefined,
    lp: undefined,
    healthBatchError: undefined,
    extra: {},
  };
  const L: Pending[] = [];
  s.vols = [];
  w.marketAssets.forEach((asset, mk) => {
    pend(L, w.addr.oracle, "tryPrice", [asset], (ok, v) => (s.tryPrice[mk] = { ok: v![0], px: v![1] }));
    pend(L, w.addr.oracle, "volatilities", [asset], (ok, v) => (s.vols[mk] = { target: v![0], maintenance: v![1] }));
  });
  pend(L, w.addr.engine, "healthBatch", [w.accountIds], (ok, v, raw) => {
    if (!ok) {
      s.healthBatchError = decodeRevert(raw.data);
      return;
    }
    s.accounts.forEach((a, i) => {
      a.priced = v![1][i];
      if (a.priced) a.health = v![0][i];
    });
  });
  if (opts.rescue) w.accountIds.forEach((id, i) => {
    const a = s.accounts[i];
    pend(L, w.addr.engine, "accountState", [id], (ok, v) => {
      if (ok) a.valuation = { equity: v![0].equity, maintenanceMargin: v![0].maintenanceMargin };
    });
    pendRescue(L, w, a);
  });
  if (opts.pool) {
    const lp = { ...last.lp!, maxRedeem: 0n, locked: 0n, unlockAt: 0n };
    s.lp = lp;
    s.capital = last.capital;
    pend(L, w.addr.pool, "totalAssets", [], (ok, v, raw) => {
      if (ok) s.totalAssets = big(v);
      else s.totalAssetsError = decodeRevert(raw.data);
    }, "uint");
    pend(L, w.addr.pool, "mintAssets", [], (ok, v) => (s.mintAssets = ok ? big(v) : undefined), "uint");
    pend(L, w.addr.pool, "lockedShares", [w.f.lp.address], (ok, v) => {
      if (ok) [lp.locked, lp.unlockAt] = [v![0], v![1]];
    });
    pend(L, w.addr.pool, "maxRedeem", [w.f.lp.address], (ok, v) => (lp.maxRedeem = ok ? big(v) : 0n), "uint");
  }
  return run(L, s, tag, opts.extra);
}

/** The engine's rescue view and liquidation fraction of an account (both revert when it cannot be valued). */
function pendRescue(L: Pending[], w: World, a: AccountSnap): void {
  pend(L, w.addr.engine, "rescueAvailable", [a.id], (ok, v) => (a.rescueView = ok ? (v![0] as boolean) : undefined));
  pend(L, w.addr.engine, "liquidationFraction", [a.id], (ok, v) => (a.liqFraction = ok ? big(v) : undefined), "uint");
}

/** Reads the pending calls (and the extras) in one Lens call and decodes them into `s`. */
async function run(L: Pending[], s: Snapshot, tag: "latest" | "pending", extra: Extra[] = []): Promise<Snapshot> {
  for (const x of extra) {
    pend(L, x.target, x.fn, x.args, (ok, v, raw) => {
      s.extra[x.key] = ok ? { ok, value: v } : { ok, error: decodeRevert(raw.data) };
    });
  }
  const t0 = Date.now();
  const results = await lensCall(ethers.provider, L.map((p) => p.call), tag);
  results.forEach((r, i) => {
    const p = L[i];
    let value: Result | undefined;
    if (r.ok) {
      if (p.decode === "uint") value = [BigInt(r.data.slice(0, 66))] as unknown as Result;
      else {
        try {
          value = READS.decodeFunctionResult(fragment(p.fn)!, r.data);
        } catch {
          // an older contract without this function, or another return shape: a failed read
          p.set(false, undefined, { ok: false, data: "0x" });
          return;
        }
      }
    }
    p.set(r.ok, value, r);
  });
  PROFILE.snapshots += 1;
  PROFILE.snapshotMs += Date.now() - t0;
  return s;
}

/** Runs owner actions through the Lens (an operator of every account) on a copy of the latest state. */
export async function simulate(calls: { target: string; fn: string; args: unknown[] }[]): Promise<(Decoded | undefined)[]> {
  const t0 = Date.now();
  PROFILE.simulations += 1;
  const raw = await lensCall(
    ethers.provider,
    calls.map((c) => ({ target: c.target, data: READS.encodeFunctionData(fragment(c.fn)!, c.args) })),
    "latest",
  );
  PROFILE.simulationMs += Date.now() - t0;
  return raw.map((r) => (r.ok ? undefined : decodeRevert(r.data)));
}

// ============================================================================================ world and model

export interface World {
  f: InvariantFixture;
  addr: { vault: string; pool: string; engine: string; oracle: string; rebalancer: string };
  tokens: string[];
  marketAssets: string[];
  feeds: MockAggregator[];
  feedAddrs: string[];
  accountIds: bigint[];
  accountOwners: Signer[];
  /** when set, every step's record is appended (the fixed attack sequences look at what happened) */
  log?: unknown[];
}

/** What the sequence knows beyond the chain: time, the latest snapshot, and bookkeeping for the attacks. */
export interface Model {
  /** timestamp of the next block */
  now: number;
  /** the latest state (as of the last mined block) */
  snap: Snapshot;
  /** JIT attackers used so far in this sequence */
  jitUsed: number;
  /** steps run, for messages */
  step: number;
  /** each account's settlement balance, followed through SettlementChanged events */
  settlement: bigint[];
  /** each account's rebalancing policy, followed through RebalancePolicySet events */
  policies: Policy[];
  /** each account's last applied rebalance (block time), followed through RebalanceApplied events */
  lastRebalanceAt: number[];
  /** the engine's risk parameters, read once per run */
  risk: Risk;
  /** per market (ETH, BTC): the parameters the IM estimate reads, read once per run */
  markets: MarketTerms[];
  /** the timestamp evm_setNextBlockTimestamp was last given */
  pinned?: number;
}

function toPolicy(p: Result): Policy {
  return {
    actions: Number(p.actions),
    cooldown: Number(p.cooldown),
    triggerRatio: p.triggerRatio,
    targetRatio: p.targetRatio,
    releaseRatio: p.releaseRatio,
    maxFeeUsd: p.maxFeeUsd,
    topUpAssets: [...p.topUpAssets],
  };
}

/** Follows what the engine reports by event and has no cheap getter for: settlement balances and policies. */
function follow(m: Model, events: Ev[], ts: number): void {
  for (const e of events) {
    if (e.name === "RebalanceApplied") m.lastRebalanceAt[Number(e.args.accountId) - 1] = ts;
    if (e.name === "SettlementChanged") m.settlement[Number(e.args.accountId) - 1] = e.args.settlement;
    if (e.name === "RebalancePolicySet") m.policies[Number(e.args.accountId) - 1] = toPolicy(e.args.policy);
  }
}

let worldCache: World | undefined;

/** Fresh chain (the fixture's snapshot) and a model read from it. */
export async function freshRun(): Promise<{ model: Model; real: World }> {
  const f = await loadFixture(invariantFixture);
  if (!worldCache || worldCache.f.vault !== f.vault) {
    worldCache = {
      f,
      addr: {
        vault: await f.vault.getAddress(),
        pool: await f.pool.getAddress(),
        engine: await f.engine.getAddress(),
        oracle: await f.oracle.getAddress(),
        rebalancer: await f.rebalancer.getAddress(),
      },
      tokens: f.tokens,
      marketAssets: [f.tokens[1], f.tokens[2]],
      feeds: [f.ethFeed, f.btcFeed],
      feedAddrs: [await f.ethFeed.getAddress(), await f.btcFeed.getAddress()],
      accountIds: [1n, 2n, 3n],
      accountOwners: f.accountOwners,
    };
  }
  const w = worldCache;
  const block = await ethers.provider.getBlock("latest");
  const ts = block!.timestamp;
  const model: Model = {
    now: ts + 1,
    snap: undefined as unknown as Snapshot,
    jitUsed: 0,
    step: 0,
    settlement: [],
    policies: [],
    lastRebalanceAt: [],
    risk: { liquidationTargetRatio: 0n, keeperReward: 0n, sqrtH: 0n, mmTerms: [] },
    markets: [],
  };
  const first = await snapshot(model, w, "latest", ts, {
    full: true,
    extra: [
      ...w.accountIds.map((id) => ({ key: `policy${id}`, target: w.addr.engine, fn: "rebalancePolicy", args: [id] })),
      ...w.accountIds.map((id) => ({ key: `last${id}`, target: w.addr.engine, fn: "lastRebalanceAt", args: [id] })),
      { key: "risk", target: w.addr.engine, fn: "riskParams", args: [] },
      ...[0, 1].map((mk) => ({ key: `market${mk}`, target: w.addr.engine, fn: "marketParams", args: [mk] })),
    ],
  });
  model.settlement = first.accounts.map((a) => a.state!.settlement);
  model.policies = w.accountIds.map((id) => toPolicy(first.extra[`policy${id}`].value![0]));
  model.lastRebalanceAt = w.accountIds.map((id) => Number(first.extra[`last${id}`].value![0]));
  const risk = first.extra.risk.value![0];
  model.risk = {
    liquidationTargetRatio: risk.liquidationTargetRatio,
    keeperReward: risk.keeperReward,
    sqrtH: sqrtHorizon(risk.volHorizon),
    mmTerms: [0, 1].map((mk) => {
      const p = first.extra[`market${mk}`].value![0];
      return { baseMMR: p.baseMMR, volK: p.volK, sizeK: p.sizeK, maxMMR: p.maxMMR, imFactor: p.imFactor, oiCapUsd: p.oiCapUsd, imVolFloor: p.imVolFloor };
    }),
  };
  model.markets = [0, 1].map((mk) => {
    const p = first.extra[`market${mk}`].value![0];
    return { baseMMR: p.baseMMR, volK: p.volK, sizeK: p.sizeK, imFactor: p.imFactor, imVolFloor: p.imVolFloor };
  });
  model.snap = await snapshot(model, w, "latest", ts, { full: true });
  return { model, real: w };
}

// ============================================================================================ transactions

export type Outcome =
  | { ok: true; receipt: TransactionReceipt; events: Ev[]; ts: number }
  | { ok: false; error: Decoded };

/** The next block is mined at `m.now` (once per timestamp: a reverted call mines nothing and keeps the pin). */
export async function pinNextBlock(m: Model): Promise<void> {
  if (m.pinned === m.now) return;
  await network.provider.send("evm_setNextBlockTimestamp", [m.now]);
  m.pinned = m.now;
}

/** One transaction mined at `m.now` (automine), or the error it reverts with (nothing mined). */
export async function sendTx(m: Model, fn: () => Promise<ContractTransactionResponse>): Promise<Outcome> {
  const t0 = Date.now();
  try {
    return await sendTxTimed(m, fn);
  } finally {
    PROFILE.txs += 1;
    PROFILE.txMs += Date.now() - t0;
  }
}

async function sendTxTimed(m: Model, fn: () => Promise<ContractTransactionResponse>): Promise<Outcome> {
  await pinNextBlock(m);
  try {
    const tx = await fn();
    const receipt = await tx.wait();
    const ts = m.now;
    m.now += 1;
    const events = parseEvents(receipt!);
    follow(m, events, ts);
    return { ok: true, receipt: receipt!, events, ts };
  } catch (e) {
    // ethers estimates gas first, so a reverting call mines nothing; if one ever did, its block took m.now
    if ((await ethers.provider.getBlock("latest"))!.timestamp === m.now) m.now += 1;
    const data = revertDataOf(e);
    if (data === undefined) throw e; // not a revert: a harness problem, never a finding
    return { ok: false, error: decodeRevert(data) };
  }
}

/** Several transactions in one block at `m.now` (a flash loan's view of the chain). Returns their receipts. */
export async function sendBundle(
  m: Model,
  fns: (() => Promise<ContractTransactionResponse>)[],
): Promise<{ receipts: TransactionReceipt[]; events: Ev[][]; ts: number }> {
  await network.provider.send("evm_setAutomine", [false]);
  let hashes: string[] = [];
  try {
    for (const fn of fns) hashes.push((await fn()).hash);
    await network.provider.send("evm_mine", [m.now]);
  } finally {
    await network.provider.send("evm_setAutomine", [true]);
  }
  const ts = m.now;
  m.now += 1;
  const receipts = await Promise.all(hashes.map((h) => ethers.provider.getTransactionReceipt(h)));
  hashes = [];
  const events = receipts.map((r) => parseEvents(r!));
  for (const e of events) follow(m, e, ts);
  return { receipts: receipts.map((r) => r!), events, ts };
}

/** Leaves the chain as other test files expect it: any pinned timestamp used up by an empty block, automine on. */
export async function releaseChain(): Promise<void> {
  await network.provider.send("evm_setAutomine", [true]);
  await network.provider.send("evm_mine", []);
}

/** Mines an empty block `dt` seconds after the last one. */
export async function passTime(m: Model, dt: number): Promise<void> {
  m.now += dt - 1;
  await network.provider.send("evm_mine", [m.now]);
  m.now += 1;
}

// ============================================================================================ small helpers

export const fmtUsd = (wadUsd: bigint) => {
  const neg = wadUsd < 0n;
  const v = neg ? -wadUsd : wadUsd;
  const whole = v / WAD;
  const frac = ((v % WAD) * 100n) / WAD;
  return `${neg ? "-" : ""}${whole.toLocaleString("en-US")}.${frac.toString().padStart(2, "0")}`;
};
export const fmtWad = (x: bigint, digits = 4) => {
  if (x >= 2n ** 255n) return "max";
  const neg = x < 0n;
  const v = neg ? -x : x;
  const s = (v / WAD).toString() + "." + ((v % WAD) + WAD).toString().slice(1, 1 + digits);
  return (neg ? "-" : "") + s;
};

export { CRYPTO_FEED };
