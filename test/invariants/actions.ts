/**
 * The actions of the invariant suite as fast-check commands. Each command runs one step against the chain,
 * judges the outcome against what the model allows (an unexpected revert, or an unexpected success, fails the
 * run), records what the invariants need and runs all seven of them.
 *
 * Runtime choices (how much is "half the free margin", which position is the most losing one) are made from the
 * state before the step, so a command's `toString()` states the rule and a replay makes the same choice.
 */
import fc from "fast-check";
import type { ContractTransactionResponse } from "ethers";
import { wad } from "../../deploy/params";
import {
  ASSET_NAMES,
  CRYPTO_FEED,
  MARKET_NAMES,
  USDC_SCALE,
  WAD,
  fmtErr,
  passTime,
  pinNextBlock,
  sendBundle,
  sendTx,
  simulate,
  snapshot,
  type Decoded,
  type Ev,
  type Extra,
  type Model,
  type Outcome,
  type Snapshot,
  type World,
} from "./world";
import {
  blamesUnpricedMarket,
  checkAll,
  exitSimulations,
  touchedAccounts,
  fail,
  marketPrice,
  openMarkets,
  type Kind,
  type StepRecord,
} from "./invariants";

type Tx = () => Promise<ContractTransactionResponse>;
const MAX = 2n ** 256n - 1n;
const GAS = { gasLimit: 8_000_000 };
/** The failure tag of an outcome no rule allows. */
const UNEXPECTED = "UNEXPECTED_OUTCOME";

// ============================================================================================ the step pipeline

export abstract class Act implements fc.AsyncCommand<Model, World> {
  check(_m: Readonly<Model>): boolean {
    return true;
  }
  abstract toString(): string;
  abstract exec(m: Model, w: World): Promise<void>;
  async run(m: Model, w: World): Promise<void> {
    m.step += 1;
    stats.set("(steps)", (stats.get("(steps)") ?? 0) + 1);
    await this.exec(m, w);
  }
}

/** Outcome counts per action (printed with FC_STATS=1: shows what the sequences actually exercised). */
export const stats = new Map<string, number>();
function count(label: string, outcome: string) {
  const key = `${label.split("(")[0]} → ${outcome}`;
  stats.set(key, (stats.get(key) ?? 0) + 1);
}

/** After a state change: INV_EXIT's simulations on the new state, then all seven invariants. */
async function finish(w: World, r: StepRecord): Promise<void> {
  if (r.mined) {
    const sims = exitSimulations(w, r.post, touchedAccounts(r));
    const res = await simulate(sims);
    r.exitSims = sims.map((s, i) => ({ what: s.what, mustSucceed: s.mustSucceed, error: res[i] }));
  }
  checkAll(r);
  w.log?.push(r);
}

interface OneTx {
  label: string;
  kind: Kind;
  /** the "before": a light pending snapshot (default), with the pool's valuations, or the last "after" (price steps) */
  pre?: "light" | "pool" | "reuse";
  extraPre?: Extra[];
  /** the transaction, built from the state before it (undefined: nothing to do) */
  tx: (pre: Snapshot) => Tx | undefined;
  /** throws when the outcome is not one the model allows */
  judge: (pre: Snapshot, out: Outcome) => void;
  extraPost?: (pre: Snapshot, events: Ev[]) => Extra[];
  tag?: (r: StepRecord, out: Outcome) => void;
  ownerActed?: bigint[];
}

/** One transaction: before (pending block, same timestamp), send, judge, after, invariants. */
async function oneTx(m: Model, w: World, o: OneTx): Promise<void> {
  await pinNextBlock(m);
  const rescue = o.kind === "liquidate" || o.kind === "rebalance" || o.kind === "batch";
  const pre = o.pre === "reuse" ? m.snap : await snapshot(m, w, "pending", m.now, { full: false, pool: o.pre === "pool", rescue, extra: o.extraPre });
  const tx = o.tx(pre);
  if (!tx) return;
  const out = await sendTx(m, tx);
  count(o.label, out.ok ? "ok" : out.error.name);
  o.judge(pre, out);
  let post = m.snap;
  if (out.ok) {
    post = await snapshot(m, w, "latest", out.ts, { full: true, extra: o.extraPost?.(pre, out.events) });
    m.snap = post;
  }
  const r: StepRecord = {
    label: o.label,
    kind: o.kind,
    pre,
    post,
    mined: out.ok,
    txs: out.ok ? [{ ts: out.ts, events: out.events }] : [],
    error: out.ok ? undefined : out.error,
    ownerActed: o.ownerActed,
  };
  o.tag?.(r, out);
  await finish(w, r);
}

/** Judging helpers. */
function mustSucceed(label: string, out: Outcome, invariant: string, why: string): void {
  if (!out.ok) fail(invariant, `"${label}" reverted ${fmtErr(out.error)} although ${why}`);
}
function mustRevert(label: string, out: Outcome, name: string, invariant: string, why: string): void {
  if (out.ok) fail(invariant, `"${label}" went through; expected ${name} (${why})`);
  if (out.error.name !== name) fail(invariant, `"${label}" reverted ${fmtErr(out.error)}; expected ${name} (${why})`);
}
function allowOnly(label: string, out: Outcome, names: string[], extra?: (e: Decoded) => boolean): void {
  if (out.ok) return;
  if (names.includes(out.error.name) && (!extra || extra(out.error))) return;
  fail(UNEXPECTED, `"${label}" reverted ${fmtErr(out.error)}`);
}

const acctId = (i: number) => BigInt(i + 1);
const accountLabel = (i: number) => `account ${i + 1}`;

/** Every market with open interest has a valid price at the snapshot's time (the pool can be valued). */
function poolPriceable(s: Snapshot): boolean {
  return [0, 1].every((mk) => !s.accounts.some((a) => a.sizes[mk] !== 0n) || marketPrice(s, mk).ok);
}

// ============================================================================================ amounts

/** Token amounts by size class (small, medium, large), native decimals. */
const AMOUNTS: bigint[][] = [
  [100n * 10n ** 6n, 5_000n * 10n ** 6n, 50_000n * 10n ** 6n],
  [10n ** 17n, 10n ** 18n, 10n * 10n ** 18n],
  [100_000n, 5_000_000n, 50_000_000n],
];
const fmtAmt = (k: number, j: number) => ["small", "medium", "large"][j] + " " + ASSET_NAMES[k];

const fracOf = (x: bigint, frac: number) => (x * BigInt(Math.round(frac * 1000))) / 1000n;

/**
 * Size (WAD units) worth `frac` of the account's free margin (equity − IM) at its initial-margin rate, estimated
 * from the oracle's volatilities and the market's parameters (the real rate may differ a little: above ~1 the trade
 * may fail IM, which is allowed).
 */
function sizeForFreeMargin(pre: Snapshot, m: Model, i: number, mk: number, frac: number): bigint {
  const a = m.snap.accounts[i];
  const p = marketPrice(pre, mk);
  const px = Number((p.ok ? p.px : BigInt(pre.obs[mk].price)) / 10n ** 12n) / 1e6;
  if (!a.state || px <= 0) return 10n ** 16n;
  const free = Number((a.state.equity - a.state.initialMargin) / 10n ** 12n) / 1e6;
  if (free <= 0) return 10n ** 16n;
  // IM follows max(σ, σ_mm, imVolFloor): σ and σ_mm read from the oracle (annualised, already clamped to the asset's
  // bounds), the floor the market's stress volatility. The size term is bounded by sizeK (N <= oiCapUsd).
  const v = pre.vols[mk];
  const terms = m.markets[mk];
  let volWad = v.target > v.maintenance ? v.target : v.maintenance;
  if (volWad < terms.imVolFloor) volWad = terms.imVolFloor;
  const num = (x: bigint) => Number(x / 10n ** 12n) / 1e6;
  const volTerm = num(terms.volK) * num(volWad) * Math.sqrt(86_400 / 31_536_000);
  const rate = (num(terms.baseMMR) + volTerm + num(terms.sizeK)) * num(terms.imFactor);
  const units = (frac * free) / rate / px;
  return BigInt(Math.max(1, Math.floor(units * 1e6))) * 10n ** 12n;
}

// ============================================================================================ owner actions

type TradeKind = "long" | "short" | "reduce" | "close" | "flip";

class Trade extends Act {
  constructor(
    readonly i: number,
    readonly mk: number,
    readonly kind: TradeKind,
    readonly frac: number,
  ) {
    super();
  }
  toString() {
    const opens = this.kind === "long" || this.kind === "short";
    const what = opens ? `${this.kind} ${this.frac}× free margin` : this.kind === "reduce" ? "reduce by half" : this.kind;
    return `trade(${accountLabel(this.i)}${opens ? "" : " or the next one with a position"}, ${MARKET_NAMES[this.mk]}, ${what})`;
  }
  /** Who trades: account i; a reduce, close or flip goes to the next account that has a position in the market. */
  who(pre: Snapshot): number {
    if (this.kind === "long" || this.kind === "short") return this.i;
    for (let k = 0; k < 3; k++) {
      const j = (this.i + k) % 3;
      if (pre.accounts[j].sizes[this.mk] !== 0n) return j;
    }
    return this.i;
  }
  delta(pre: Snapshot, m: Model, i: number): bigint {
    const size = pre.accounts[i].sizes[this.mk];
    switch (this.kind) {
      case "long":
        return sizeForFreeMargin(pre, m, i, this.mk, this.frac);
      case "short":
        return -sizeForFreeMargin(pre, m, i, this.mk, this.frac);
      case "reduce":
        return -size / 2n;
      case "close":
        return -size;
      case "flip":
        return -2n * size;
    }
  }
  async exec(m: Model, w: World) {
    let delta = 0n;
    let i = this.i;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "owner",
      tx: (pre) => {
        i = this.who(pre);
        delta = this.delta(pre, m, i);
        const engine = w.f.engine.connect(w.accountOwners[i]);
        return () => engine.modifyPosition(acctId(i), this.mk, delta, delta > 0n ? MAX : 0n);
      },
      tag: (r) => (r.ownerActed = [acctId(i)]),
      judge: (pre, out) => {
        const label = `${this.toString()} [account ${i + 1}, Δ ${delta}]`;
        const a = pre.accounts[i];
        const old = a.sizes[this.mk];
        const now = old + delta;
        if (delta === 0n) return mustRevert(label, out, "ZeroSizeDelta", UNEXPECTED, "nothing to trade");
        if (!marketPrice(pre, this.mk).ok) {
          mustRevert(label, out, "OracleUnhealthy", "INV_ORACLE", `${MARKET_NAMES[this.mk]} has no valid price`);
          return;
        }
        const abs = (x: bigint) => (x < 0n ? -x : x);
        const increases = abs(now) > abs(old) || (old > 0n && now < 0n) || (old < 0n && now > 0n);
        if (increases) {
          allowOnly(label, out, ["BelowInitialMargin", "OpenInterestCap", "OracleUnhealthy"], (e) => e.name !== "OracleUnhealthy" || blamesUnpricedMarket(e, pre, { ...a, sizes: a.sizes.map((s, x) => (x === this.mk ? now : s)) }));
        } else {
          mustSucceed(label, out, "INV_EXIT", `the owner reduces or closes a position whose market (${MARKET_NAMES[this.mk]}) is priced`);
        }
      },
    });
  }
}

class RoundTripTrade extends Act {
  constructor(
    readonly i: number,
    readonly mk: number,
    readonly long: boolean,
    readonly frac: number,
  ) {
    super();
  }
  toString() {
    return `openThenClose(${accountLabel(this.i)}, ${MARKET_NAMES[this.mk]}, ${this.long ? "long" : "short"} (or the way of its position) ${this.frac}× free margin, one block)`;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    const owner = w.accountOwners[this.i];
    await pinNextBlock(m);
    const pre = await snapshot(m, w, "pending", m.now, { full: false, extra: [{ key: "state", target: w.addr.engine, fn: "accountState", args: [id] }] });
    if (!marketPrice(pre, this.mk).ok || !pre.extra.state.ok) return;
    const size = sizeForFreeMargin(pre, m, this.i, this.mk, this.frac);
    // The open adds risk: the way of the account's position, if it has one.
    const held = pre.accounts[this.i].sizes[this.mk];
    const delta = held > 0n || (held === 0n && this.long) ? size : -size;
    const engine = w.f.engine.connect(owner);
    try {
      await engine.modifyPosition.staticCall(id, this.mk, delta, delta > 0n ? MAX : 0n, { blockTag: "pending" });
    } catch {
      return; // the open alone would revert: `trade` covers that
    }
    const b = await sendBundle(m, [
      () => engine.modifyPosition(id, this.mk, delta, delta > 0n ? MAX : 0n, GAS),
      () => engine.modifyPosition(id, this.mk, -delta, delta > 0n ? 0n : MAX, GAS),
    ]);
    if (b.receipts[0].status !== 1) fail(UNEXPECTED, `"${this}": the open reverted in the block although it simulated fine`);
    if (b.receipts[1].status !== 1) fail("INV_EXIT", `"${this}": the owner could not close the position it had just opened (priced market)`);
    const post = await snapshot(m, w, "latest", b.ts, { full: true });
    m.snap = post;
    let fees = 0n;
    for (const evs of b.events) for (const e of evs) if (e.name === "PositionModified" && e.args.accountId === id) fees += e.args.fee;
    await finish(w, {
      label: this.toString(),
      kind: "owner",
      pre,
      post,
      mined: true,
      txs: b.events.map((events) => ({ ts: b.ts, events })),
      ownerActed: [id],
      roundTrip: { id, fees, equityBefore: pre.extra.state.value![0].equity },
    });
  }
}

class VaultDeposit extends Act {
  constructor(
    readonly i: number,
    readonly k: number,
    readonly j: number,
    readonly toMargin: boolean,
  ) {
    super();
  }
  toString() {
    return `${this.toMargin ? "depositMargin" : "deposit"}(${accountLabel(this.i)}, ${fmtAmt(this.k, this.j)}, by owner)`;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    const vault = w.f.vault.connect(w.accountOwners[this.i]);
    const amount = AMOUNTS[this.k][this.j];
    await oneTx(m, w, {
      label: this.toString(),
      kind: "owner",
      ownerActed: [id],
      tx: () => () => (this.toMargin ? vault.depositMargin(id, w.tokens[this.k], amount) : vault.deposit(id, w.tokens[this.k], amount)),
      judge: (_pre, out) => mustSucceed(this.toString(), out, "INV_EXIT", "the owner can always add collateral"),
    });
  }
}

class StrangerMargin extends Act {
  constructor(
    readonly i: number,
    readonly k: number,
    readonly dust: boolean,
  ) {
    super();
  }
  toString() {
    return `depositMargin(${accountLabel(this.i)}, ${this.dust ? "1 unit of " + ASSET_NAMES[this.k] : fmtAmt(this.k, 0)}, by a stranger)`;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    const amount = this.dust ? 1n : AMOUNTS[this.k][0];
    await oneTx(m, w, {
      label: this.toString(),
      kind: "stranger",
      tag: (r) => (r.touched = [id]),
      tx: () => () => w.f.vault.connect(w.f.stranger).depositMargin(id, w.tokens[this.k], amount),
      judge: (_pre, out) => {
        if (this.k === 0) mustSucceed(this.toString(), out, "INV_EXIT", "anyone can add USDC to an account");
        else mustRevert(this.toString(), out, "MarginAssetRestricted", "INV_LIQUIDATION", "a stranger's collateral in an oracle that may fail could block the account's liquidation and rebalancing");
      },
    });
  }
}

type VaultMove = "withdraw" | "post" | "release";

class VaultOwnerMove extends Act {
  constructor(
    readonly i: number,
    readonly k: number,
    readonly what: VaultMove,
    readonly frac: number,
  ) {
    super();
  }
  toString() {
    const of = this.what === "release" ? "margin" : "reserve";
    return `${this.what === "post" ? "postMargin" : this.what === "release" ? "releaseMargin" : "withdraw"}(${accountLabel(this.i)}, ${this.frac}× its ${ASSET_NAMES[this.k]} ${of})`;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    const owner = w.accountOwners[this.i];
    const vault = w.f.vault.connect(owner);
    const token = w.tokens[this.k];
    let amount = 0n;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "owner",
      ownerActed: [id],
      tx: (pre) => {
        const a = pre.accounts[this.i];
        amount = fracOf(this.what === "release" ? a.margin[this.k] : a.reserve[this.k], this.frac);
        if (this.what === "withdraw") return () => vault.withdraw(id, token, amount, owner.address);
        if (this.what === "post") return () => vault.postMargin(id, token, amount);
        return () => vault.releaseMargin(id, token, amount);
      },
      judge: (pre, out) => {
        const label = `${this.toString()} [${amount}]`;
        const a = pre.accounts[this.i];
        const have = this.what === "release" ? a.margin[this.k] : a.reserve[this.k];
        if (amount === 0n) return mustRevert(label, out, "ZeroAmount", UNEXPECTED, "zero amount");
        if (amount > have) return mustRevert(label, out, this.what === "release" ? "InsufficientMargin" : "InsufficientReserve", UNEXPECTED, `only ${have} there`);
        if (this.what !== "release") return mustSucceed(label, out, "INV_EXIT", `the owner moves its own ${this.what === "post" ? "reserve into margin" : "reserve out"}`);
        if (a.positionMask === 0n && a.settlement >= 0n) {
          return mustSucceed(label, out, "INV_EXIT", "the account has no position and no debt (whatever the oracles say)");
        }
        allowOnly(label, out, ["BelowInitialMargin", "OracleUnhealthy"], (e) => e.name !== "OracleUnhealthy" || blamesUnpricedMarket(e, pre, a));
      },
    });
  }
}

class Exit extends Act {
  constructor(readonly i: number) {
    super();
  }
  check(m: Readonly<Model>) {
    const a = m.snap.accounts[this.i];
    return a.positionMask === 0n && a.settlement >= 0n;
  }
  toString() {
    return `exit(${accountLabel(this.i)}: no position, no debt → release all margin, withdraw everything)`;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    const owner = w.accountOwners[this.i];
    const vault = w.f.vault.connect(owner);
    await pinNextBlock(m);
    const pre = await snapshot(m, w, "pending", m.now, { full: false });
    const a = pre.accounts[this.i];
    if (a.positionMask !== 0n || a.settlement < 0n) return;
    const txs: { what: string; fn: string; args: unknown[]; tx: Tx }[] = [];
    for (let k = 0; k < 3; k++) {
      const args = [id, w.tokens[k], a.margin[k]] as const;
      if (a.margin[k] > 0n) txs.push({ what: `release ${a.margin[k]} ${ASSET_NAMES[k]}`, fn: "releaseMargin", args: [...args], tx: () => vault.releaseMargin(...args, GAS) });
    }
    for (let k = 0; k < 3; k++) {
      const args = [id, w.tokens[k], a.margin[k] + a.reserve[k], owner.address] as const;
      if (args[2] > 0n) txs.push({ what: `withdraw ${args[2]} ${ASSET_NAMES[k]}`, fn: "withdraw", args: [...args], tx: () => vault.withdraw(...args, GAS) });
    }
    if (txs.length === 0) return;
    // One block: the steps are compared at one time, as every other step.
    const b = await sendBundle(m, txs.map((t) => t.tx));
    const failed = b.receipts.findIndex((rc) => rc.status !== 1);
    if (failed >= 0) {
      const why = (await simulate([{ target: w.addr.vault, fn: txs[failed].fn, args: txs[failed].args }]))[0];
      fail("INV_EXIT", `"${this}": ${txs[failed].what} reverted${why ? ` (${fmtErr(why)})` : ""}; an account with no position and no debt can always take everything out, whatever the oracles say`);
    }
    const post = await snapshot(m, w, "latest", b.ts, { full: true });
    m.snap = post;
    await finish(w, { label: this.toString(), kind: "owner", pre, post, mined: true, txs: b.events.map((events) => ({ ts: b.ts, events })), ownerActed: [id] });
  }
}

class Settle extends Act {
  constructor(readonly i: number) {
    super();
  }
  toString() {
    return `settle(${accountLabel(this.i)}, by a stranger)`;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    await oneTx(m, w, {
      label: this.toString(),
      kind: "stranger",
      tag: (r) => {
        r.touched = [id];
        r.settled = id;
      },
      tx: () => () => w.f.engine.connect(w.f.stranger).settle(id),
      judge: (_pre, out) => mustSucceed(this.toString(), out, UNEXPECTED, "settle is permissionless"),
    });
  }
}

interface PolicyChoice {
  optOut: boolean;
  actions: number;
  cooldown: number;
  trigger: string;
  band: string;
  release: string;
  maxFee: string;
  assets: number[];
}

class SetPolicy extends Act {
  constructor(
    readonly i: number,
    readonly p: PolicyChoice,
  ) {
    super();
  }
  toString() {
    const p = this.p;
    if (p.optOut) return `setRebalancePolicy(${accountLabel(this.i)}, opt out)`;
    return `setRebalancePolicy(${accountLabel(this.i)}, actions ${p.actions}, trigger ${p.trigger}, target +${p.band}, release ${p.release}, cooldown ${p.cooldown}s, maxFee ${p.maxFee}, assets [${p.assets.map((k) => ASSET_NAMES[k]).join(",")}])`;
  }
  /** The named error RebalanceLogic.setPolicy raises for this policy (rules in its order), or undefined. */
  expected(): string | undefined {
    const p = this.p;
    // actions 0 opts out (the policy is cleared whatever the other fields say)
    if (p.optOut || p.actions === 0) return undefined;
    const trigger = wad(p.trigger);
    const target = trigger + wad(p.band);
    const band = wad("0.05");
    const release = p.release === "none" ? 0n : target + wad(p.release);
    if (trigger <= WAD) return "PolicyTriggerTooLow";
    if (target < trigger + band) return "PolicyBandTooNarrow";
    if (release !== 0n && release < target + band) return "PolicyBandTooNarrow";
    if (release > wad("16")) return "PolicyReleaseTooHigh";
    if ([trigger, target, release].some((r) => r % 10n ** 12n !== 0n)) return "PolicyRatioPrecision";
    // bits above REDUCE_FIRST (8) are unknown; REDUCE_FIRST orders a REDUCE and means nothing without one
    if (p.actions & ~15 || (p.actions & 8 && !(p.actions & 2))) return "PolicyUnknownActions";
    if (p.actions & 4 && release === 0n) return "PolicyReleaseRatioMissing";
    if (p.actions & 5 && p.assets.length === 0) return "PolicyTopUpAssetsMissing";
    if (new Set(p.assets).size !== p.assets.length) return "PolicyDuplicateAsset";
    if (p.cooldown > 86_400) return "PolicyCooldownTooLong";
    if (wad(p.maxFee) > wad("1000")) return "PolicyFeeTooHigh";
    return undefined;
  }
  async exec(m: Model, w: World) {
    const id = acctId(this.i);
    const p = this.p;
    const trigger = wad(p.trigger);
    const target = trigger + wad(p.band);
    const policy = {
      actions: p.optOut ? 0 : p.actions,
      cooldown: p.cooldown,
      triggerRatio: trigger,
      targetRatio: target,
      releaseRatio: p.release === "none" ? 0n : target + wad(p.release),
      maxFeeUsd: wad(p.maxFee),
      topUpAssets: p.assets.map((k) => w.tokens[k]),
    };
    const want = this.expected();
    await oneTx(m, w, {
      label: this.toString(),
      kind: "owner",
      ownerActed: [id],
      tx: () => () => w.f.engine.connect(w.accountOwners[this.i]).setRebalancePolicy(id, policy),
      judge: (_pre, out) => {
        if (want) mustRevert(this.toString(), out, want, UNEXPECTED, "policy rule");
        else mustSucceed(this.toString(), out, UNEXPECTED, "the policy is valid");
      },
    });
  }
}

// ============================================================================================ keepers

/** The keeper claims the rewards the engine credited it (liquidations, rebalances). */
class ClaimRewards extends Act {
  toString() {
    return "claimKeeperRewards(keeper)";
  }
  async exec(m: Model, w: World) {
    await oneTx(m, w, {
      label: this.toString(),
      kind: "donation",
      pre: "pool",
      tx: () => () => w.f.engine.connect(w.f.keeper).claimKeeperRewards(w.f.keeper.address),
      judge: (pre, out) => {
        // Only this keeper is ever credited in the model, so the total is its balance.
        if (pre.keeperRewards === 0n) mustRevert(this.toString(), out, "NothingToClaim", UNEXPECTED, "nothing was credited");
        else mustSucceed(this.toString(), out, "INV_SOLVENCY", "the pool holds every credited reward");
      },
      tag: (r) => {
        if (!r.mined) return;
        const I = "INV_SOLVENCY";
        if (r.post.keeperRewards !== 0n) fail(I, `"${this}": ${r.post.keeperRewards} still credited after the claim`);
        if (r.post.poolUsdc !== r.pre.poolUsdc - r.pre.keeperRewards) {
          fail(I, `"${this}": the pool paid ${r.pre.poolUsdc - r.post.poolUsdc} USDC units for a claim of ${r.pre.keeperRewards}`);
        }
        if (r.post.keeperUsdc !== r.pre.keeperUsdc) fail(I, `"${this}": the keeper's balance + credit moved ${r.post.keeperUsdc - r.pre.keeperUsdc}`);
        if (r.post.capital !== r.pre.capital) fail(I, `"${this}": LP capital moved ${r.pre.capital} → ${r.post.capital} on a claim`);
      },
    });
  }
}

/** A keeper's target: a fixed account, or (undefined) the one a keeper would pick — chosen from the state before. */
type Target = number | undefined;
const targetLabel = (t: Target, rule: string) => (t === undefined ? rule : accountLabel(t));

class Liquidate extends Act {
  constructor(readonly target: Target) {
    super();
  }
  toString() {
    return `liquidate(${targetLabel(this.target, "the least healthy account")}, by keeper)`;
  }
  pick(pre: Snapshot): number {
    if (this.target !== undefined) return this.target;
    let best = 0;
    pre.accounts.forEach((a, i) => {
      const b = pre.accounts[best];
      if (a.priced && (!b.priced || a.health! < b.health!)) best = i;
    });
    return best;
  }
  async exec(m: Model, w: World) {
    let id = 0n;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "liquidate",
      // what a keeper would see of the rescue that may have priority (INV_LIQUIDATION: it must be Ready)
      extraPre: needsExtra(w, this.target === undefined ? w.accountIds : [acctId(this.target)]),
      tx: (pre) => {
        id = acctId(this.pick(pre));
        return () => w.f.engine.connect(w.f.keeper).liquidate(id);
      },
      judge: (_pre, out) => allowOnly(`${this} [account ${id}]`, out, ["NotLiquidatable", "OracleUnhealthy", "RescueAvailable"]),
      tag: (r) => (r.liquidated = id),
    });
  }
}

class BuyCollateral extends Act {
  constructor(
    readonly target: Target,
    readonly k: number,
    readonly big: boolean,
  ) {
    super();
  }
  toString() {
    const what = this.target === undefined ? "the first account with debt and WETH or WBTC margin, that token" : `${accountLabel(this.target)}, ${ASSET_NAMES[this.k]}`;
    return `buyCollateral(${what}, repay ${this.big ? "up to 1,000,000" : "10"} USDC, by keeper)`;
  }
  async exec(m: Model, w: World) {
    const repay = (this.big ? 1_000_000n : 10n) * 10n ** 6n;
    let [id, k] = [0n, this.k];
    await oneTx(m, w, {
      label: this.toString(),
      kind: "buy",
      tx: (pre) => {
        let i = this.target ?? pre.accounts.findIndex((a) => a.settlement < 0n && (a.margin[1] > 0n || a.margin[2] > 0n));
        if (this.target === undefined && i >= 0) k = pre.accounts[i].margin[1] > 0n ? 1 : 2;
        if (i < 0) i = 0;
        id = acctId(i);
        return () => w.f.engine.connect(w.f.keeper).buyCollateral(id, w.tokens[k], repay, 0n);
      },
      judge: (_pre, out) => allowOnly(`${this} [account ${id}, ${ASSET_NAMES[k]}]`, out, ["NothingToBuy", "NotLiquidatable", "OracleUnhealthy"]),
      tag: (r) => (r.bought = { id, token: k, repay }),
    });
  }
}

const needsExtra = (w: World, ids: bigint[]): Extra[] =>
  [...new Set(ids)].map((id) => ({ key: `needs${id}`, target: w.addr.rebalancer, fn: "needsRebalance", args: [id] }));
const needsMap = (pre: Snapshot, ids: bigint[]) => new Map([...new Set(ids)].map((id) => [id, Number(pre.extra[`needs${id}`].value![1])]));

class Rebalance extends Act {
  constructor(readonly target: Target) {
    super();
  }
  toString() {
    return `rebalance(${targetLabel(this.target, "the first account needsRebalance calls Ready")}, by keeper)`;
  }
  async exec(m: Model, w: World) {
    let id = 0n;
    const all = w.accountIds;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "rebalance",
      extraPre: needsExtra(w, this.target === undefined ? all : [acctId(this.target)]),
      tx: (pre) => {
        const ready = all.find((x) => Number(pre.extra[`needs${x}`]?.value?.[1] ?? 99) === 0);
        id = this.target !== undefined ? acctId(this.target) : ready ?? 1n;
        return () => w.f.rebalancer.connect(w.f.keeper).rebalance(id);
      },
      judge: (_pre, out) => allowOnly(`${this} [account ${id}]`, out, ["NotOptedIn", "NothingToRebalance", "Liquidatable", "OracleUnhealthy"]),
      tag: (r) => (r.rebalance = { ids: [id], single: true, needs: needsMap(r.pre, [id]) }),
    });
  }
}

class RebalanceBatch extends Act {
  constructor(readonly idx: number[]) {
    super();
  }
  toString() {
    return `rebalanceBatch([${this.idx.map((i) => i + 1).join(", ")}], by keeper)`;
  }
  async exec(m: Model, w: World) {
    const ids = this.idx.map(acctId);
    await oneTx(m, w, {
      label: this.toString(),
      kind: "batch",
      extraPre: needsExtra(w, ids),
      tx: () => () => w.f.rebalancer.connect(w.f.keeper).rebalanceBatch(ids),
      judge: (_pre, out) => mustSucceed(this.toString(), out, "INV_REBALANCE_LOCAL", "a batch skips what it cannot rebalance"),
      tag: (r) => (r.rebalance = { ids, single: false, needs: needsMap(r.pre, ids) }),
    });
  }
}

class Poke extends Act {
  constructor(
    readonly mk: number,
    readonly account: number | undefined,
  ) {
    super();
  }
  toString() {
    return this.account === undefined ? `oracle.poke(${MARKET_NAMES[this.mk]}, by a stranger)` : `engine.pokeAccount(${accountLabel(this.account)}, by a stranger)`;
  }
  async exec(m: Model, w: World) {
    await oneTx(m, w, {
      label: this.toString(),
      kind: "poke",
      tx: () =>
        this.account === undefined
          ? () => w.f.oracle.connect(w.f.stranger).poke(w.marketAssets[this.mk])
          : () => w.f.engine.connect(w.f.stranger).pokeAccount(acctId(this.account!)),
      judge: (pre, out) => {
        if (this.account === undefined) return mustSucceed(this.toString(), out, UNEXPECTED, "poke never reverts");
        const a = pre.accounts[this.account];
        if (openMarkets(a).every((mk) => marketPrice(pre, mk).ok)) return mustSucceed(this.toString(), out, "INV_ORACLE", "every market of its positions is priced (collateral oracles never block)");
        allowOnly(this.toString(), out, ["OracleUnhealthy"], (e) => blamesUnpricedMarket(e, pre, a));
      },
    });
  }
}

// ============================================================================================ LPs

const LP_AMOUNTS = [1_000n * 10n ** 6n, 100_000n * 10n ** 6n, 2_000_000n * 10n ** 6n];

class LpDeposit extends Act {
  constructor(
    readonly j: number,
    readonly byStranger: boolean,
  ) {
    super();
  }
  toString() {
    return `pool.deposit(${["1,000", "100,000", "2,000,000"][this.j]} USDC for the LP, by ${this.byStranger ? "a stranger" : "the LP"})`;
  }
  async exec(m: Model, w: World) {
    const assets = LP_AMOUNTS[this.j];
    const lp = w.f.lp;
    const from = this.byStranger ? w.f.stranger : lp;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "lp",
      pre: "pool",
      extraPre: [{ key: "preview", target: w.addr.pool, fn: "previewDeposit", args: [assets] }],
      tx: () => () => w.f.pool.connect(from).deposit(assets, lp.address),
      judge: (pre, out) => {
        if (!poolPriceable(pre)) return mustRevert(this.toString(), out, "PoolValuationUnavailable", "INV_ORACLE", "a market with open interest has no valid price");
        if (this.byStranger && pre.lp!.locked !== 0n) return mustRevert(this.toString(), out, "ReceiverLocked", "INV_ROUND_TRIP", "a stranger must not extend the LP's running lock");
        mustSucceed(this.toString(), out, UNEXPECTED, "the pool can be valued");
      },
      extraPost: (_pre, events) => {
        const minted = events.find((e) => e.name === "Deposit")!.args.shares as bigint;
        return [{ key: "value", target: w.addr.pool, fn: "previewRedeem", args: [minted] }];
      },
      tag: (r, out) => {
        const previewShares = r.pre.extra.preview?.value?.[0] as bigint;
        r.lpDeposit = { assets, previewShares };
        if (out.ok) {
          r.lpDeposit.minted = out.events.find((e) => e.name === "Deposit")!.args.shares;
          r.lpDeposit.redeemValueAfter = r.post.extra.value.value![0];
        }
      },
    });
  }
}

type RedeemKind = "quarter" | "max" | "all";

class LpRedeem extends Act {
  constructor(readonly kind: RedeemKind) {
    super();
  }
  toString() {
    return `pool.redeem(${this.kind === "quarter" ? "a quarter of maxRedeem" : this.kind === "max" ? "maxRedeem" : "every share, locked or not"}, by the LP)`;
  }
  async exec(m: Model, w: World) {
    const lp = w.f.lp;
    let shares = 0n;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "lp",
      pre: "pool",
      tx: (pre) => {
        const max = pre.lp!.maxRedeem;
        shares = this.kind === "quarter" ? max / 4n : this.kind === "max" ? max : pre.lp!.shares;
        return () => w.f.pool.connect(lp).redeem(shares, lp.address, lp.address);
      },
      judge: (pre, out) => {
        const label = `${this.toString()} [${shares} shares]`;
        if (!poolPriceable(pre)) return mustRevert(label, out, "PoolValuationUnavailable", "INV_ORACLE", "a market with open interest has no valid price");
        if (pre.lp!.locked !== 0n && pre.lp!.shares < pre.lp!.locked + shares) return mustRevert(label, out, "SharesLocked", "INV_ROUND_TRIP", "shares minted within the holding period");
        if (shares > pre.lp!.maxRedeem) return mustRevert(label, out, "ERC4626ExceededMaxRedeem", UNEXPECTED, "above maxRedeem");
        mustSucceed(label, out, UNEXPECTED, "within maxRedeem");
      },
      tag: (r, out) => {
        // ERC-4626 previewRedeem, exact: shares × (totalAssets + 1) / (totalSupply + 10^6), rounded down.
        const previewAssets = r.pre.totalAssets === undefined ? 0n : (shares * (r.pre.totalAssets + 1n)) / (r.pre.totalSupply + 10n ** 6n);
        r.lpRedeem = { shares, previewAssets };
        if (out.ok) r.lpRedeem.received = out.events.find((e) => e.name === "Withdraw")!.args.assets;
      },
    });
  }
}

type Inner = "closeLoser" | "closeWinner" | "liquidate" | "open" | "rebalance" | "priceDown" | "priceUp" | "nothing";

/** The just-in-time LP attack: deposit, one action, redeem — all in one block. */
class Jit extends Act {
  constructor(
    readonly inner: Inner,
    readonly big: boolean,
  ) {
    super();
  }
  toString() {
    return `jitLp(deposit ${this.big ? "9,000,000" : "1,000,000"} USDC → ${this.inner} → redeem everything, one block)`;
  }
  async exec(m: Model, w: World) {
    if (m.jitUsed >= w.f.jit.length) return;
    const attacker = w.f.jit[m.jitUsed];
    const assets = (this.big ? 9_000_000n : 1_000_000n) * 10n ** 6n;
    await pinNextBlock(m);
    const pre = await snapshot(m, w, "pending", m.now, {
      full: false,
      extra: [
        { key: "preview", target: w.addr.pool, fn: "previewDeposit", args: [assets] },
        { key: "usdc", target: w.tokens[0], fn: "balanceOf", args: [attacker.address] },
      ],
    });
    if (!poolPriceable(pre)) return; // LpDeposit covers deposits that must wait for the oracles
    m.jitUsed += 1;
    const shares = pre.extra.preview.value![0] as bigint;
    const inner = this.innerTx(pre, w);
    const pool = w.f.pool.connect(attacker);
    const txs: Tx[] = [() => pool.deposit(assets, attacker.address, GAS)];
    if (inner) txs.push(inner.tx);
    txs.push(() => pool.redeem(shares, attacker.address, attacker.address, GAS));
    const b = await sendBundle(m, txs);
    if (b.receipts[0].status !== 1) fail(UNEXPECTED, `"${this}": the deposit reverted`);
    const redeemed = b.receipts[b.receipts.length - 1].status === 1;
    count(this.toString(), `${this.inner}: inner ${inner ? (b.receipts[1].status === 1 ? "ok" : "reverted") : "none"}, redeem ${redeemed ? "ok" : "reverted"}`);
    const post = await snapshot(m, w, "latest", b.ts, {
      full: true,
      extra: [
        { key: "value", target: w.addr.pool, fn: "previewRedeem", args: [shares] },
        { key: "usdc", target: w.tokens[0], fn: "balanceOf", args: [attacker.address] },
        { key: "locked", target: w.addr.pool, fn: "lockedShares", args: [attacker.address] },
      ],
    });
    m.snap = post;
    const label = `${this.toString()} [${inner?.what ?? "no action"}]`;
    const minted = b.events[0].find((e) => e.name === "Deposit")!.args.shares as bigint;
    if (minted !== shares) fail("INV_ROUND_TRIP", `"${label}": minted ${minted} shares, previewDeposit said ${shares}`);
    const r: StepRecord = {
      label,
      kind: "jit",
      pre,
      post,
      mined: true,
      txs: b.events.map((events, x) => ({ ts: b.ts, events: b.receipts[x].status === 1 ? events : [] })),
      jit: {
        attacker: attacker.address,
        assets,
        minted,
        usdcBefore: pre.extra.usdc.value![0],
        usdcAfter: post.extra.usdc.value![0],
        redeemed,
        // undefined when the block left the pool without a valuation (the inner step tripped a breaker)
        redeemValueAfter: post.extra.value.ok ? post.extra.value.value![0] : undefined,
        constantPrice: !this.inner.startsWith("price"),
        inner: inner?.what ?? "no action",
      },
    };
    await finish(w, r);
    // The holding period: the redeem in the deposit's block must not go through, and the shares are locked.
    if (redeemed) fail("INV_ROUND_TRIP", `"${label}": redeemed in the block of its deposit (shares must be locked for the holding period)`);
    const locked = post.extra.locked;
    if (locked.ok) {
      const [lockedShares, unlockAt] = [locked.value![0] as bigint, locked.value![1] as bigint];
      const until = BigInt(b.ts) + (post.holdPeriod ?? 0n);
      if (lockedShares !== minted || unlockAt !== until) fail("INV_ROUND_TRIP", `"${label}": lockedShares = (${lockedShares}, ${unlockAt}), expected (${minted}, ${until})`);
    }
  }
  innerTx(pre: Snapshot, w: World): { what: string; tx: Tx } | undefined {
    const f = w.f;
    const positions = pre.accounts.flatMap((a, i) =>
      openMarkets(a)
        .filter((mk) => marketPrice(pre, mk).ok)
        .map((mk) => {
          const px = marketPrice(pre, mk).px;
          return { i, mk, size: a.sizes[mk], pnl: (a.sizes[mk] * (px - a.entries[mk])) / WAD };
        }),
    );
    switch (this.inner) {
      case "closeLoser":
      case "closeWinner": {
        if (positions.length === 0) return undefined;
        positions.sort((x, y) => (x.pnl < y.pnl ? -1 : x.pnl > y.pnl ? 1 : 0));
        const p = this.inner === "closeLoser" ? positions[0] : positions[positions.length - 1];
        const eng = f.engine.connect(w.accountOwners[p.i]);
        return { what: `account ${p.i + 1} closes its ${MARKET_NAMES[p.mk]} position (PnL ${p.pnl / 10n ** 16n / 100n} USD)`, tx: () => eng.modifyPosition(acctId(p.i), p.mk, -p.size, p.size > 0n ? 0n : MAX, GAS) };
      }
      case "liquidate": {
        const i = Math.max(0, pre.accounts.findIndex((a) => a.priced && a.health! < WAD));
        return { what: `keeper liquidates account ${i + 1}`, tx: () => f.engine.connect(f.keeper).liquidate(acctId(i), GAS) };
      }
      case "open": {
        const eng = f.engine.connect(w.accountOwners[0]);
        return { what: "account 1 opens 5 ETH long", tx: () => eng.modifyPosition(1n, 0, 5n * WAD, MAX, GAS) };
      }
      case "rebalance": {
        const i = Math.max(0, pre.accounts.findIndex((a) => a.policy.actions !== 0));
        return { what: `keeper rebalances account ${i + 1}`, tx: () => f.rebalancer.connect(f.keeper).rebalance(acctId(i), GAS) };
      }
      case "priceDown":
      case "priceUp": {
        const feed = pre.feeds[0];
        const answer = this.inner === "priceDown" ? (feed.answer * 90n) / 100n : (feed.answer * 110n) / 100n;
        return { what: `ETH feed moves ${this.inner === "priceDown" ? "−" : "+"}10 %`, tx: () => w.feeds[0].setAnswer(answer, GAS) };
      }
      case "nothing":
        return undefined;
    }
  }
}

// ============================================================================================ the world moves

type PriceKind = "up2" | "down2" | "up15" | "down15" | "up20" | "down20" | "tripUp" | "tripDown" | "refresh" | "sameTsSmall" | "sameTsCrash" | "back" | "stale";

const PRICE_MOVE: Record<string, [bigint, bigint]> = {
  up2: [102n, 100n],
  down2: [98n, 100n],
  up15: [115n, 100n],
  down15: [85n, 100n],
  up20: [120n, 100n],
  down20: [80n, 100n],
  tripUp: [140n, 100n],
  tripDown: [65n, 100n],
  refresh: [1n, 1n],
  sameTsSmall: [103n, 100n],
  sameTsCrash: [70n, 100n],
  back: [101n, 100n],
  stale: [1n, 1n],
};

class PriceMove extends Act {
  constructor(
    readonly mk: number,
    readonly kind: PriceKind,
  ) {
    super();
  }
  toString() {
    const d: Record<PriceKind, string> = {
      up2: "+2 %",
      down2: "−2 %",
      up15: "+15 %",
      down15: "−15 %",
      up20: "+20 %",
      down20: "−20 %",
      tripUp: "+40 % (trips the breaker)",
      tripDown: "−35 % (trips the breaker)",
      refresh: "same answer, new round",
      sameTsSmall: "+3 % at the same updatedAt",
      sameTsCrash: "−30 % at the same updatedAt",
      back: "+1 % with updatedAt 30 s before the recorded round",
      stale: "new round with updatedAt past the heartbeat",
    };
    return `feed(${MARKET_NAMES[this.mk]}: ${d[this.kind]})`;
  }
  async exec(m: Model, w: World) {
    const feed = w.feeds[this.mk];
    await oneTx(m, w, {
      label: this.toString(),
      kind: "price",
      pre: "reuse",
      tx: (pre) => {
        const cur = pre.feeds[this.mk];
        const [num, den] = PRICE_MOVE[this.kind];
        let answer = (cur.answer * num) / den;
        // Keep answers within 10 .. 1,000,000 USD (8 decimals): a move that would leave the band goes the other way.
        if (answer < 10n * 10n ** 8n || answer > 10n ** 14n) answer = (cur.answer * den) / num;
        if (this.kind === "sameTsSmall" || this.kind === "sameTsCrash") return () => feed.setRound(cur.roundId, answer, cur.startedAt, cur.updatedAt);
        if (this.kind === "back") {
          const recorded = pre.obs[this.mk].updatedAt < cur.updatedAt ? pre.obs[this.mk].updatedAt : cur.updatedAt;
          return () => feed.setRound(cur.roundId + 1n, answer, recorded - 30n, recorded - 30n);
        }
        if (this.kind === "stale") {
          const at = BigInt(m.now - CRYPTO_FEED.heartbeat - 1);
          return () => feed.setRound(cur.roundId + 1n, answer, at, at);
        }
        return () => feed.setAnswer(answer);
      },
      judge: (_pre, out) => mustSucceed(this.toString(), out, UNEXPECTED, "a mock feed takes any round"),
    });
  }
}

class TimePasses extends Act {
  constructor(readonly dt: number) {
    super();
  }
  toString() {
    return `time(+${this.dt} s)`;
  }
  async exec(m: Model, w: World) {
    const pre = m.snap;
    await passTime(m, this.dt);
    const post = await snapshot(m, w, "latest", m.now - 1, { full: true });
    m.snap = post;
    await finish(w, { label: this.toString(), kind: "time", pre, post, mined: true, txs: [] });
  }
}

type DonationTarget = "vault" | "pool" | "engine" | "rebalancer" | "insurance";

class Donate extends Act {
  constructor(
    readonly target: DonationTarget,
    readonly k: number,
    readonly j: number,
  ) {
    super();
  }
  toString() {
    if (this.target === "insurance") return `pool.donateInsurance(${fmtAmt(0, this.j)}, by a stranger)`;
    return `transfer(${fmtAmt(this.k, this.j)} straight to the ${this.target}, by a stranger)`;
  }
  async exec(m: Model, w: World) {
    const s = w.f.stranger;
    const to = this.target === "insurance" ? "" : w.addr[this.target];
    const token = [w.f.usdc, w.f.weth, w.f.wbtc][this.target === "insurance" ? 0 : this.k].connect(s);
    const amount = AMOUNTS[this.target === "insurance" ? 0 : this.k][this.j] / 10n;
    await oneTx(m, w, {
      label: this.toString(),
      kind: "donation",
      tx: () => (this.target === "insurance" ? () => w.f.pool.connect(s).donateInsurance(amount) : () => token.transfer(to, amount)),
      judge: (_pre, out) => mustSucceed(this.toString(), out, UNEXPECTED, "donations are always accepted"),
    });
  }
}

class SetHoldPeriod extends Act {
  constructor(readonly seconds: number) {
    super();
  }
  toString() {
    return `pool.setHoldPeriod(${this.seconds} s, by governance)`;
  }
  async exec(m: Model, w: World) {
    await oneTx(m, w, {
      label: this.toString(),
      kind: "governance",
      tx: () => () => w.f.pool.connect(w.f.deployer).setHoldPeriod(this.seconds),
      judge: (_pre, out) => {
        if (this.seconds < 60 || this.seconds > 7 * 86_400) mustRevert(this.toString(), out, "HoldPeriodOutOfBounds", UNEXPECTED, "bounds 60 s .. 7 days");
        else mustSucceed(this.toString(), out, UNEXPECTED, "within bounds");
      },
    });
  }
}

// ============================================================================================ arbitraries

const account = fc.integer({ min: 0, max: 2 });
const token = fc.integer({ min: 0, max: 2 });
const market = fc.integer({ min: 0, max: 1 });
const size = fc.integer({ min: 0, max: 2 });
/** A keeper's target: half the time the account a keeper would pick. */
const target: fc.Arbitrary<Target> = fc.oneof(fc.constant(undefined), account);
/** Ordinary moves four times as often as the ones that leave a feed unusable for a while. */
const priceKind = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom<PriceKind>("up2", "down2", "up15", "down15", "up20", "down20", "refresh", "sameTsSmall") },
  { weight: 1, arbitrary: fc.constantFrom<PriceKind>("tripUp", "tripDown", "sameTsCrash", "back", "stale") },
);

const policy: fc.Arbitrary<PolicyChoice> = fc.record({
  optOut: fc.constantFrom(false, false, false, false, false, false, false, true),
  actions: fc.constantFrom(1, 2, 3, 3, 4, 5, 6, 7, 7, 0, 8, 11, 16),
  cooldown: fc.constantFrom(0, 0, 60, 3_600, 2 * 86_400),
  trigger: fc.constantFrom("1.1", "1.3", "1.6", "2", "1"),
  band: fc.constantFrom("0.05", "0.3", "1", "0.01"),
  release: fc.constantFrom("none", "0.05", "2", "0.01"),
  maxFee: fc.constantFrom("0", "1", "20", "2000"),
  assets: fc.constantFrom([0], [1, 0], [2, 1, 0], [0, 1], [], [0, 0]),
});

/** Every action with its weight. */
export function actionArbitrary(): fc.Arbitrary<Act> {
  const w = (weight: number, arbitrary: fc.Arbitrary<Act>) => ({ weight, arbitrary });
  return fc.oneof(
    w(12, fc.tuple(account, market, fc.constantFrom<TradeKind>("long", "short", "long", "short", "reduce", "close", "flip"), fc.constantFrom(0.05, 0.2, 0.5, 0.9, 0.9, 1.3)).map((a) => new Trade(...a))),
    w(2, fc.tuple(account, market, fc.boolean(), fc.constantFrom(0.1, 0.5)).map((a) => new RoundTripTrade(...a))),
    w(3, fc.tuple(account, token, size, fc.boolean()).map((a) => new VaultDeposit(...a))),
    w(4, fc.tuple(account, token, fc.constantFrom<VaultMove>("withdraw", "post", "release", "release"), fc.constantFrom(0.1, 0.5, 1, 1.5)).map((a) => new VaultOwnerMove(...a))),
    w(2, fc.tuple(account, token, fc.boolean()).map((a) => new StrangerMargin(...a))),
    w(1, account.map((i) => new Exit(i))),
    w(1, account.map((i) => new Settle(i))),
    w(2, fc.tuple(account, policy).map((a) => new SetPolicy(...a))),
    w(5, target.map((t) => new Liquidate(t))),
    w(2, fc.tuple(target, token, fc.boolean()).map((a) => new BuyCollateral(...a))),
    w(5, target.map((t) => new Rebalance(t))),
    w(1, fc.constant(new ClaimRewards())),
    w(2, fc.array(account, { minLength: 1, maxLength: 4 }).map((ids) => new RebalanceBatch(ids))),
    w(2, fc.tuple(market, fc.option(account, { nil: undefined })).map((a) => new Poke(...a))),
    w(2, fc.tuple(size, fc.constantFrom(false, false, true)).map((a) => new LpDeposit(...a))),
    w(2, fc.constantFrom<RedeemKind>("quarter", "max", "all").map((k) => new LpRedeem(k))),
    w(3, fc.tuple(fc.constantFrom<Inner>("closeLoser", "closeLoser", "closeWinner", "liquidate", "open", "rebalance", "priceDown", "priceUp", "nothing"), fc.boolean()).map((a) => new Jit(...a))),
    w(10, fc.tuple(market, priceKind).map((a) => new PriceMove(...a))),
    w(4, fc.constantFrom(1, 1, 61, 61, 901, 901, 3_601, 7_201).map((dt) => new TimePasses(dt))),
    w(2, fc.tuple(fc.constantFrom<DonationTarget>("vault", "pool", "engine", "rebalancer", "insurance"), token, size).map((a) => new Donate(...a))),
    w(1, fc.constantFrom(30, 60, 900, 3_600, 8 * 86_400).map((s) => new SetHoldPeriod(s))),
  );
}

/** The command classes, for fixed attack sequences. */
export const Commands = {
  Trade,
  RoundTripTrade,
  VaultDeposit,
  StrangerMargin,
  VaultOwnerMove,
  Exit,
  Settle,
  SetPolicy,
  Liquidate,
  BuyCollateral,
  Rebalance,
  RebalanceBatch,
  ClaimRewards,
  Poke,
  LpDeposit,
  LpRedeem,
  Jit,
  PriceMove,
  TimePasses,
  Donate,
  SetHoldPeriod,
};
