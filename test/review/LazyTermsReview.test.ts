/**
 * Review of f7cb8a3 "lazy valuation terms": `AccountLogic.valuation(…, withIM)` (IM left
 * at 0) in liquidate, buyCollateral, the plan of a policy without RELEASE, the state after a REDUCE and a request's
 * backing; and `PlanLogic._planRestore` pricing the close of every position (closeFeeUsd) only where a REDUCE is
 * weighed. The commit claims the same integers, reverts and events as before for every input.
 *
 * Two kinds of evidence:
 * - targeted attacks on each changed path, every expected value computed here from the documented formulas
 *   (lib/margin.ts, test/helpers/*) and the full valuation the views still use (`accountState`, `rebalanceInputs`
 *   with IM and the close fee computed unconditionally);
 * - random worlds (4 seeds × 70 rounds; 10 accounts, every policy shape incl. RELEASE without TOP_UP, REDUCE_FIRST with and
 *   without a REDUCE that may act, rescues below 1, bad debt, σ above its floor after grid samples) in which every
 *   rebalance, batch, liquidation, collateral sale and order request is checked against the views and the models,
 *   and whose full trace (every return value, revert data and raw log, every view) can be written out
 *   (LAZY_TRACE_OUT=path). At review time the traces of f7cb8a3 and of its parent (72dbd98), run in the same hour,
 *   agreed to the byte. They are not compared to stored digests here: the raw logs carry block times, which follow
 *   the wall clock's hour (the worlds start on the volatility grid after the fixture), so a stored digest held for
 *   an hour only.
 *
 * Block base fee is pinned to 0 for every transaction (eth_call runs at base fee 0 too), so a plan read with
 * `needsRebalance` is the plan the transaction applies (keeper fee = the flat 1 USD, capped by the policy). Block
 * times are set explicitly, relative to the volatility grid, so the trace does not depend on the wall clock.
 */
import { expect } from "chai";
import { createHash } from "crypto";
import { writeFileSync } from "fs";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { ACTION, DEFAULT_RISK, HAIRCUTS, MAJOR_MARKET, wad } from "../../deploy/params";
import { E18, USDC, VOL_INTERVAL } from "../helpers/fixtures";
import {
  abs,
  closeSize,
  liquidationFraction as modelLiquidationFraction,
  MAX_UINT,
  mmr,
  mulDivDown,
  mulDivUp,
  sqrtHorizon,
  USDC_SCALE,
  WAD,
  wDivDown,
  wMulDown,
  wMulUp,
} from "../helpers/marginMath";
import { rebalanceFixture, reduceFraction, STATUS, type RebalanceFixture } from "../helpers/rebalance";
import type { ChainState } from "../../lib/margin";
import { prng } from "../../sim/population";

const R = DEFAULT_RISK.keeperReward;
const LIQ_T = DEFAULT_RISK.liquidationTargetRatio;
const M = { ...MAJOR_MARKET, maxFundingRate: 0n };
const SQRT_H = sqrtHorizon(DEFAULT_RISK.volHorizon);
const BASE_FEE_USD = wad("1"); // DEFAULT_REBALANCER.baseFeeUsd: the keeper fee at base fee 0
const RF = ACTION.REDUCE_FIRST;
const { TOP_UP, REDUCE, RELEASE } = ACTION;

/** Seeds of the random worlds. */
const SEEDS_OF_WORLDS = [7, 42, 20261207, 99537314];

type F = RebalanceFixture;
type Signer = F["alice"];

// ------------------------------------------------------------------------------------------ chain control

let clock = 0;
/** Next transaction's block: base fee 0, time = clock + 1 (explicit: no wall-clock dependence). */
async function nextBlock() {
  clock += 1;
  await time.setNextBlockTimestamp(clock);
  await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x0"]);
}
/** Moves the explicit clock to `offset` seconds into the grid interval `k` intervals ahead. */
async function startClock(offset: number) {
  const latest = await time.latest();
  clock = (Math.floor(latest / VOL_INTERVAL) + 1) * VOL_INTERVAL + offset;
  await time.setNextBlockTimestamp(clock + 1);
}

/** Views run in the pending block: the time the next transaction will have (set after every send), base fee 0. */
const V = { blockTag: "pending" } as const;

const GAS = { gasLimit: 12_000_000, maxFeePerGas: 10n ** 9n, maxPriorityFeePerGas: 0n };

interface Sent {
  ok: boolean;
  revert?: string;
  block?: number;
  logs: { address: string; topics: readonly string[]; data: string }[];
}
/** Sends (mined even when it fails) and returns the raw logs or the revert data. */
async function send(fn: (o: typeof GAS) => Promise<{ wait: () => Promise<unknown> }>): Promise<Sent> {
  await nextBlock();
  try {
    const tx = await fn(GAS);
    const rc = (await tx.wait()) as { blockNumber: number; logs: { address: string; topics: readonly string[]; data: string }[] };
    await time.setNextBlockTimestamp(clock + 1); // the pending block (views) at the next transaction's time
    return { ok: true, block: rc.blockNumber, logs: rc.logs.map((l) => ({ address: l.address, topics: [...l.topics], data: l.data })) };
  } catch (e: unknown) {
    const data = (e as { data?: string }).data;
    if (typeof data !== "string") throw e;
    await time.setNextBlockTimestamp(clock + 1);
    return { ok: false, revert: data, logs: [] };
  }
}

// ------------------------------------------------------------------------------------------ prices (cents)

const px = { eth: 200_000n, btc: 3_000_000n }; // USD cents
const wadOf = (cents: bigint) => cents * 10n ** 16n;

async function setPrices(f: F, ethCents: bigint, btcCents: bigint) {
  px.eth = ethCents;
  px.btc = btcCents;
  await send((o) => f.ethFeed.setAnswer(ethCents * 10n ** 6n, o) as never);
  await send((o) => f.btcFeed.setAnswer(btcCents * 10n ** 6n, o) as never);
  await send((o) => f.oracle.poke(f.weth, o) as never);
  await send((o) => f.oracle.poke(f.wbtc, o) as never);
}

/** ETH down (or up) `bps` per round until `accept(accountState(id).health)`: the price found. */
async function walkEth(f: F, id: bigint, bps: bigint, accept: (h: bigint) => boolean, btcBps = 0n): Promise<bigint> {
  for (let i = 0; i < 60; i++) {
    const h = (await f.engine.accountState(id, V)).health;
    if (accept(h)) return px.eth;
    await setPrices(f, (px.eth * (10_000n + bps)) / 10_000n, (px.btc * (10_000n + btcBps)) / 10_000n);
  }
  throw new Error("no price satisfies the condition");
}

// ------------------------------------------------------------------------------------------ models

interface Asset {
  token: string;
  decimals: number;
  haircut: bigint;
  price: () => bigint;
}
async function assetsOf(f: F): Promise<Record<string, Asset>> {
  const usdc = await f.usdc.getAddress();
  const weth = await f.weth.getAddress();
  const wbtc = await f.wbtc.getAddress();
  return {
    [usdc]: { token: usdc, decimals: 6, haircut: HAIRCUTS.USDC, price: () => WAD },
    [weth]: { token: weth, decimals: 18, haircut: HAIRCUTS.WETH, price: () => wadOf(px.eth) },
    [wbtc]: { token: wbtc, decimals: 8, haircut: HAIRCUTS.WBTC, price: () => wadOf(px.btc) },
  };
}

interface Held {
  market: bigint;
  size: bigint;
  price: bigint;
}
async function positionsOf(f: F, id: bigint): Promise<Held[]> {
  const out: Held[] = [];
  for (const [market, p] of [
    [f.ethMarket, wadOf(px.eth)],
    [f.btcMarket, wadOf(px.btc)],
  ] as const) {
    const size = (await f.engine.position(id, market, V)).size;
    if (size !== 0n) out.push({ market, size, price: p });
  }
  return out;
}

/** AccountLogic.floorInitialMargin: Σ N·mmr(σ = imVolFloor)·imFactor (order's market at |size| + |Δ|) + R. */
async function floorIM(f: F, id: bigint, market: bigint, delta: bigint): Promise<bigint> {
  let im = 0n;
  for (const [m, p] of [
    [f.ethMarket, wadOf(px.eth)],
    [f.btcMarket, wadOf(px.btc)],
  ] as const) {
    const held = abs((await f.engine.position(id, m, V)).size);
    const size = m === market ? held + abs(delta) : held;
    if (m !== market && held === 0n) continue;
    const n = mulDivUp(size, p, WAD);
    im += wMulUp(wMulUp(n, mmr(M, n, M.imVolFloor, SQRT_H)), M.imFactor);
  }
  return im + R;
}

/** The plan's fee at base fee 0: the flat keeper fee within the cap, whole units; a rescue's at least min(R, cap). */
function planFee(maxFeeUsd: bigint, rescue: boolean): bigint {
  let fee = BASE_FEE_USD < maxFeeUsd ? BASE_FEE_USD : maxFeeUsd;
  fee -= fee % USDC_SCALE;
  if (!rescue) return fee;
  let reward = R < maxFeeUsd ? R : maxFeeUsd;
  reward -= reward % USDC_SCALE;
  return fee > reward ? fee : reward;
}

interface PolicyView {
  actions: bigint;
  triggerRatio: bigint;
  targetRatio: bigint;
  releaseRatio: bigint;
  maxFeeUsd: bigint;
  topUpAssets: string[];
}

interface PlanView {
  status: bigint;
  action: bigint;
  assets: string[];
  amounts: bigint[];
  reduceFraction: bigint;
  feeUsd: bigint;
}
async function planOf(f: F, id: bigint): Promise<PlanView> {
  const [, status, p] = await f.rebalancer.needsRebalance(id, V);
  return { status, action: p.action, assets: [...p.assets], amounts: [...p.amounts], reduceFraction: p.reduceFraction, feeUsd: p.feeUsd };
}

/**
 * Checks a Ready plan against the formulas, on the full valuation (`rebalanceInputs`: IM and the close fee always
 * computed): its fee, the top-up amounts (least reserve value reaching the requirement), the REDUCE fraction with
 * the close fee of every position as the close cost (and the fee cap when everything closes), the RELEASE amounts
 * down to max(target·MM, IM) + a unit. Returns a short description for the trace.
 */
async function checkPlan(f: F, id: bigint, plan: PlanView, policy: PolicyView, A: Record<string, Asset>) {
  const [st, closeFee, mmNow] = await f.engine.rebalanceInputs(id, V);
  const rescue = st.health < WAD;
  const fee0 = planFee(policy.maxFeeUsd, rescue);
  const action = Number(plan.action);
  if (action === RELEASE) {
    expect(plan.feeUsd).to.equal(fee0);
    const floor = (() => {
      const t = wMulUp(st.maintenanceMargin, policy.targetRatio);
      return (t > st.initialMargin ? t : st.initialMargin) + USDC_SCALE;
    })();
    let excess = st.equity - fee0 - floor;
    expect(excess > 0n).to.equal(true);
    const assets: string[] = [];
    const amounts: bigint[] = [];
    for (const token of policy.topUpAssets) {
      if (excess === 0n) break;
      const margin = await f.vault.marginOf(id, token, V);
      if (margin === 0n) continue;
      const a = A[token];
      let amount = mulDivDown(wDivDown(excess, a.haircut), 10n ** BigInt(a.decimals), a.price());
      if (amount > margin) amount = margin;
      if (amount === 0n) continue;
      const removed = wMulUp(mulDivUp(amount, a.price(), 10n ** BigInt(a.decimals)), a.haircut);
      excess = removed >= excess ? 0n : excess - removed;
      assets.push(token);
      amounts.push(amount);
    }
    expect([plan.assets, plan.amounts]).to.deep.equal([assets, amounts]);
    return { st, fee0, added: 0n };
  }
  // restore: required = max(rescue requirement, target'·MM)
  const target = rescue ? (policy.targetRatio > LIQ_T ? policy.targetRatio : LIQ_T) : policy.targetRatio;
  let required = mulDivUp(target, st.maintenanceMargin, WAD);
  if (rescue) {
    const rr = mulDivUp(mmNow, LIQ_T, WAD) + USDC_SCALE;
    if (rr > required) required = rr;
  }
  let equity = st.equity - fee0;
  let added = 0n;
  const assets: string[] = [];
  const amounts: bigint[] = [];
  if (action & TOP_UP) {
    const need = required - equity;
    for (const token of policy.topUpAssets) {
      if (added >= need) break;
      const available = await f.vault.reserveOf(id, token, V);
      if (available === 0n) continue;
      const a = A[token];
      let amount = mulDivUp(mulDivUp(need - added, WAD, a.haircut), 10n ** BigInt(a.decimals), a.price());
      if (amount > available) amount = available;
      const value = wMulDown(mulDivDown(amount, a.price(), 10n ** BigInt(a.decimals)), a.haircut);
      if (value === 0n) continue;
      added += value;
      assets.push(token);
      amounts.push(amount);
    }
  }
  expect([plan.assets, plan.amounts]).to.deep.equal([assets, amounts]);
  equity += added;
  if (action & REDUCE) {
    expect(required > equity).to.equal(true);
    const fr = reduceFraction(target, st.maintenanceMargin, R, equity, closeFee);
    expect(plan.reduceFraction).to.equal(fr);
    let fee = fee0;
    if (fr === WAD) {
      const left = equity + fee0 - closeFee - USDC_SCALE;
      const cap = left > 0n ? left : 0n;
      if (fee > cap) fee = cap - (cap % USDC_SCALE);
    }
    expect(plan.feeUsd).to.equal(fee);
  } else {
    expect(plan.reduceFraction).to.equal(0n);
    expect(plan.feeUsd).to.equal(fee0);
  }
  return { st, fee0, added };
}

// ------------------------------------------------------------------------------------------ setup helpers

function describeError(f: F, data: string): string {
  for (const i of [f.engine.interface, f.rebalancer.interface, f.vault.interface, f.oracle.interface]) {
    try {
      const e = i.parseError(data);
      if (e) return `${e.name}(${e.args.join(", ")})`;
    } catch {}
  }
  return data;
}

async function newAccount(
  f: F,
  who: Signer,
  margin: { usdc?: bigint; weth?: bigint; wbtc?: bigint },
  trades: [bigint, bigint][],
  reserve: { usdc?: bigint; weth?: bigint } = {},
): Promise<bigint> {
  await send((o) => f.vault.connect(who).createAccount(o) as never);
  const id = await f.vault.accountCount();
  for (const [tok, amt] of [
    [f.usdc, margin.usdc],
    [f.weth, margin.weth],
    [f.wbtc, margin.wbtc],
  ] as const) {
    if (!amt) continue;
    await send((o) => tok.mint(who.address, amt, o) as never);
    await send((o) => tok.connect(who).approve(f.vault, amt, o) as never);
    await send((o) => f.vault.connect(who).depositMargin(id, tok, amt, o) as never);
  }
  for (const [tok, amt] of [
    [f.usdc, reserve.usdc],
    [f.weth, reserve.weth],
  ] as const) {
    if (!amt) continue;
    await send((o) => tok.mint(who.address, amt, o) as never);
    await send((o) => tok.connect(who).approve(f.vault, amt, o) as never);
    await send((o) => f.vault.connect(who).deposit(id, tok, amt, o) as never);
  }
  for (const [market, size] of trades) {
    const r = await send((o) => f.engine.connect(who).modifyPosition(id, market, size, size > 0n ? E18(10_000_000) : 0n, o) as never);
    if (!r.ok) throw new Error("trade failed: " + describeError(f, r.revert!));
  }
  return id;
}

async function setPolicy(f: F, who: Signer, id: bigint, p: Omit<Partial<PolicyView>, "actions"> & { actions: number }, A: Record<string, Asset>) {
  const usdc = await f.usdc.getAddress();
  const weth = await f.weth.getAddress();
  const policy = {
    cooldown: 0,
    triggerRatio: wad("2"),
    targetRatio: wad("3"),
    releaseRatio: p.actions & RELEASE ? wad("6") : 0n,
    maxFeeUsd: wad("50"),
    topUpAssets: [usdc, weth],
    ...p,
  };
  void A;
  return send((o) => f.engine.connect(who).setRebalancePolicy(id, policy, o) as never);
}

// ------------------------------------------------------------------------------------------ the tests

describe("Review › lazy valuation terms (f7cb8a3)", function () {
  this.timeout(600_000);

  async function fx() {
    const f = await loadFixture(rebalanceFixture);
    px.eth = 200_000n;
    px.btc = 3_000_000n;
    await startClock(60);
    return { f, A: await assetsOf(f) };
  }

  it("resisted: RELEASE under a policy without TOP_UP (REDUCE | RELEASE) still floors at the initial margin, which binds (IM > target·MM)", async () => {
    const { f, A } = await fx();
    const id = await newAccount(f, f.bob, { usdc: USDC(20_000) }, [[f.ethMarket, E18(10)]]);
    expect((await setPolicy(f, f.bob, id, { actions: REDUCE | RELEASE, releaseRatio: wad("4") }, A)).ok).to.equal(true);
    await setPrices(f, 200_000n, 3_000_000n);
    const st = await f.engine.accountState(id, V);
    expect(st.initialMargin > wMulUp(st.maintenanceMargin, wad("3"))).to.equal(true); // the IM is the floor
    const plan = await planOf(f, id);
    expect([plan.status, plan.action]).to.deep.equal([STATUS.Ready, BigInt(RELEASE)]);
    const policy = { actions: BigInt(REDUCE | RELEASE), triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: wad("4"), maxFeeUsd: wad("50"), topUpAssets: [await f.usdc.getAddress(), await f.weth.getAddress()] };
    await checkPlan(f, id, plan, policy, A);
    // released exactly down to IM + a unit (+ the fee): equity after = IM + 1 unit (USDC, haircut 1)
    const r = await send((o) => f.rebalancer.connect(f.keeper).rebalance(id, o) as never);
    expect(r.ok).to.equal(true);
    const after = await f.engine.accountState(id, { blockTag: r.block! });
    // USDC (price 1, haircut 1) moved first: equity falls by the fee and the amount, and lands in [IM + 1 unit, IM + 2 units)
    expect(plan.assets).to.deep.equal([await f.usdc.getAddress()]);
    expect(after.equity).to.equal(st.equity - plan.feeUsd - plan.amounts[0] * USDC_SCALE);
    expect(after.equity >= st.initialMargin + USDC_SCALE && after.equity < st.initialMargin + 2n * USDC_SCALE).to.equal(true);
    expect(after.initialMargin).to.equal(st.initialMargin);
  });

  it("resisted: TOP_UP | REDUCE (no RELEASE) above 1 — a top-up too small, then a REDUCE priced with the close fee of every position (not 0)", async () => {
    const { f, A } = await fx();
    // thin reserve: the top-up cannot reach target 3, the REDUCE finishes it
    const id = await newAccount(f, f.bob, { usdc: USDC(3_000) }, [[f.ethMarket, E18(8)]], { usdc: USDC(100) });
    expect((await setPolicy(f, f.bob, id, { actions: TOP_UP | REDUCE }, A)).ok).to.equal(true);
    await walkEth(f, id, -100n, (h) => h >= WAD && h < wad("2")); // rounds after the policy: a REDUCE may act
    const [st0, closeFee] = await f.engine.rebalanceInputs(id, V);
    expect(st0.health > WAD && st0.health < wad("2")).to.equal(true);
    expect(closeFee).to.equal(wMulUp(mulDivUp(E18(8), wadOf(px.eth), WAD), M.feeRate));
    const plan = await planOf(f, id);
    expect([plan.status, plan.action]).to.deep.equal([STATUS.Ready, BigInt(TOP_UP | REDUCE)]);
    const policy = { actions: BigInt(TOP_UP | REDUCE), triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [await f.usdc.getAddress(), await f.weth.getAddress()] };
    const { added, fee0 } = await checkPlan(f, id, plan, policy, A);
    // the fraction a zero close fee would give is different: the lazy read is not skipped here
    expect(reduceFraction(wad("3"), st0.maintenanceMargin, R, st0.equity - fee0 + added, 0n)).to.not.equal(plan.reduceFraction);
    const r = await send((o) => f.rebalancer.connect(f.keeper).rebalance(id, o) as never);
    expect(r.ok).to.equal(true);
    const ev = f.rebalancer.interface.parseLog(r.logs.find((l) => l.topics[0] === f.rebalancer.interface.getEvent("Rebalanced")!.topicHash)!)!;
    const after = await f.engine.accountState(id, { blockTag: r.block! });
    expect(ev.args.healthBefore).to.equal(st0.health);
    expect(ev.args.healthAfter).to.equal(after.health); // the IM-free state after a REDUCE: same health
    expect(after.health >= wad("3")).to.equal(true);
  });

  it("resisted: REDUCE_FIRST — with a REDUCE that may act it reduces alone (close fee read); before a new round it tops up (close fee never read, not needed)", async () => {
    const { f, A } = await fx();
    const id = await newAccount(f, f.bob, { usdc: USDC(3_000) }, [[f.ethMarket, E18(8)]], { usdc: USDC(5_000) });
    const policy = { actions: BigInt(TOP_UP | REDUCE | RF), triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [await f.usdc.getAddress(), await f.weth.getAddress()] };
    await walkEth(f, id, -100n, (h) => h >= WAD && h < wad("2"));
    expect((await setPolicy(f, f.bob, id, { actions: TOP_UP | REDUCE | RF }, A)).ok).to.equal(true);
    // no round after the owner's action: the REDUCE may not act, TOP_UP alone
    let plan = await planOf(f, id);
    expect([plan.status, plan.action]).to.deep.equal([STATUS.Ready, BigInt(TOP_UP)]);
    await checkPlan(f, id, plan, policy, A);
    await setPrices(f, px.eth, px.btc); // new rounds at the same prices
    plan = await planOf(f, id);
    expect([plan.status, plan.action]).to.deep.equal([STATUS.Ready, BigInt(REDUCE)]);
    await checkPlan(f, id, plan, policy, A);
    // the keeper not fully paid (maxFee below the flat fee): _mayReduce false, TOP_UP
    expect((await setPolicy(f, f.bob, id, { actions: TOP_UP | REDUCE | RF, maxFeeUsd: wad("0.5") }, A)).ok).to.equal(true);
    await setPrices(f, px.eth, px.btc);
    plan = await planOf(f, id);
    expect([plan.status, plan.action, plan.feeUsd]).to.deep.equal([STATUS.Ready, BigInt(TOP_UP), wad("0.5")]);
    await checkPlan(f, id, plan, { ...policy, maxFeeUsd: wad("0.5") }, A);
  });

  it("resisted: REDUCE closes everything (f = WAD): the fee is capped by what the close leaves after the close fee", async () => {
    const { f, A } = await fx();
    // small account, high target: no partial close reaches it; REDUCE only (no reserve)
    const id = await newAccount(f, f.bob, { usdc: USDC(40) }, [[f.ethMarket, E18(1) / 10n]]);
    expect((await setPolicy(f, f.bob, id, { actions: REDUCE, triggerRatio: wad("9"), targetRatio: wad("10"), topUpAssets: [], maxFeeUsd: wad("1000") }, A)).ok).to.equal(true);
    await setPrices(f, 200_000n, 3_000_000n); // a round after the policy
    const plan = await planOf(f, id);
    expect([plan.status, plan.action, plan.reduceFraction]).to.deep.equal([STATUS.Ready, BigInt(REDUCE), WAD]);
    const policy = { actions: BigInt(REDUCE), triggerRatio: wad("9"), targetRatio: wad("10"), releaseRatio: 0n, maxFeeUsd: wad("1000"), topUpAssets: [] };
    await checkPlan(f, id, plan, policy, A);
    const r = await send((o) => f.rebalancer.connect(f.keeper).rebalance(id, o) as never);
    expect(r.ok).to.equal(true);
    const after = await f.engine.accountState(id, V);
    expect([after.health, after.initialMargin, after.maintenanceMargin]).to.deep.equal([MAX_UINT, 0n, 0n]);
  });

  it("resisted: a rescue below 1 under TOP_UP | REDUCE (no RELEASE): the IM-free plan tops up to max(target, 1.2) exactly as the formulas", async () => {
    const { f, A } = await fx();
    const policy = { actions: BigInt(TOP_UP | REDUCE), triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [await f.usdc.getAddress(), await f.weth.getAddress()] };
    expect((await setPolicy(f, f.alice, f.id, { actions: TOP_UP | REDUCE }, A)).ok).to.equal(true);
    await setPrices(f, 162_000n, 3_000_000n);
    const st = await f.engine.accountState(f.id, V);
    expect(st.health < WAD).to.equal(true);
    expect(await f.engine.rescueAvailable(f.id, V)).to.equal(true);
    const lq = await send((o) => f.engine.connect(f.keeper).liquidate(f.id, o) as never);
    expect(lq.revert).to.equal(f.engine.interface.encodeErrorResult("RescueAvailable", [f.id]));
    const plan = await planOf(f, f.id);
    expect([plan.status, plan.action]).to.deep.equal([STATUS.Ready, BigInt(TOP_UP)]);
    const { added, fee0 } = await checkPlan(f, f.id, plan, policy, A);
    const r = await send((o) => f.rebalancer.connect(f.keeper).rebalance(f.id, o) as never);
    const ev = f.rebalancer.interface.parseLog(r.logs.find((l) => l.topics[0] === f.rebalancer.interface.getEvent("Rebalanced")!.topicHash)!)!;
    expect([ev.args.healthBefore, ev.args.healthAfter]).to.deep.equal([st.health, wDivDown(st.equity - fee0 + added, st.maintenanceMargin)]);
    expect(ev.args.healthAfter).to.equal((await f.engine.accountState(f.id, { blockTag: r.block! })).health);
  });

  it("resisted: liquidation (partial, then full, then NotLiquidatable on the empty account) — fraction, notional, penalty and both healths as the full-valuation views and the model", async () => {
    const { f } = await fx();
    const id = await newAccount(f, f.bob, { usdc: USDC(2_000) }, [[f.ethMarket, E18(5)]]);
    const fractions: bigint[] = [];
    for (const cents of [162_500n, 140_000n, 120_000n]) {
      await setPrices(f, cents, 3_000_000n);
      const r = await checkLiquidation(f, id, f.keeper);
      const l = r.logs.find((x) => x.topics[0] === topic(f, "Liquidated"));
      fractions.push(l ? f.engine.interface.parseLog(l)!.args.fraction : -1n);
    }
    // partial (h ≈ 0.92), then full (h < 0.5), then nothing left: NotLiquidatable(id, max) (checked above)
    expect(fractions[0] > 0n && fractions[0] < WAD).to.equal(true);
    expect(fractions.slice(1)).to.deep.equal([WAD, -1n]);
  });

  it("resisted: buyCollateral on an open, underwater account reads health as before (NotLiquidatable(id, health) while healthy, a sale below 1)", async () => {
    const { f } = await fx();
    const id = await newAccount(f, f.bob, { weth: E18(1) }, [[f.btcMarket, wad("0.3")]]);
    await setPrices(f, 200_000n, 2_900_000n);
    const st = await f.engine.accountState(id, V);
    // settlement negative (the open's fee), healthy: NotLiquidatable(id, health)
    expect(st.settlement < 0n).to.equal(true);
    await send((o) => f.usdc.mint(f.keeper.address, USDC(100_000), o) as never);
    await send((o) => f.usdc.connect(f.keeper).approve(f.vault, USDC(100_000), o) as never);
    const r0 = await send((o) => f.engine.connect(f.keeper).buyCollateral(id, f.weth, 1n, 0n, o) as never);
    expect(r0.revert).to.equal(f.engine.interface.encodeErrorResult("NotLiquidatable", [id, st.health]));
    await walkEth(f, id, -200n, (h) => h < WAD, -200n);
    const st1 = await f.engine.accountState(id, V);
    expect(st1.health < WAD).to.equal(true);
    const r1 = await send((o) => f.engine.connect(f.keeper).buyCollateral(id, f.weth, 1n, 0n, o) as never);
    if (!r1.ok) throw new Error(describeError(f, r1.revert!));
  });

  it("resisted: an order's backing reverts BelowInitialMargin(id, equity, floor IM) with the full valuation's equity, to the wei", async () => {
    const { f } = await fx();
    const id = await newAccount(f, f.bob, { usdc: USDC(1_000), weth: E18(1) / 2n }, [[f.ethMarket, E18(1)]], { usdc: USDC(10) });
    await setPrices(f, 201_000n, 3_000_000n);
    const st = await f.engine.accountState(id, V);
    const delta = E18(6);
    const required = await floorIM(f, id, f.ethMarket, delta);
    expect(st.equity < required).to.equal(true);
    const r = await send((o) => f.engine.connect(f.bob).requestOrder(id, f.ethMarket, delta, E18(1_000_000), clock + 100, false, o) as never);
    expect(r.revert).to.equal(f.engine.interface.encodeErrorResult("BelowInitialMargin", [id, st.equity, required]));
    const ok = await send((o) => f.engine.connect(f.bob).requestOrder(id, f.ethMarket, E18(1) / 10n, E18(1_000_000), clock + 100, false, o) as never);
    expect(ok.ok).to.equal(true);
  });

  for (const seed of SEEDS_OF_WORLDS) {
    it(`resisted: random world ${seed} — every rebalance, batch, liquidation, collateral sale and request as the views and models say`, async () => {
      const { f, A } = await fx();
      await randomWorld(f, A, seed);
    });
  }
});

// ------------------------------------------------------------------------------------------ liquidation check

type St = ChainState;
/** accountState in the pending block, or at a mined block (its time: σ_mm moves with time at bounded speed). */
async function stateOf(f: F, id: bigint, block?: number): Promise<St> {
  const s = await f.engine.accountState(id, block === undefined ? V : { blockTag: block });
  return {
    collateral: s.collateral,
    settlement: s.settlement,
    unrealisedPnl: s.unrealisedPnl,
    equity: s.equity,
    notional: s.notional,
    maintenanceMargin: s.maintenanceMargin,
    initialMargin: s.initialMargin,
    health: s.health,
  };
}

const topic = (f: F, name: string) => f.engine.interface.getEvent(name as never)!.topicHash;

/**
 * liquidate(id) by `keeper` against the full valuation (accountState, rebalanceInputs' mmNow, rescueAvailable,
 * the liquidationFraction view) and the model: the revert with its args, or the event's every field.
 */
async function checkLiquidation(f: F, id: bigint, keeper: Signer): Promise<Sent> {
  const st = await stateOf(f, id);
  const held = await positionsOf(f, id);
  const rescue = await f.engine.rescueAvailable(id, V);
  const viewF = await f.engine.liquidationFraction(id, V);
  const mmNow = held.length ? (await f.engine.rebalanceInputs(id, V))[2] : 0n;
  const r = await send((o) => f.engine.connect(keeper).liquidate(id, o) as never);
  if (st.health >= WAD) {
    expect(r.revert).to.equal(f.engine.interface.encodeErrorResult("NotLiquidatable", [id, st.health]));
    expect(viewF).to.equal(0n);
    return r;
  }
  if (rescue) {
    expect(r.revert).to.equal(f.engine.interface.encodeErrorResult("RescueAvailable", [id]));
    expect(viewF).to.equal(0n);
    return r;
  }
  expect(r.ok).to.equal(true);
  const fr = modelLiquidationFraction({ ...st, mmNow }, DEFAULT_RISK).f;
  expect(viewF).to.equal(fr);
  let closed = 0n;
  for (const p of held) closed += mulDivUp(abs(closeSize(p.size, fr)), p.price, WAD);
  const penalty = wMulUp(closed, DEFAULT_RISK.liquidationPenalty);
  const keeperUsd = R + wMulDown(penalty, DEFAULT_RISK.keeperPenaltyShare);
  const log = r.logs.find((l) => l.topics[0] === topic(f, "Liquidated"))!;
  const ev = f.engine.interface.parseLog(log)!;
  const after = await stateOf(f, id, r.block);
  expect([ev.args.accountId, ev.args.liquidator, ev.args.fraction, ev.args.closedNotional, ev.args.penalty, ev.args.keeperPaid, ev.args.healthBefore, ev.args.healthAfter]).to.deep.equal([
    id,
    keeper.address,
    fr,
    closed,
    penalty,
    keeperUsd,
    st.health,
    after.health,
  ]);
  return r;
}

// ------------------------------------------------------------------------------------------ the random world

const json = (x: unknown) => JSON.stringify(x, (_k, v) => (typeof v === "bigint" ? v.toString() : v));

async function randomWorld(f: F, A: Record<string, Asset>, seed: number): Promise<string> {
  const rnd = prng(seed); // mulberry32
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)];
  const trace: string[] = [];
  const log = (...x: unknown[]) => trace.push(json(x));
  const usdc = await f.usdc.getAddress();
  const weth = await f.weth.getAddress();
  const counts: Record<string, number> = {};
  const count = (k: string) => (counts[k] = (counts[k] ?? 0) + 1);

  interface Acct {
    id: bigint;
    owner: Signer;
    policy: PolicyView | null;
  }
  const accts: Acct[] = [];
  const policyView = async (id: bigint): Promise<PolicyView | null> => {
    const p = await f.engine.rebalancePolicy(id, V);
    if (p.actions === 0n) return null;
    return { actions: p.actions, triggerRatio: p.triggerRatio, targetRatio: p.targetRatio, releaseRatio: p.releaseRatio, maxFeeUsd: p.maxFeeUsd, topUpAssets: [...p.topUpAssets] };
  };
  const add = async (id: bigint, owner: Signer) => accts.push({ id, owner, policy: await policyView(id) });

  // ---- accounts: every policy shape
  await add(f.id, f.alice); // ALL, trigger 2 / target 3 / release 6
  const SHAPES: { actions: number; triggerRatio: bigint; targetRatio: bigint; releaseRatio: bigint; maxFeeUsd: bigint; topUpAssets: string[] }[] = [
    { actions: TOP_UP | RELEASE, triggerRatio: wad("1.5"), targetRatio: wad("2"), releaseRatio: wad("3"), maxFeeUsd: wad("50"), topUpAssets: [usdc, weth] },
    { actions: REDUCE | RELEASE, triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: wad("4"), maxFeeUsd: wad("50"), topUpAssets: [weth, usdc] },
    { actions: TOP_UP | REDUCE | RF, triggerRatio: wad("1.5"), targetRatio: wad("2.5"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [usdc] },
    { actions: TOP_UP | REDUCE | RF, triggerRatio: wad("9"), targetRatio: wad("10"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [usdc] },
    { actions: REDUCE, triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: 0n, maxFeeUsd: wad("0.5"), topUpAssets: [] },
    { actions: ACTION.ALL | RF, triggerRatio: wad("2"), targetRatio: wad("3"), releaseRatio: wad("4"), maxFeeUsd: wad("50"), topUpAssets: [usdc, weth] },
    { actions: TOP_UP | RELEASE, triggerRatio: wad("1.3"), targetRatio: wad("1.6"), releaseRatio: wad("2.5"), maxFeeUsd: wad("3"), topUpAssets: [weth] },
    { actions: REDUCE, triggerRatio: wad("1.3"), targetRatio: wad("1.6"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [] },
    { actions: TOP_UP, triggerRatio: wad("1.5"), targetRatio: wad("2"), releaseRatio: 0n, maxFeeUsd: wad("4"), topUpAssets: [weth, usdc] },
    { actions: REDUCE | RF, triggerRatio: wad("1.5"), targetRatio: wad("2"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [] },
    { actions: TOP_UP | REDUCE | RELEASE | RF, triggerRatio: wad("1.2"), targetRatio: wad("1.4"), releaseRatio: wad("1.6"), maxFeeUsd: wad("50"), topUpAssets: [weth, usdc] },
  ];
  const SEEDS: [Signer, { usdc?: bigint; weth?: bigint; wbtc?: bigint }, [bigint, bigint][], { usdc?: bigint; weth?: bigint }, number | null][] = [
    [f.bob, { usdc: USDC(2_000) }, [[f.ethMarket, E18(5)]], { usdc: USDC(500), weth: E18(1) }, 0],
    [f.bob, { usdc: USDC(3_000) }, [[f.ethMarket, -E18(6)], [f.btcMarket, wad("0.1")]], { usdc: USDC(20), weth: E18(2) }, 1],
    [f.bob, { usdc: USDC(1_500), weth: E18(1) / 2n }, [[f.ethMarket, E18(5)]], { usdc: USDC(300) }, 2],
    [f.alice, { usdc: USDC(40) }, [[f.ethMarket, E18(1) / 10n]], { usdc: USDC(1_000) }, 3],
    [f.alice, { usdc: USDC(600) }, [[f.ethMarket, E18(1)]], { usdc: USDC(5) }, 4],
    [f.bob, { usdc: USDC(1_000) }, [[f.ethMarket, E18(5) / 2n]], { usdc: USDC(5_000) }, 5],
    [f.bob, { usdc: USDC(1_200) }, [[f.ethMarket, E18(3)]], { usdc: USDC(10) }, null],
    [f.bob, { weth: E18(1) }, [[f.btcMarket, wad("0.3")]], { weth: E18(1) / 5n }, 6],
    [f.alice, { usdc: USDC(900), wbtc: 10n ** 7n }, [[f.ethMarket, -E18(3)], [f.btcMarket, wad("0.05")]], { usdc: USDC(3), weth: E18(1) }, 10],
  ];
  for (const [owner, margin, trades, reserve, shape] of SEEDS) {
    const id = await newAccount(f, owner, margin, trades, reserve);
    if (shape !== null) expect((await send((o) => f.engine.connect(owner).setRebalancePolicy(id, { cooldown: 0, ...SHAPES[shape] }, o) as never)).ok).to.equal(true);
    await add(id, owner);
  }
  const ids = accts.map((a) => a.id);
  await send((o) => f.usdc.mint(f.keeper.address, USDC(10_000_000), o) as never);
  await send((o) => f.usdc.connect(f.keeper).approve(f.vault, USDC(10_000_000), o) as never);
  const pending: bigint[] = [];

  const views = async (a: Acct) => {
    const mask = await f.engine.positionMask(a.id, V);
    const st = await stateOf(f, a.id);
    const plan = await planOf(f, a.id);
    const lf = await f.engine.liquidationFraction(a.id, V);
    const rescue = await f.engine.rescueAvailable(a.id, V);
    const inputs = await f.engine.rebalanceInputs(a.id, V);
    log("view", a.id, mask, st, plan, lf, rescue, inputs[1], inputs[2]);
    if (plan.status === STATUS.Ready) {
      await checkPlan(f, a.id, plan, a.policy!, A);
      count(`plan ${plan.action}${st.health < WAD ? " rescue" : ""}`);
    }
    return { st, plan, mask };
  };

  const rebalanceEventOf = (r: Sent, id: bigint) => {
    const t = f.rebalancer.interface.getEvent("Rebalanced")!.topicHash;
    const l = r.logs.find((x) => x.topics[0] === t && BigInt(x.topics[1]) === id);
    return l ? f.rebalancer.interface.parseLog(l)! : null;
  };

  const STEPS = 70;
  for (let step = 0; step < STEPS; step++) {
    clock += 600; // a grid boundary every 6 steps: σ samples, IM at σ above the floor
    // prices: a walk of at most ±15 % per round (the breaker trips at 25 %), pulled back toward the start
    const move = (cents: bigint, home: bigint) => {
      let r = (rnd() - 0.5) * 0.3;
      if (rnd() < 0.1) r = -0.15;
      const pull = Number(home - cents) / Number(home) * 0.1;
      const k = BigInt(Math.round((1 + r + pull) * 10_000));
      return (cents * k) / 10_000n;
    };
    await setPrices(f, move(px.eth, 200_000n), move(px.btc, 3_000_000n));
    log("step", step, px.eth, px.btc);

    // orders of the last step: settled now (their deadline has passed: cancelled, or a fill)
    while (pending.length) {
      const oid = pending.pop()!;
      const r = await send((o) => f.engine.connect(f.keeper).executeOrder(oid, o) as never);
      log("execute", oid, r);
    }
    const [need, perform] = await f.rebalancer.checkUpkeep(ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "uint256"], [1n, 50n]), V);
    log("upkeep", need, perform);

    for (const a of [...accts].sort(() => rnd() - 0.5)) {
      const { st, plan, mask } = await views(a);
      const roll = rnd();
      if (mask === 0n) {
        // empty: the owner comes back (margin, a new position)
        const amt = USDC(BigInt(500 + Math.floor(rnd() * 3000)));
        await send((o) => f.usdc.mint(a.owner.address, amt, o) as never);
        await send((o) => f.usdc.connect(a.owner).approve(f.vault, amt, o) as never);
        log("reopen-deposit", await send((o) => f.vault.connect(a.owner).depositMargin(a.id, f.usdc, amt, o) as never));
        const size = (E18(1) * BigInt(1 + Math.floor(rnd() * 8))) * (rnd() < 0.7 ? 1n : -1n);
        log("reopen", await send((o) => f.engine.connect(a.owner).modifyPosition(a.id, f.ethMarket, size, size > 0n ? E18(10_000_000) : 0n, o) as never));
        count("reopen");
        continue;
      }
      if (roll < 0.35) {
        const r = await send((o) => f.rebalancer.connect(f.keeper).rebalance(a.id, o) as never);
        log("rebalance", a.id, r);
        if (plan.status === STATUS.Ready) {
          expect(r.ok).to.equal(true);
          const ev = rebalanceEventOf(r, a.id)!;
          const after = await stateOf(f, a.id, r.block);
          expect([ev.args.action, ev.args.healthBefore, ev.args.healthAfter, ev.args.feeUsd]).to.deep.equal([plan.action, st.health, after.health, plan.feeUsd]);
          if (Number(plan.action) === RELEASE) expect(after.equity >= after.initialMargin).to.equal(true);
          count("rebalance ok");
        } else if (plan.status === STATUS.Liquidatable) {
          expect(r.revert).to.equal(f.rebalancer.interface.encodeErrorResult("Liquidatable", [a.id, st.health]));
          count("rebalance Liquidatable");
        } else if (plan.status === STATUS.NotOptedIn) {
          expect(r.revert).to.equal(f.rebalancer.interface.encodeErrorResult("NotOptedIn", [a.id]));
        } else {
          expect(r.revert).to.equal(f.rebalancer.interface.encodeErrorResult("NothingToRebalance", []));
          count(`rebalance status ${plan.status}`);
        }
      } else if (roll < 0.55) {
        const r = await checkLiquidation(f, a.id, f.keeper);
        log("liquidate", a.id, r);
        count(r.ok ? "liquidated" : "liquidate refused");
      } else if (roll < 0.62) {
        const margin = await f.vault.marginOf(a.id, f.weth, V);
        const repay = USDC(BigInt(1 + Math.floor(rnd() * 500)));
        const r = await send((o) => f.engine.connect(f.keeper).buyCollateral(a.id, f.weth, repay, 0n, o) as never);
        log("buy", a.id, repay, r);
        if (st.settlement >= 0n || margin === 0n) {
          expect(r.revert).to.equal(f.engine.interface.encodeErrorResult("NothingToBuy", [a.id]));
        } else if (st.health >= WAD) {
          expect(r.revert).to.equal(f.engine.interface.encodeErrorResult("NotLiquidatable", [a.id, st.health]));
        } else {
          count(r.ok ? "bought" : "buy refused");
        }
      } else if (roll < 0.74) {
        const delta = (E18(1) * BigInt(1 + Math.floor(rnd() * 6))) / 2n * (rnd() < 0.6 ? 1n : -1n);
        const market = rnd() < 0.8 ? f.ethMarket : f.btcMarket;
        const d = market === f.ethMarket ? delta : delta / 20n;
        const required = await floorIM(f, a.id, market, d);
        const r = await send((o) => f.engine.connect(a.owner).requestOrder(a.id, market, d, d > 0n ? E18(10_000_000) : 1n, clock + 60, false, o) as never);
        log("request", a.id, market, d, r);
        if (r.ok) {
          expect(st.equity >= required).to.equal(true);
          pending.push(BigInt(r.logs.find((x) => x.topics[0] === topic(f, "OrderRequested"))!.topics[1]));
          count("request ok");
        } else if (r.revert!.startsWith(f.engine.interface.getError("BelowInitialMargin")!.selector)) {
          expect(r.revert).to.equal(f.engine.interface.encodeErrorResult("BelowInitialMargin", [a.id, st.equity, required]));
          count("request BelowInitialMargin");
        } else {
          count("request other");
        }
      } else if (roll < 0.84) {
        const shape = pick([...SHAPES.keys(), -1]);
        const r =
          shape < 0
            ? await send((o) => f.engine.connect(a.owner).setRebalancePolicy(a.id, { actions: 0, cooldown: 0, triggerRatio: 0n, targetRatio: 0n, releaseRatio: 0n, maxFeeUsd: 0n, topUpAssets: [] }, o) as never)
            : await send((o) => f.engine.connect(a.owner).setRebalancePolicy(a.id, { cooldown: 0, ...SHAPES[shape] }, o) as never);
        expect(r.ok).to.equal(true);
        a.policy = await policyView(a.id);
        log("policy", a.id, shape, r);
      } else if (roll < 0.9) {
        const amt = USDC(BigInt(1 + Math.floor(rnd() * 400)));
        const r = await send((o) => f.vault.connect(a.owner).releaseMargin(a.id, f.usdc, amt, o) as never);
        log("release-margin", a.id, amt, r);
      } else {
        const size = (E18(1) * BigInt(1 + Math.floor(rnd() * 4))) / 2n * (rnd() < 0.5 ? 1n : -1n);
        const r = await send((o) => f.engine.connect(a.owner).modifyPosition(a.id, f.ethMarket, size, size > 0n ? E18(10_000_000) : 0n, o) as never);
        log("trade", a.id, size, r);
      }
    }

    if (step % 4 === 3) {
      await send((o) => f.oracle.poke(f.weth, o) as never); // a block after any single rebalance (its 1-block cooldown)
      const before = new Map<bigint, { st: St; plan: PlanView }>();
      for (const a of accts) before.set(a.id, { st: await stateOf(f, a.id), plan: await planOf(f, a.id) });
      const r = await send((o) => f.rebalancer.connect(f.keeper).rebalanceBatch(ids, o) as never);
      log("batch", r);
      expect(r.ok).to.equal(true);
      const skipped = f.rebalancer.interface.getEvent("RebalanceSkipped")!.topicHash;
      for (const a of accts) {
        const b = before.get(a.id)!;
        if (b.plan.status === STATUS.Ready) {
          const ev = rebalanceEventOf(r, a.id)!;
          const after = await stateOf(f, a.id, r.block);
          expect([ev.args.action, ev.args.healthBefore, ev.args.healthAfter, ev.args.feeUsd]).to.deep.equal([b.plan.action, b.st.health, after.health, b.plan.feeUsd]);
          count("batch ok");
        } else {
          const l = r.logs.find((x) => x.topics[0] === skipped && BigInt(x.topics[1]) === a.id)!;
          expect(f.rebalancer.interface.parseLog(l)!.args.reason).to.equal(b.plan.status);
        }
      }
    }
  }
  const digest = createHash("sha256").update(trace.join("\n")).digest("hex");
  if (process.env.LAZY_TRACE_OUT) writeFileSync(`${process.env.LAZY_TRACE_OUT}.${seed}`, trace.join("\n"));
  console.log("      trace", trace.length, "entries, digest", digest, json(counts));
  return digest;
}
