/**
 * The seven promises (README "Promises and the tests that prove them") as named invariants. Each is a function of one step's record (the state just
 * before the step, read from the block the step was mined in, and the state after it) and throws a Violation
 * naming itself when the promise is broken. `checkAll` runs all seven after every step.
 */
import { MAJOR_MARKET } from "../../deploy/params";
import { mmr, mulDivUp } from "../helpers/marginMath";
import {
  CRYPTO_FEED,
  DECIMALS,
  HAIRCUT,
  MARKET_NAMES,
  MARKET_TOKEN,
  USDC_SCALE,
  WAD,
  fmtErr,
  fmtUsd,
  fmtWad,
  type AccountSnap,
  type Decoded,
  type Ev,
  type Feed,
  type MarketState,
  type Obs,
  type Snapshot,
  type World,
} from "./world";

export class Violation extends Error {
  constructor(
    readonly invariant: string,
    message: string,
  ) {
    super(`${invariant}: ${message}`);
    this.name = "Violation";
  }
}

export function fail(invariant: string, message: string): never {
  throw new Violation(invariant, message);
}

// ============================================================================================ the step record

export const STATUS = ["Ready", "NotOptedIn", "Cooldown", "InBand", "Liquidatable", "OracleUnhealthy", "NoAction"];
export const RELEASE = 4;
export const REDUCE = 2;
export const TOP_UP = 1;
/** How far below target a RELEASE may leave health (Constants.sol RELEASE_HEALTH_OFFSET). */
export const RELEASE_HEALTH_OFFSET = 10n ** 16n;

export type Kind =
  | "owner" // an owner's (or operator's) own action on its account
  | "stranger" // someone else's action on an account (margin deposit, settle)
  | "lp" // LP deposit / redeem
  | "jit" // deposit → one action → redeem in one block
  | "liquidate"
  | "buy"
  | "rebalance"
  | "batch"
  | "price" // a feed round changes
  | "time" // an empty block later
  | "poke"
  | "donation"
  | "governance";

export interface StepRecord {
  label: string;
  kind: Kind;
  /** state just before the step, at the timestamp of the step's (first) block */
  pre: Snapshot;
  /** state after the step (== pre's chain state when nothing was mined) */
  post: Snapshot;
  /** a block with a successful transaction was mined */
  mined: boolean;
  /** every successful transaction's events, with its block time */
  txs: { ts: number; events: Ev[] }[];
  /** the single transaction's revert, if it reverted */
  error?: Decoded;
  /** accounts whose owner acted (only they may lose health to the step) */
  ownerActed?: bigint[];
  /** accounts someone else acted on (a stranger's margin deposit or settle) */
  touched?: bigint[];
  liquidated?: bigint;
  bought?: { id: bigint; token: number; repay: bigint };
  /** the account a stranger's `settle` settled (the pool keeps the sub-unit overshoot of rounding the debt up) */
  settled?: bigint;
  rebalance?: { ids: bigint[]; single: boolean; needs: Map<bigint, number> };
  lpDeposit?: { assets: bigint; previewShares: bigint; minted?: bigint; redeemValueAfter?: bigint };
  lpRedeem?: { shares: bigint; previewAssets: bigint; received?: bigint };
  jit?: {
    attacker: string;
    assets: bigint;
    minted: bigint;
    usdcBefore: bigint;
    usdcAfter: bigint;
    redeemed: boolean;
    redeemValueAfter?: bigint;
    constantPrice: boolean;
    inner: string;
  };
  roundTrip?: { id: bigint; fees: bigint; equityBefore: bigint };
  /** INV_EXIT: results of the owner actions simulated on the state after the step */
  exitSims?: { what: string; mustSucceed: boolean; error?: Decoded }[];
}

// ============================================================================================ oracle model

export interface ModelPrice {
  ok: boolean;
  px: bigint;
  why: string;
}

/**
 * What the oracle may serve for a feed round at `now`, given the recorded observation: the rules of
 * IOracleRouter written out independently (fresh, in bounds, never older than the record, and any changed
 * answer — newer round or same `updatedAt` — checked against the recorded price by the breaker).
 */
export function modelPrice(feed: Feed, obs: Obs, now: number): ModelPrice {
  const bad = (why: string) => ({ ok: false, px: 0n, why });
  if (feed.answer <= 0n) return bad("non-positive answer");
  if (feed.updatedAt === 0n) return bad("no updatedAt");
  if (feed.updatedAt > BigInt(now)) return bad("updatedAt in the future");
  if (BigInt(now) - feed.updatedAt > BigInt(CRYPTO_FEED.heartbeat)) return bad("stale");
  const px = feed.answer * 10n ** 10n;
  if (px <= CRYPTO_FEED.minPrice || px >= CRYPTO_FEED.maxPrice) return bad("out of bounds");
  if (feed.updatedAt < obs.updatedAt) return bad("updatedAt went back");
  let tripped = obs.tripped;
  const isNew = feed.updatedAt > obs.updatedAt || px !== obs.price;
  if (isNew && obs.updatedAt !== 0n) {
    const move = px > obs.price ? px - obs.price : obs.price - px;
    const jumpBps = (move * 10_000n + obs.price - 1n) / obs.price;
    if (jumpBps > BigInt(CRYPTO_FEED.maxJumpBps)) tripped = true;
    else if (obs.tripped && feed.updatedAt >= obs.breakerUntil) tripped = false;
  }
  return tripped ? bad("breaker tripped") : { ok: true, px, why: "" };
}

export const marketPrice = (s: Snapshot, m: number, now = s.ts) => modelPrice(s.feeds[m], s.obs[m], now);

/** Price of listed token k (USDC is 1): the collateral door, 0 when invalid. */
function tokenPrice(s: Snapshot, k: number): bigint {
  if (k === 0) return WAD;
  const p = marketPrice(s, MARKET_TOKEN.indexOf(k));
  return p.ok ? p.px : 0n;
}

/** Listed token addresses, lower case (USDC, WETH, WBTC), set once per world. */
let tokenAddrs: string[] = [];
export function setTokenAddresses(w: World) {
  tokenAddrs = w.tokens.map((t) => t.toLowerCase());
}

// ============================================================================================ rescue model

const ceilWad = (x: bigint, y: bigint) => (x * y + WAD - 1n) / WAD;

/**
 * The maintenance margin at the current volatility (README "Rescue below 1", "Liquidation"): Σ ⌈N·mmr(max(σ, σ_mm))⌉
 * + keeperReward over the account's positions (N = ⌈|size| × price⌉), from the snapshot's prices and the oracle's
 * (σ, σ_mm) — what a liquidation restores its target against, and so what a rescue pre-empting it must. Undefined
 * when a position's market has no valid price.
 */
export function mmNowModel(s: Snapshot, a: AccountSnap): bigint | undefined {
  const open = openMarkets(a);
  let mm = 0n;
  for (const m of open) {
    const p = marketPrice(s, m);
    if (!p.ok) return undefined;
    const size = a.sizes[m] < 0n ? -a.sizes[m] : a.sizes[m];
    const n = mulDivUp(size, p.px, WAD);
    const v = s.vols[m];
    mm += mulDivUp(n, mmr(s.risk.mmTerms[m], n, v.target > v.maintenance ? v.target : v.maintenance, s.risk.sqrtH), WAD);
  }
  return open.length === 0 ? 0n : mm + s.risk.keeperReward;
}

/**
 * The rescue rule (README "Rescue below 1") written out independently from the snapshot: below health 1, the
 * account's own reserve has priority over a liquidation when its policy allows TOP_UP, pays at least the flat keeper reward (maxFeeUsd >= keeperReward), is past its cooldown
 * (`rebalanceReadyAt`: last + cooldown, at least one second), and
 * E − maxFeeUsd − one USDC unit (the settle's rounding) + Σ reserve × price × haircut (policy assets with a valid
 * price, each rounded down) >= liquidationTargetRatio × mmNow (rounded up), mmNow the maintenance margin at the
 * current volatility (`mmNowModel`): the rescue is measured like the liquidation it pre-empts. Undefined when the
 * account cannot be valued.
 */
export function rescueModel(s: Snapshot, a: AccountSnap): boolean | undefined {
  if (!a.priced || a.health === undefined || !a.valuation) return undefined;
  if (a.health >= WAD) return false;
  const p = a.policy;
  if ((p.actions & TOP_UP) === 0 || p.maxFeeUsd < s.risk.keeperReward) return false;
  const readyAt = a.lastRebalanceAt === 0 ? 0 : a.lastRebalanceAt + (p.cooldown === 0 ? 1 : p.cooldown);
  if (s.ts < readyAt) return false;
  const mmNow = mmNowModel(s, a);
  if (mmNow === undefined) return undefined;
  let lifted = a.valuation.equity - p.maxFeeUsd - USDC_SCALE;
  for (const asset of p.topUpAssets) {
    const k = tokenAddrs.indexOf(asset.toLowerCase());
    if (k < 0) return fail("INV_LIQUIDATION", `account ${a.id}'s policy tops up from an unlisted asset ${asset}`);
    lifted += (((a.reserve[k] * tokenPrice(s, k)) / 10n ** DECIMALS[k]) * HAIRCUT[k]) / WAD;
  }
  return lifted >= ceilWad(mmNow, s.risk.liquidationTargetRatio);
}

/** An `OracleUnhealthy(asset)` is legitimate only for the asset of a market where the account has a position and
 *  which has no valid price. */
export function blamesUnpricedMarket(err: Decoded, s: Snapshot, a: AccountSnap): boolean {
  const asset = String(err.args[0]).toLowerCase();
  return openMarkets(a).some((m) => tokenAddrs[MARKET_TOKEN[m]] === asset && !marketPrice(s, m).ok);
}

/** Markets (0 ETH, 1 BTC) where the account has a position. */
export const openMarkets = (a: AccountSnap) => [0, 1].filter((m) => a.sizes[m] !== 0n);

/** True when every market of the account's positions has a valid price. */
export const positionsPriced = (s: Snapshot, a: AccountSnap) => openMarkets(a).every((m) => marketPrice(s, m).ok);

const label = (r: StepRecord) => `after "${r.label}"`;
const accountName = (id: bigint) => `account ${id}`;

// ============================================================================================ 1. solvency

/** Every token's balance in the engine covers Σ reserves + Σ margins (+ the pool's balance for USDC, all ==
 *  totalTracked); the pool's USDC covers its
 *  insurance fund; no account is left with debt and nothing behind it (bad debt is written off at once). And the
 *  books behind those figures agree: margin masks with margins, each market side's open interest and aggregates
 *  with its positions, totalDebtUsd with the accounts' debts, every account's settlement with its
 *  SettlementChanged events (the suite follows S through them, so it knows every debt even when nothing can be
 *  priced); the redemption valuation never counts a receivable and never exceeds the mint valuation. */
export function INV_SOLVENCY(r: StepRecord): void {
  const s = r.post;
  const I = "INV_SOLVENCY";
  if (s.accountCount !== BigInt(s.accounts.length)) fail(I, `${label(r)}: ${s.accountCount} accounts, expected ${s.accounts.length}`);
  for (let k = 0; k < 3; k++) {
    // The engine holds the pool's USDC too (token 0): tracked = Σ reserves + margins (+ the pool's balance).
    const sum = s.accounts.reduce((acc, a) => acc + a.reserve[k] + a.margin[k], 0n) + (k === 0 ? s.poolUsdc : 0n);
    if (s.tracked[k] !== sum) fail(I, `${label(r)}: totalTracked(token ${k}) = ${s.tracked[k]} but Σ reserves + margins${k === 0 ? " + pool" : ""} = ${sum}`);
    if (s.vaultBalance[k] < s.tracked[k]) {
      fail(I, `${label(r)}: vault holds ${s.vaultBalance[k]} of token ${k} but owes ${s.tracked[k]}`);
    }
  }
  for (const a of s.accounts) {
    for (let k = 0; k < 3; k++) {
      const bit = (a.marginMask >> BigInt(k)) & 1n;
      if ((bit === 1n) !== (a.margin[k] > 0n)) fail(I, `${label(r)}: ${accountName(a.id)} margin mask ${a.marginMask} disagrees with margin ${a.margin}`);
    }
    if (a.state && a.state.settlement !== a.settlement) {
      fail(I, `${label(r)}: ${accountName(a.id)} settlement ${a.state.settlement} differs from its SettlementChanged events (${a.settlement})`);
    }
    if (a.settlement < 0n && a.positionMask === 0n && a.marginMask === 0n) {
      fail(I, `${label(r)}: ${accountName(a.id)} keeps debt ${fmtUsd(a.settlement)} with no position and no margin (bad debt not written off)`);
    }
  }
  if (s.markets) {
    for (let m = 0; m < 2; m++) {
      const st = s.markets[m];
      for (const long of [true, false]) {
        const side = s.accounts.filter((a) => (long ? a.sizes[m] > 0n : a.sizes[m] < 0n));
        const oi = side.reduce((x, a) => x + (long ? a.sizes[m] : -a.sizes[m]), 0n);
        // entries and entryFunding come from each position's view (entryFunding = entryPrice − the stored entryNet)
        const net = side.reduce((x, a) => x + a.sizes[m] * (a.entries[m] - a.entryFunding[m]), 0n);
        const [oi1, net1] = long ? [st.longOI, st.longEntryNetSum] : [st.shortOI, st.shortEntryNetSum];
        if (oi !== oi1 || net !== net1) {
          fail(I, `${label(r)}: ${MARKET_NAMES[m]} ${long ? "long" : "short"} aggregates (OI ${oi1}, Σ size·(entry − F_entry) ${net1}) disagree with the positions (${oi}, ${net})`);
        }
      }
    }
  }
  const debt = s.accounts.reduce((acc, a) => acc + (a.settlement < 0n ? -a.settlement : 0n), 0n);
  if (s.totalDebtUsd !== undefined && s.totalDebtUsd !== debt) fail(I, `${label(r)}: engine.totalDebtUsd ${s.totalDebtUsd} ≠ Σ account debts ${debt}`);
  // The pool holds the insurance fund and the keeper rewards the engine credited and nobody claimed yet: neither is
  // LP capital.
  if (s.poolUsdc < s.insurance + s.keeperRewards) {
    fail(I, `${label(r)}: pool holds ${s.poolUsdc} USDC, insurance fund ${s.insurance} + unclaimed keeper rewards ${s.keeperRewards}`);
  }
  if (s.capital !== undefined && s.capital !== s.poolUsdc - s.insurance - s.keeperRewards) {
    fail(I, `${label(r)}: capital ${s.capital} ≠ balance − insurance − unclaimed keeper rewards`);
  }
  if (s.totalAssets !== undefined && s.capital !== undefined && s.totalAssets > s.capital) {
    fail(I, `${label(r)}: totalAssets ${s.totalAssets} above capital ${s.capital} (a receivable counted as an asset)`);
  }
  if (s.totalAssets !== undefined && s.mintAssets !== undefined && s.mintAssets < s.totalAssets) {
    fail(I, `${label(r)}: mint valuation ${s.mintAssets} below redemption valuation ${s.totalAssets}`);
  }
}

// ============================================================================================ 2. health isolation

/** At constant prices and time only the owner's own trade (or release) lowers an account's health: no LP action,
 *  no other account's action, no poke. A rebalance never lowers it (a RELEASE lands at or above target − offset
 *  and at or above IM). Only liquidation takes an unhealthy account's collateral — and a rescue below 1, which
 *  lands at or above the liquidation target and takes only its keeper fee (and a close's costs) from it. */
/** One unit of the 6-decimal settlement token, in WAD USD. */
const USDC_UNIT_USD = 10n ** 12n;

export function INV_HEALTH_ISOLATION(r: StepRecord): void {
  const I = "INV_HEALTH_ISOLATION";
  if (!r.mined || r.kind === "price" || r.kind === "time" || r.kind === "jit") return;
  if (r.pre.ts !== r.post.ts) fail(I, `harness: before (${r.pre.ts}) and after (${r.post.ts}) read at different times`);
  const released = new Map<bigint, boolean>();
  /** accounts rescued below 1, with what the rescue may take from their USDC value: the keeper fee and, when it
   *  also reduced, the trading fees and realised losses of the close (INV_REBALANCE_LOCAL pins all three) */
  const rescued = new Map<bigint, bigint>();
  for (const tx of r.txs) {
    for (const e of tx.events) {
      if (e.name === "Rebalanced") {
        released.set(e.args.accountId, Number(e.args.action) === RELEASE);
        if ((e.args[2] as bigint) < WAD) rescued.set(e.args.accountId, (rescued.get(e.args.accountId) ?? 0n) + (e.args.feeUsd as bigint));
      }
    }
  }
  for (const tx of r.txs) {
    for (const e of tx.events) {
      const id = e.args?.accountId as bigint;
      if (e.name === "PositionModified" && rescued.has(id)) {
        const pnl = e.args.realisedPnl as bigint;
        rescued.set(id, rescued.get(id)! + (e.args.fee as bigint) + (pnl < 0n ? -pnl : 0n));
      }
    }
  }
  r.pre.accounts.forEach((a0, i) => {
    const a1 = r.post.accounts[i];
    const id = a0.id;
    if (r.ownerActed?.includes(id) || r.liquidated === id || r.bought?.id === id) return;
    if (!a0.priced || !a1.priced) return; // unpriced before or after: INV_ORACLE's business
    const h0 = a0.health!;
    const h1 = a1.health!;
    if (released.get(id) === true) {
      const min = a0.policy.targetRatio - RELEASE_HEALTH_OFFSET;
      if (h1 < min) fail(I, `${label(r)}: RELEASE left ${accountName(id)} at health ${fmtWad(h1)}, below target − offset ${fmtWad(min)}`);
      if (a1.state && a1.state.equity < a1.state.initialMargin) fail(I, `${label(r)}: RELEASE left ${accountName(id)} below initial margin`);
      return;
    }
    // The one documented exception: settling a debt against USDC margin rounds the payment up to a whole token
    // unit in the pool's favour (README, value flows), so a stranger's `settle` may take less than one unit
    // (1e-6 USD) of equity, and nothing more.
    const settleRounding =
      r.settled === id && a0.state !== undefined && a1.state !== undefined &&
      a1.state.equity <= a0.state.equity && a0.state.equity - a1.state.equity < USDC_UNIT_USD;
    if (h1 < h0 && !settleRounding) {
      fail(I, `${label(r)}: health of ${accountName(id)} fell from ${fmtWad(h0, 9)} to ${fmtWad(h1, 9)} at constant prices and time (now equity ${fmtUsd(a1.state?.equity ?? 0n)}, MM ${fmtUsd(a1.state?.maintenanceMargin ?? 0n)})`);
    }
    if (h0 < WAD) {
      // A rescue (a rebalance below 1, which INV_REBALANCE_LOCAL requires to land at or above the liquidation
      // target) is the owner's standing instruction: it pays its keeper (and a close it makes) from the account.
      const rescueCost = rescued.get(id);
      if (rescueCost !== undefined && h1 < r.pre.risk.liquidationTargetRatio) fail(I, `${label(r)}: the rescue of ${accountName(id)} left health ${fmtWad(h1)}, below the liquidation target`);
      for (let k = 1; k < 3; k++) {
        if (a1.margin[k] < a0.margin[k]) fail(I, `${label(r)}: unhealthy ${accountName(id)} lost ${a0.margin[k] - a1.margin[k]} of token ${k} margin outside liquidation`);
      }
      const v0 = a0.margin[0] * USDC_SCALE + a0.settlement;
      const v1 = a1.margin[0] * USDC_SCALE + a1.settlement;
      if (v1 < v0 - (rescueCost ?? 0n) - (rescueCost !== undefined ? USDC_SCALE : 0n)) fail(I, `${label(r)}: unhealthy ${accountName(id)} lost USDC value ${fmtUsd(v0 - v1)} outside liquidation${rescueCost !== undefined ? ` (its rescue may take ${fmtUsd(rescueCost)})` : ""}`);
    }
  });
}

// ============================================================================================ 3. rebalance is local

/** A rebalance touches only its own account and moves at most that account's reserve; what it does is what
 *  `needsRebalance` said at the same state; neither a stranger nor a collateral oracle can stop it. Below 1 it
 *  acts only as a rescue (TOP_UP, the top-up alone after the fee reaching the liquidation target, health after
 *  at or above it, the keeper paid at least min(keeperReward, maxFeeUsd)), and a rescue that has priority over
 *  the liquidation is always Ready. */
export function INV_REBALANCE_LOCAL(r: StepRecord): void {
  const I = "INV_REBALANCE_LOCAL";
  const rb = r.rebalance;
  if (!rb) return;
  const acted = new Map<bigint, { action: number; fee: bigint; hBefore: bigint; hAfter: bigint; toppedUp: bigint }>();
  const skipped = new Map<bigint, number>();
  for (const tx of r.txs) {
    for (const e of tx.events) {
      if (e.name === "Rebalanced") {
        // healthBefore / healthAfter by position: the same in every version of the event
        acted.set(e.args.accountId, { action: Number(e.args.action), fee: e.args.feeUsd, hBefore: e.args[2], hAfter: e.args[3], toppedUp: e.args[4] });
      }
      if (e.name === "RebalanceSkipped" && !skipped.has(e.args.accountId)) skipped.set(e.args.accountId, Number(e.args.reason));
    }
  }
  const idx = (id: bigint) => r.pre.accounts.findIndex((a) => a.id === id);
  // What happened is what the planner said (one rebalance per account and block: a repeat is a Cooldown).
  const seen = new Set<bigint>();
  for (const id of rb.ids) {
    const a0 = r.pre.accounts[idx(id)];
    const status = seen.has(id) && acted.has(id) ? 2 : rb.needs.get(id)!;
    const first = !seen.has(id);
    seen.add(id);
    // A rescue that has priority over the liquidation is always there for a keeper to call.
    if (first && rescueModel(r.pre, a0) && rb.needs.get(id) !== 0) {
      fail(I, `${label(r)}: ${accountName(id)}'s reserve can rescue it (its liquidation reverts RescueAvailable) but needsRebalance says ${STATUS[rb.needs.get(id)!]}`);
    }
    if (status === 5 /* OracleUnhealthy */ && positionsPriced(r.pre, a0)) {
      fail(I, `${label(r)}: ${accountName(id)} cannot be rebalanced (OracleUnhealthy) although every market of its positions is priced: a collateral oracle or a stranger's deposit blocks it`);
    }
    if (rb.single) {
      const err = r.error;
      if (status === 0 && err) fail(I, `${label(r)}: needsRebalance said Ready but rebalance reverted ${fmtErr(err)}`);
      if (status !== 0 && !err) fail(I, `${label(r)}: rebalance went through although needsRebalance said ${STATUS[status]}`);
      if (err) {
        const want = { 1: "NotOptedIn", 2: "NothingToRebalance", 3: "NothingToRebalance", 4: "Liquidatable", 5: "OracleUnhealthy", 6: "NothingToRebalance" }[status];
        if (err.name !== want) fail(I, `${label(r)}: needsRebalance said ${STATUS[status]}, rebalance reverted ${fmtErr(err)}`);
        if (err.name === "OracleUnhealthy" && !blamesUnpricedMarket(err, r.pre, a0)) {
          fail(I, `${label(r)}: rebalance of ${accountName(id)} blocked by ${fmtErr(err)}, not an unpriced market of its positions`);
        }
      }
    } else if (first) {
      if (status === 0 && !acted.has(id)) fail(I, `${label(r)}: needsRebalance said Ready, the batch skipped ${accountName(id)} (${STATUS[skipped.get(id) ?? 7]})`);
      if (status !== 0 && acted.has(id)) fail(I, `${label(r)}: the batch rebalanced ${accountName(id)} although needsRebalance said ${STATUS[status]}`);
      if (status !== 0 && skipped.get(id) !== status) fail(I, `${label(r)}: the batch skipped ${accountName(id)} as ${STATUS[skipped.get(id) ?? 7]}, needsRebalance said ${STATUS[status]}`);
    }
  }
  for (const [id, s] of skipped) if (s === 7) fail(I, `${label(r)}: the engine rejected the plan the Rebalancer made for ${accountName(id)}`);
  if (!r.mined) return;

  // Locality: nobody else's balances, positions or settlement move; the rebalanced account's only through its reserve.
  let fees = 0n;
  r.pre.accounts.forEach((a0, i) => {
    const a1 = r.post.accounts[i];
    const act = acted.get(a0.id);
    const who = accountName(a0.id);
    if (!act) {
      const same =
        a0.reserve.every((x, k) => x === a1.reserve[k]) &&
        a0.margin.every((x, k) => x === a1.margin[k]) &&
        a0.sizes.every((x, m) => x === a1.sizes[m]) &&
        a0.settlement === a1.settlement;
      if (!same) fail(I, `${label(r)}: ${who} was not rebalanced but its balances, positions or settlement changed`);
      return;
    }
    fees += act.fee;
    if (act.hBefore !== a0.health) fail(I, `${label(r)}: Rebalanced reports health before ${fmtWad(act.hBefore)}, the account had ${a0.priced ? fmtWad(a0.health!) : "no valuation"}`);
    // The health after is the valuation's to the wei, whether the engine re-valued the account (REDUCE) or re-summed
    // only the balances it moved (TOP_UP, RELEASE).
    if (a1.priced && act.hAfter !== a1.health) fail(I, `${label(r)}: Rebalanced reports health after ${fmtWad(act.hAfter)}, the account has ${fmtWad(a1.health!)}`);
    if (act.hBefore < WAD) {
      // Below 1 only a rescue acts: a TOP_UP whose top-up alone, after the fee, lifts the account to the liquidation
      // target against the maintenance margin at the current volatility with one USDC unit to spare (what the
      // liquidation it pre-empts would restore), landing there or above; its keeper is paid at least the flat
      // liquidation reward (within maxFeeUsd, whole token units), unless a REDUCE closed everything and the fee is
      // capped at what the close left.
      const target = r.pre.risk.liquidationTargetRatio;
      const h1 = a1.priced ? a1.health! : undefined;
      if (!(act.action & TOP_UP)) fail(I, `${label(r)}: ${who} rebalanced at health ${fmtWad(act.hBefore)} < 1 without a TOP_UP (action ${act.action})`);
      if (act.hAfter < target || h1 === undefined || h1 < target) fail(I, `${label(r)}: rescue of ${who} left health ${fmtWad(act.hAfter)} (now ${h1 === undefined ? "unpriced" : fmtWad(h1)}), below the liquidation target ${fmtWad(target)}`);
      const v = a0.valuation!;
      const mmNow = mmNowModel(r.pre, a0);
      if (mmNow === undefined || v.equity - act.fee + act.toppedUp < ceilWad(mmNow, target) + USDC_SCALE) {
        fail(I, `${label(r)}: rescue of ${who}: equity ${fmtUsd(v.equity)} − fee ${fmtUsd(act.fee)} + top-up ${fmtUsd(act.toppedUp)} < ${fmtWad(target)} × mmNow ${mmNow === undefined ? "unpriced" : fmtUsd(mmNow)} + one USDC unit (the top-up alone must lift it)`);
      }
      let reward = a0.policy.maxFeeUsd < r.pre.risk.keeperReward ? a0.policy.maxFeeUsd : r.pre.risk.keeperReward;
      reward -= reward % USDC_SCALE;
      const closedAll = (act.action & REDUCE) !== 0 && a1.positionMask === 0n;
      if (act.fee > a0.policy.maxFeeUsd || act.fee % USDC_SCALE !== 0n || (act.fee < reward && !closedAll)) {
        fail(I, `${label(r)}: rescue of ${who} paid its keeper ${fmtUsd(act.fee)}; the rule is at least ${fmtUsd(reward)} (min of the reward and maxFeeUsd ${fmtUsd(a0.policy.maxFeeUsd)}) in whole units`);
      }
    }
    for (let m = 0; m < 2; m++) {
      const [s0, s1] = [a0.sizes[m], a1.sizes[m]];
      const shrunk = s1 === 0n || (s0 > 0n && s1 > 0n && s1 <= s0) || (s0 < 0n && s1 < 0n && s1 >= s0);
      if (!shrunk || (!(act.action & REDUCE) && s0 !== s1)) fail(I, `${label(r)}: rebalance moved ${who}'s ${MARKET_NAMES[m]} position ${s0} → ${s1}`);
    }
    for (let k = 0; k < 3; k++) {
      const dRes = a1.reserve[k] - a0.reserve[k];
      const dMar = a1.margin[k] - a0.margin[k];
      const dir = act.action === RELEASE ? dRes >= 0n : act.action & TOP_UP ? dRes <= 0n : dRes === 0n;
      if (!dir) fail(I, `${label(r)}: action ${act.action} moved ${who}'s token ${k} reserve by ${dRes}`);
      if (k !== 0 && dRes + dMar !== 0n) fail(I, `${label(r)}: ${who}'s token ${k} reserve + margin changed by ${dRes + dMar}`);
    }
    // USDC value: reserve + margin + settlement move by exactly realised PnL − trading fees − keeper fee, less
    // under one token unit of settlement rounding (kept by the protocol).
    let expected = -act.fee;
    for (const tx of r.txs) {
      for (const e of tx.events) {
        if (e.name === "PositionModified" && e.args.accountId === a0.id) expected += (e.args.realisedPnl as bigint) - (e.args.fee as bigint);
      }
    }
    const v0 = (a0.reserve[0] + a0.margin[0]) * USDC_SCALE + a0.settlement;
    const v1 = (a1.reserve[0] + a1.margin[0]) * USDC_SCALE + a1.settlement;
    const d = v1 - v0;
    if (d > expected || d <= expected - USDC_SCALE) {
      fail(I, `${label(r)}: ${who}'s USDC value moved ${fmtUsd(d)} (${d}), expected realised − fees − keeper fee = ${expected}`);
    }
  });
  const paid = r.post.keeperUsdc - r.pre.keeperUsdc;
  if (paid * USDC_SCALE !== fees) fail(I, `${label(r)}: the keeper was credited ${paid} USDC units, the Rebalanced events say ${fees} WAD`);
}

// ============================================================================================ 4. liquidation

/** Liquidation succeeds only when health < 1, and then always — no collateral oracle and no stranger can stop
 *  it — unless the account's own reserve can rescue it (`rescueAvailable`, the rule modelled by `rescueModel`):
 *  then it reverts RescueAvailable and the rescue is Ready for any keeper. It closes `liquidationFraction` (0
 *  exactly when healthy or rescuable) and improves health or closes the account; a collateral sale takes only an unhealthy or emptied
 *  account's collateral and reduces its debt; healthBatch sees every account it can price. */
export function INV_LIQUIDATION(r: StepRecord): void {
  const I = "INV_LIQUIDATION";
  // Keepers find liquidatable accounts through healthBatch: it prices every account whose markets are priced and
  // never reverts because of one account.
  for (const s of [r.pre, r.post]) {
    if (s.full) continue;
    if (s.healthBatchError) fail(I, `before "${r.label}": healthBatch reverted ${fmtErr(s.healthBatchError)} (one account must not hide the others)`);
    for (const a of s.accounts) {
      if (a.priced !== positionsPriced(s, a)) fail(I, `before "${r.label}": healthBatch says ${accountName(a.id)} priced=${a.priced}, its position markets are ${a.priced ? "not " : ""}all priced`);
    }
  }
  // The rescue rule and the liquidation fraction, as the engine's views report them, against the model: below 1
  // a rescue is available exactly when the formula says so, and the fraction is 0 exactly when the account is
  // healthy or its rescue is available.
  for (const s of r.mined || r.kind === "time" ? [r.pre, r.post] : [r.pre]) {
    if (!s.rescueRead) continue;
    const when = s === r.pre ? `before "${r.label}"` : label(r);
    for (const a of s.accounts) {
      const want = rescueModel(s, a);
      if (a.rescueView !== want) {
        fail(I, `${when}: engine.rescueAvailable(${a.id}) = ${a.rescueView ?? "reverts"}, the rescue rule gives ${want ?? "no valuation"} (health ${a.priced ? fmtWad(a.health!) : "unpriced"}, equity ${a.valuation ? fmtUsd(a.valuation.equity) : "?"}, MM ${a.valuation ? fmtUsd(a.valuation.maintenanceMargin) : "?"}, mmNow ${fmtUsd(mmNowModel(s, a) ?? 0n)}, reserve ${a.reserve}, policy maxFee ${fmtUsd(a.policy.maxFeeUsd)} actions ${a.policy.actions} cooldown ${a.policy.cooldown}, last rebalance ${a.lastRebalanceAt}, now ${s.ts})`);
      }
      if (!a.priced) {
        if (a.liqFraction !== undefined) fail(I, `${when}: liquidationFraction(${a.id}) = ${a.liqFraction} for an account that cannot be valued`);
        continue;
      }
      const none = a.health! >= WAD || want === true;
      if (a.liqFraction === undefined || (a.liqFraction === 0n) !== none || a.liqFraction > WAD) {
        fail(I, `${when}: liquidationFraction(${a.id}) = ${a.liqFraction ?? "reverts"} at health ${fmtWad(a.health!)} with the rescue ${want ? "" : "not "}available`);
      }
    }
  }

  if (r.liquidated !== undefined) {
    const i = r.pre.accounts.findIndex((a) => a.id === r.liquidated);
    const a0 = r.pre.accounts[i];
    const a1 = r.post.accounts[i];
    const who = accountName(a0.id);
    if (r.mined) {
      if (!a0.priced) fail(I, `${label(r)}: liquidated ${who} whose valuation was unavailable`);
      const h0 = a0.health!;
      if (h0 >= WAD) fail(I, `${label(r)}: liquidated ${who} at health ${fmtWad(h0)} >= 1`);
      if (rescueModel(r.pre, a0)) fail(I, `${label(r)}: liquidated ${who} at health ${fmtWad(h0)} although its own reserve could rescue it (the rescue has priority)`);
      const ev = r.txs[0].events.find((e) => e.name === "Liquidated")!;
      if (ev.args.healthBefore !== h0) fail(I, `${label(r)}: Liquidated reports health ${ev.args.healthBefore}, the account had ${h0}`);
      if (ev.args.fraction !== a0.liqFraction) fail(I, `${label(r)}: liquidation closed fraction ${ev.args.fraction}, liquidationFraction said ${a0.liqFraction}`);
      if (a1.positionMask !== 0n) {
        if (!a1.priced) fail(I, `${label(r)}: ${who} cannot be valued after its partial liquidation`);
        if (a1.health! <= h0) fail(I, `${label(r)}: partial liquidation of ${who} did not improve health (${fmtWad(h0)} → ${fmtWad(a1.health!)})`);
      }
    } else {
      const err = r.error!;
      if (err.name === "NotLiquidatable") {
        if (!a0.priced || a0.health! < WAD) fail(I, `${label(r)}: liquidate(${a0.id}) reverted NotLiquidatable at health ${a0.priced ? fmtWad(a0.health!) : "unpriced"}`);
      } else if (err.name === "RescueAvailable") {
        if (String(err.args[0]) !== String(a0.id)) fail(I, `${label(r)}: liquidate(${a0.id}) reverted ${fmtErr(err)} naming another account`);
        if (!rescueModel(r.pre, a0)) fail(I, `${label(r)}: liquidate(${a0.id}) reverted RescueAvailable at health ${a0.priced ? fmtWad(a0.health!) : "unpriced"} although the rescue rule says its reserve cannot rescue it`);
        // The rescue that blocks the liquidation is there for any keeper to call: never a stuck account.
        const needs = r.pre.extra[`needs${a0.id}`];
        if (!needs?.ok || Number(needs.value![1]) !== 0) {
          fail(I, `${label(r)}: the rescue of ${who} blocks its liquidation but needsRebalance says ${needs?.ok ? STATUS[Number(needs.value![1])] : "nothing (not read or reverted)"}`);
        }
      } else if (err.name === "OracleUnhealthy") {
        if (!blamesUnpricedMarket(err, r.pre, a0)) fail(I, `${label(r)}: liquidation of ${who} blocked by ${fmtErr(err)}, not an unpriced market of its positions (a collateral oracle or a stranger's deposit must never block it)`);
      } else {
        fail(I, `${label(r)}: liquidate(${a0.id}) reverted ${fmtErr(err)}`);
      }
    }
  }

  if (r.bought) {
    const { id, token } = r.bought;
    const i = r.pre.accounts.findIndex((a) => a.id === id);
    const a0 = r.pre.accounts[i];
    const a1 = r.post.accounts[i];
    const who = accountName(id);
    const S0 = a0.settlement;
    if (r.mined) {
      if (S0 >= 0n) fail(I, `${label(r)}: bought collateral of ${who} without debt`);
      if (token === 0) fail(I, `${label(r)}: bought USDC collateral`);
      if (a0.positionMask !== 0n && (!a0.priced || a0.health! >= WAD)) fail(I, `${label(r)}: bought collateral of ${who} at health ${a0.priced ? fmtWad(a0.health!) : "unpriced"} with positions open`);
      if (a1.settlement < S0) fail(I, `${label(r)}: ${who}'s debt grew in a collateral sale`);
      if (a0.positionMask !== 0n && a1.priced && a1.positionMask !== 0n && a1.health! < a0.health!) {
        fail(I, `${label(r)}: a collateral sale lowered ${who}'s health ${fmtWad(a0.health!)} → ${fmtWad(a1.health!)}`);
      }
    } else {
      const err = r.error!;
      const nothing = S0 >= 0n || token === 0 || a0.margin[token] === 0n || r.bought.repay === 0n;
      if (err.name === "NothingToBuy") {
        if (!nothing) fail(I, `${label(r)}: buyCollateral reverted NothingToBuy on ${who} with debt ${fmtUsd(S0)} and margin ${a0.margin[token]}`);
      } else if (err.name === "NotLiquidatable") {
        if (nothing || a0.positionMask === 0n || !a0.priced || a0.health! < WAD) fail(I, `${label(r)}: buyCollateral reverted ${fmtErr(err)}`);
      } else if (err.name === "OracleUnhealthy") {
        const isToken = token !== 0 && String(err.args[0]).toLowerCase() === tokenAddrs[token] && !marketPrice(r.pre, MARKET_TOKEN.indexOf(token)).ok;
        if (!isToken && !blamesUnpricedMarket(err, r.pre, a0)) fail(I, `${label(r)}: collateral sale of ${who} blocked by ${fmtErr(err)}, neither the unpriced token sold nor an unpriced market of its positions`);
      } else {
        fail(I, `${label(r)}: buyCollateral reverted ${fmtErr(err)}`);
      }
    }
  }
}

// ============================================================================================ 5. oracle

/** No state change is priced off an invalid, stale or tripped oracle, and every view serves exactly what the
 *  oracle's rules allow: the oracle's answer equals the independent model of a validated price; every trade,
 *  liquidation, collateral sale and LP valuation used a valid price; collateral without a valid price counts
 *  as zero and never blocks a valuation. */
export function INV_ORACLE(r: StepRecord): void {
  const I = "INV_ORACLE";
  for (const s of r.mined || r.kind === "time" ? [r.pre, r.post] : [r.pre]) {
    const when = s === r.pre ? `before "${r.label}"` : label(r);
    for (let m = 0; m < 2; m++) {
      const want = marketPrice(s, m);
      const got = s.tryPrice[m];
      if (got.ok !== want.ok || got.px !== want.px) {
        fail(I, `${when}: oracle serves ${MARKET_NAMES[m]} ${got.ok ? fmtUsd(got.px) : "nothing"}, the rules allow ${want.ok ? fmtUsd(want.px) : `nothing (${want.why})`} (feed answer ${s.feeds[m].answer} at ${s.feeds[m].updatedAt}, recorded ${fmtUsd(s.obs[m].price)} at ${s.obs[m].updatedAt}${s.obs[m].tripped ? ", tripped" : ""}, now ${s.ts})`);
      }
    }
    // The pool can be valued iff every market with open interest is priced.
    const oi = [0, 1].map((m) => s.accounts.some((a) => a.sizes[m] !== 0n));
    const valuable = [0, 1].every((m) => !oi[m] || marketPrice(s, m).ok);
    if ((s.full || s.lp) && (s.totalAssets !== undefined) !== valuable) fail(I, `${when}: totalAssets ${s.totalAssets !== undefined ? "values the pool" : `reverts ${fmtErr(s.totalAssetsError!)}`} although the pool is ${valuable ? "" : "not "}priceable`);
    for (const a of s.accounts) {
      if (!s.full) continue; // healthBatch's flags: INV_LIQUIDATION
      const priced = positionsPriced(s, a);
      if ((a.state !== undefined) !== priced) {
        fail(I, `${when}: accountState(${a.id}) ${a.state ? "values the account" : `reverts ${fmtErr(a.stateError!)}`} although its position markets are ${priced ? "" : "not "}all priced`);
      }
      if (!a.state) continue;
      let c = 0n;
      for (let k = 0; k < 3; k++) {
        if (a.margin[k] === 0n) continue;
        c += ((a.margin[k] * tokenPrice(s, k)) / 10n ** DECIMALS[k]) * HAIRCUT[k] / WAD;
      }
      if (a.state.collateral !== c) fail(I, `${when}: account ${a.id} collateral valued ${fmtUsd(a.state.collateral)}, validated prices give ${fmtUsd(c)} (invalid collateral must count as zero)`);
      let n = 0n;
      for (const m of openMarkets(a)) {
        const size = a.sizes[m] < 0n ? -a.sizes[m] : a.sizes[m];
        n += (size * marketPrice(s, m).px + WAD - 1n) / WAD;
      }
      if (a.state.notional !== n) fail(I, `${when}: account ${a.id} notional ${fmtUsd(a.state.notional)}, validated prices give ${fmtUsd(n)}`);
    }
  }

  // Every price a state change used was valid at that block.
  const base = r.pre;
  for (const tx of r.txs) {
    for (const e of tx.events) {
      if (e.name === "PositionModified") {
        const m = Number(e.args.marketId);
        const want = modelPrice(base.feeds[m], base.obs[m], tx.ts);
        if (!want.ok || want.px !== e.args.price) {
          fail(I, `${label(r)}: ${MARKET_NAMES[m]} traded at ${fmtUsd(e.args.price)} for account ${e.args.accountId}; the valid price was ${want.ok ? fmtUsd(want.px) : `none (${want.why})`}`);
        }
      }
      if (e.name === "CollateralBought") {
        const k = tokenAddrs.indexOf(String(e.args.token).toLowerCase());
        if (k <= 0) fail(I, `${label(r)}: collateral sale of an unexpected token ${e.args.token}`);
        const p = modelPrice(base.feeds[MARKET_TOKEN.indexOf(k)], base.obs[MARKET_TOKEN.indexOf(k)], tx.ts);
        if (!p.ok) fail(I, `${label(r)}: collateral sold while its oracle is invalid (${p.why})`);
        // amountOut ≤ repay at the discounted valid price (rounded down)
        const discounted = (p.px * (WAD - 5n * 10n ** 16n)) / WAD;
        const maxOut = (e.args.repaid * USDC_SCALE * 10n ** DECIMALS[k]) / discounted;
        if (e.args.amountOut > maxOut) fail(I, `${label(r)}: sold ${e.args.amountOut} for ${e.args.repaid} USDC units, the valid discounted price allows ${maxOut}`);
      }
      if (e.name === "Deposit" || e.name === "Withdraw") {
        const oi = [0, 1].map((m) => base.accounts.some((a) => a.sizes[m] !== 0n));
        const ok = [0, 1].every((m) => !oi[m] || modelPrice(base.feeds[m], base.obs[m], tx.ts).ok);
        if (!ok) fail(I, `${label(r)}: LP ${e.name.toLowerCase()} priced while a market with open interest has no valid price`);
      }
    }
  }
}


// ============================================================================================ 6. exit

/** An account with no positions and no debt can always take everything out, whatever the oracles say; the
 *  owner can always reduce or close a position whose market is priced, and add collateral; anyone can add
 *  USDC (the last two are checked by the steps that do them). */
export function INV_EXIT(r: StepRecord): void {
  const I = "INV_EXIT";
  for (const sim of r.exitSims ?? []) {
    if (sim.mustSucceed && sim.error) fail(I, `${label(r)}: ${sim.what} reverts ${fmtErr(sim.error)}`);
  }
}

/** The owner actions INV_EXIT simulates on the state after a step. */
/** Accounts a step acted on directly (undefined: the step moved something every account depends on). */
export function touchedAccounts(r: StepRecord): bigint[] | undefined {
  if (r.kind === "owner" || r.kind === "stranger" || r.kind === "liquidate" || r.kind === "buy" || r.kind === "rebalance") {
    return [...(r.ownerActed ?? []), ...(r.touched ?? []), ...(r.liquidated !== undefined ? [r.liquidated] : []), ...(r.bought ? [r.bought.id] : []), ...(r.rebalance?.ids ?? [])];
  }
  return undefined;
}

/**
 * The owner actions INV_EXIT simulates on the state after a step: every account with no position and no debt
 * takes everything out; the positions of `closeFor` (every account when undefined: after a price, time, pool
 * or oracle step) close. An account's own step is what can change whether its positions close, and a
 * step every account depends on re-checks them all.
 */
export function exitSimulations(w: World, s: Snapshot, closeFor?: bigint[]): { what: string; target: string; fn: string; args: unknown[]; mustSucceed: boolean }[] {
  const out: { what: string; target: string; fn: string; args: unknown[]; mustSucceed: boolean }[] = [];
  for (const a of s.accounts) {
    if (a.positionMask !== 0n || a.settlement < 0n) continue;
    for (let k = 0; k < 3; k++) {
      if (a.margin[k] > 0n) out.push({ what: `account ${a.id} (no position, no debt) releasing all ${a.margin[k]} token-${k} margin`, target: w.addr.vault, fn: "releaseMargin", args: [a.id, w.tokens[k], a.margin[k]], mustSucceed: true });
    }
    for (let k = 0; k < 3; k++) {
      const all = a.reserve[k] + a.margin[k];
      if (all > 0n) out.push({ what: `account ${a.id} withdrawing all ${all} token-${k}`, target: w.addr.vault, fn: "withdraw", args: [a.id, w.tokens[k], all, a.owner], mustSucceed: true });
    }
  }
  for (const a of s.accounts) {
    if (closeFor && !closeFor.includes(a.id)) continue;
    for (const m of openMarkets(a)) {
      if (!marketPrice(s, m).ok) continue;
      const size = a.sizes[m];
      out.push({ what: `account ${a.id} closing its ${MARKET_NAMES[m]} position (${size})`, target: w.addr.engine, fn: "modifyPosition", args: [a.id, m, -size, size > 0n ? 0n : 2n ** 256n - 1n], mustSucceed: true });
    }
  }
  return out;
}

// ============================================================================================ 7. round trips

/** Funding index as the engine brings it to `now` (IMarginEngine: F + rate/day × P × dt / 1 day, truncated). */
function fundingIndexNow(st: MarketState, px: bigint, now: number): bigint {
  const dt = BigInt(now) - st.lastFundingTime;
  if (dt === 0n) return st.fundingIndex;
  const max = MAJOR_MARKET.maxFundingRate;
  let rate = ((st.longOI - st.shortOI) * max) / MAJOR_MARKET.skewScale;
  if (rate > max) rate = max;
  if (rate < -max) rate = -max;
  return st.fundingIndex + (((rate * px) / WAD) * dt) / 86_400n;
}

const ceilDiv = (x: bigint, d: bigint) => (x + d - 1n) / d;

/**
 * The pool's two valuations written out: redemptions at capital − open profits, deposits at capital − open
 * profits + open losses + uncollected debts, each market side on its own (a side's loss never offsets the other
 * side's profit), in USDC units rounded against the LP. Undefined when a market with open interest is unpriced.
 */
export function poolValuation(s: Snapshot): { redeem: bigint; mint: bigint; profitUsd: bigint; lossUsd: bigint } | undefined {
  if (!s.markets || s.capital === undefined) return undefined;
  let profitUsd = 0n;
  let lossUsd = 0n;
  for (let m = 0; m < 2; m++) {
    const st = s.markets[m];
    if (st.longOI === 0n && st.shortOI === 0n) continue;
    const p = marketPrice(s, m);
    if (!p.ok) return undefined;
    const index = fundingIndexNow(st, p.px, s.ts);
    for (const long of [true, false]) {
      // Σ over the side's positions of size·(P − entry) − size·(F − F_entry), exact in WAD², rounded once.
      let pnl2 = 0n;
      for (const a of s.accounts) {
        const size = a.sizes[m];
        if (long ? size > 0n : size < 0n) pnl2 += size * (p.px - a.entries[m]) - size * (index - a.entryFunding[m]);
      }
      if (pnl2 > 0n) profitUsd += ceilDiv(pnl2, WAD);
      else if (pnl2 < 0n) lossUsd += ceilDiv(-pnl2, WAD);
    }
  }
  lossUsd += s.totalDebtUsd ?? 0n;
  const owed = ceilDiv(profitUsd, USDC_SCALE);
  const withLosses = s.capital + ceilDiv(lossUsd, USDC_SCALE);
  return {
    redeem: owed >= s.capital ? 0n : s.capital - owed,
    mint: owed >= withLosses ? 0n : withLosses - owed,
    profitUsd,
    lossUsd,
  };
}

/** No round trip returns more than was put in: an LP deposit → redeem around any other action (in one block:
 *  the redeem must not go through, and the shares are worth no more than paid, bar their share of the fees the
 *  action itself paid), an immediate deposit → redeem valuation, open → close at the same price. What makes it
 *  so is checked to the unit after every step: the pool redeems at capital − open profits and mints at capital −
 *  open profits + open losses + debts, each market side on its own (poolValuation). ERC-4626 previews are exact;
 *  a stranger cannot extend an LP's lock. */
export function INV_ROUND_TRIP(r: StepRecord): void {
  const I = "INV_ROUND_TRIP";
  // The valuations that make LP round trips honest, to the unit.
  const v = r.post.full ? poolValuation(r.post) : undefined;
  if (v && (r.post.totalAssets !== v.redeem || (r.post.mintAssets ?? v.mint) !== v.mint)) {
    fail(I, `${label(r)}: the pool values redemptions at ${r.post.totalAssets} and deposits at ${r.post.mintAssets}; capital ${r.post.capital} − open profits ${fmtUsd(v.profitUsd)} (+ open losses and debts ${fmtUsd(v.lossUsd)}), each market side on its own, give ${v.redeem} and ${v.mint}`);
  }
  const d = r.lpDeposit;
  if (d && d.minted !== undefined) {
    if (d.minted !== d.previewShares) fail(I, `${label(r)}: deposit of ${d.assets} minted ${d.minted} shares, previewDeposit said ${d.previewShares}`);
    if (d.redeemValueAfter! > d.assets) fail(I, `${label(r)}: ${d.assets} USDC units deposited are worth ${d.redeemValueAfter} at once`);
  }
  const w = r.lpRedeem;
  if (w && w.received !== undefined && w.received !== w.previewAssets) {
    fail(I, `${label(r)}: redeeming ${w.shares} shares paid ${w.received}, previewRedeem said ${w.previewAssets}`);
  }
  const j = r.jit;
  if (j) {
    if (j.usdcAfter > j.usdcBefore) {
      fail(I, `${label(r)}: the just-in-time LP put in ${j.assets} and left the block with ${j.usdcAfter - j.usdcBefore} USDC units more than it had (around ${j.inner})`);
    }
    if (j.constantPrice && j.redeemValueAfter !== undefined) {
      let fees = 0n;
      for (const tx of r.txs) for (const e of tx.events) if (e.name === "PositionModified") fees += e.args.fee;
      const feeUnits = (fees + USDC_SCALE - 1n) / USDC_SCALE + 3n;
      const allowance = (feeUnits * j.minted + r.post.totalSupply - 1n) / r.post.totalSupply + 1n;
      if (j.redeemValueAfter > j.assets + allowance) {
        fail(I, `${label(r)}: ${j.assets} USDC units deposited just before ${j.inner} are worth ${j.redeemValueAfter} right after (gain ${j.redeemValueAfter - j.assets} > its share of the fees, ${allowance})`);
      }
    }
  }
  const t = r.roundTrip;
  if (t && r.mined) {
    const i = r.pre.accounts.findIndex((a) => a.id === t.id);
    const e0 = t.equityBefore;
    const e1 = r.post.accounts[i].state?.equity;
    if (e1 === undefined) fail(I, `${label(r)}: account ${t.id} cannot be valued after an open → close at a valid price`);
    if (e1 - e0 > -t.fees) {
      fail(I, `${label(r)}: open → close at one price moved account ${t.id}'s equity by ${fmtUsd(e1 - e0)}; the two fees were ${fmtUsd(t.fees)}`);
    }
  }
}

// ============================================================================================ all of them

export const INVARIANTS = {
  INV_SOLVENCY,
  INV_HEALTH_ISOLATION,
  INV_REBALANCE_LOCAL,
  INV_LIQUIDATION,
  INV_ORACLE,
  INV_EXIT,
  INV_ROUND_TRIP,
} as const;

export function checkAll(r: StepRecord): void {
  for (const inv of Object.values(INVARIANTS)) inv(r);
}
