/**
 * Rebalancer test setup and the bigint mirror of the rebalance plan (README "Rebalancing").
 */
import { network } from "hardhat";
import { ACTION, DEFAULT_REBALANCER, DEFAULT_RISK, MAJOR_MARKET, wad } from "../../deploy/params";
import { systemFixture, USDC, E18, E8, type SystemFixture } from "./fixtures";
import { leastCloseFraction, mulDivUp, WAD, wDivUp, wMulDown, wMulUp, USDC_SCALE } from "./marginMath";

export { ACTION };

/** `IRebalancer.Status` values. */
export const STATUS = { Ready: 0n, NotOptedIn: 1n, Cooldown: 2n, InBand: 3n, Liquidatable: 4n, OracleUnhealthy: 5n, NoAction: 6n, Rejected: 7n };

/** Below the fixture's trigger (2) but not liquidatable: the rebalancer's territory. */
export const lowHealth = (h: bigint) => h >= WAD && h < wad("2");

/** Default test policy: trigger 2, target 3, release 6, all actions, fee cap 50 USD, USDC then WETH. */
export interface PolicyIn {
  actions: number;
  cooldown: number;
  triggerRatio: bigint;
  targetRatio: bigint;
  releaseRatio: bigint;
  maxFeeUsd: bigint;
  topUpAssets: string[];
}

export interface RebalanceFixture extends SystemFixture {
  id: bigint;
  policy: PolicyIn;
}

/** Block base fee the tests pin before a rebalance: 10 gwei. */
export const BASE_FEE = 10n ** 10n;

/**
 * Alice's account 1: 4,000 USDC margin, a 10 ETH long at 2,000 (5x), and a reserve of 1,000 USDC and
 * 2 WETH; policy trigger 2 / target 3 / release 6, all actions, no cooldown. Funding off (maxFundingRate 0)
 * so valuations do not drift between blocks and every expected value is exact.
 */
export async function rebalanceFixture(): Promise<RebalanceFixture> {
  const f = await systemFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  const id = await openLong(f, f.alice, USDC(4_000), E18(10));
  await fundReserve(f, f.alice, id, USDC(1_000), E18(2));
  const policy: PolicyIn = {
    actions: ACTION.ALL,
    cooldown: 0,
    triggerRatio: wad("2"),
    targetRatio: wad("3"),
    releaseRatio: wad("6"),
    maxFeeUsd: wad("50"),
    topUpAssets: [await f.usdc.getAddress(), await f.weth.getAddress()],
  };
  await f.engine.connect(f.alice).setRebalancePolicy(id, policy);
  return { ...f, id, policy };
}

type Signer = SystemFixture["alice"];

/** New account of `who` with `marginUsdc` USDC margin and a long of `size` ETH at the current price. */
export async function openLong(f: SystemFixture, who: Signer, marginUsdc: bigint, size: bigint): Promise<bigint> {
  await f.vault.connect(who).createAccount();
  const id = await f.vault.accountCount();
  await f.usdc.mint(who.address, marginUsdc);
  await f.usdc.connect(who).approve(f.vault, marginUsdc);
  await f.vault.connect(who).depositMargin(id, f.usdc, marginUsdc);
  if (size !== 0n) await f.engine.connect(who).modifyPosition(id, f.ethMarket, size, E18(1_000_000));
  return id;
}

/** Reserve (not margin) of `usdc` USDC and `weth` WETH for the account. */
export async function fundReserve(f: SystemFixture, who: Signer, id: bigint, usdc: bigint, weth: bigint) {
  if (usdc !== 0n) {
    await f.usdc.mint(who.address, usdc);
    await f.usdc.connect(who).approve(f.vault, usdc);
    await f.vault.connect(who).deposit(id, f.usdc, usdc);
  }
  if (weth !== 0n) {
    await f.weth.mint(who.address, weth);
    await f.weth.connect(who).approve(f.vault, weth);
    await f.vault.connect(who).deposit(id, f.weth, weth);
  }
}

/** Sets the ETH feed to `usd` (8-decimal answer) and pokes it. */
export async function setEth(f: SystemFixture, usd: bigint) {
  await f.ethFeed.setAnswer(E8(usd));
  await f.oracle.poke(f.weth);
}

/**
 * Walks ETH down (or up) from `fromUsd` by `stepUsd` until `accept(health)`; returns the price. The band
 * between two thresholds is a few dollars wide at 5x, so tests find their price rather than guess it.
 */
export async function moveEthUntil(
  f: SystemFixture,
  id: bigint,
  fromUsd: bigint,
  stepUsd: bigint,
  accept: (health: bigint) => boolean,
): Promise<bigint> {
  for (let px = fromUsd; px > 0n && px < 1_000_000n; px += stepUsd) {
    await setEth(f, px);
    const st = await f.engine.accountState(id);
    if (accept(st.health)) return px;
  }
  throw new Error("no price satisfies the condition");
}

/** Pins the next block's base fee (the keeper fee reads block.basefee). */
export async function pinBaseFee(baseFee: bigint = BASE_FEE) {
  await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x" + baseFee.toString(16)]);
}

/** The fee the Rebalancer pays: min(cap, base + gasUnits × basefee × ETH price / 1e18), whole USDC units. */
export function expectedFee(ethPriceWad: bigint, maxFeeUsd: bigint, baseFee: bigint = BASE_FEE): bigint {
  let fee = DEFAULT_REBALANCER.baseFeeUsd + (BigInt(DEFAULT_REBALANCER.gasUnits) * baseFee * ethPriceWad) / WAD;
  if (fee > maxFeeUsd) fee = maxFeeUsd;
  return fee - (fee % USDC_SCALE);
}

/**
 * The fee of a rescue (health < 1): the keeper fee, but at least the liquidation's flat keeper reward within the
 * owner's cap, in whole USDC units (a keeper always prefers the rescue to the liquidation, or is indifferent).
 */
export function rescueFee(ethPriceWad: bigint, maxFeeUsd: bigint, baseFee: bigint = BASE_FEE, keeperReward = DEFAULT_RISK.keeperReward): bigint {
  const fee = expectedFee(ethPriceWad, maxFeeUsd, baseFee);
  let reward = keeperReward < maxFeeUsd ? keeperReward : maxFeeUsd;
  reward -= reward % USDC_SCALE;
  return fee > reward ? fee : reward;
}

/**
 * The engine's `canRescue` value test (README "Rescue below 1"): E − maxFeeUsd − one USDC unit (the settle's
 * rounding) + Σ reserve × price × haircut (each rounded down) ≥ liquidationTargetRatio × mmNow (rounded up), mmNow
 * the maintenance margin at the current volatility — what the pre-empted liquidation would restore. A state read
 * from the chain has no mmNow: it equals MM while σ <= σ_mm. The other conditions (registered module, TOP_UP,
 * maxFeeUsd ≥ keeperReward, cooldown) are the test's to state.
 */
export function reserveCanRescue(
  st: { equity: bigint; maintenanceMargin: bigint; mmNow?: bigint },
  maxFeeUsd: bigint,
  reserves: ReserveIn[],
  liquidationTarget = DEFAULT_RISK.liquidationTargetRatio,
): boolean {
  let lifted = st.equity - maxFeeUsd - USDC_SCALE;
  for (const r of reserves) lifted += countedValue(r.available, r.price, Number(r.decimals), r.haircut);
  return lifted >= targetRequirement(liquidationTarget, st.mmNow ?? st.maintenanceMargin);
}

/**
 * Equity a rescue must leave (the Rebalancer's plan and the engine's RescueFallsShort): the liquidation target
 * × the maintenance margin at the current volatility, rounded up, plus one USDC unit of settle rounding.
 */
export const rescueRequirement = (liquidationTarget: bigint, mmNow: bigint) =>
  targetRequirement(liquidationTarget, mmNow) + USDC_SCALE;

/** Token amount of a top-up that adds `needUsd` of counted value: ceil(ceil(need / haircut) × 10^dec / px). */
export function topUpAmount(needUsd: bigint, priceWad: bigint, decimals: number, haircut: bigint): bigint {
  return mulDivUp(wDivUp(needUsd, haircut), 10n ** BigInt(decimals), priceWad);
}

/** Counted value of `amount`: floor(floor(amount × px / 10^dec) × haircut). */
export function countedValue(amount: bigint, priceWad: bigint, decimals: number, haircut: bigint): bigint {
  return wMulDown((amount * priceWad) / 10n ** BigInt(decimals), haircut);
}

/**
 * Rebalance reduce fraction: the least close fraction to `target` with the trading fee of closing everything
 * as the close cost and one USDC unit less equity (realised PnL settles against USDC margin rounded up to a
 * whole unit).
 */
export function reduceFraction(target: bigint, mm: bigint, reserveR: bigint, equityAfter: bigint, closeFee: bigint): bigint {
  return leastCloseFraction(target, mm, reserveR, equityAfter - USDC_SCALE, closeFee).f;
}

export interface ReserveIn {
  asset: string;
  available: bigint;
  price: bigint;
  decimals: bigint;
  haircut: bigint;
}

export interface PlanOut {
  action: number;
  assets: string[];
  amounts: bigint[];
  reduceFraction: bigint;
  /** collateral value the TOP_UP moves reserve → margin, as counted in equity (Rebalanced.toppedUpUsd) */
  toppedUpUsd: bigint;
  /** notional the REDUCE closes, rounded up (Rebalanced.reducedNotionalUsd) */
  reducedNotionalUsd: bigint;
}

/**
 * README "Rebalancing" step 4 with the fee counted as paid: top up ΔC = target × MM − (E − fee) from the
 * reserves in the policy's order (amounts rounded up, value counted at price then haircut rounded down),
 * then, if still short, reduce every position by `reduceFraction`. A rescue (health < 1) passes `target` =
 * max(policy target, liquidation target) and `rescueRequired` = rescueRequirement(liquidation target, mmNow):
 * the equity to reach is then the larger of the two.
 */
export function planRestore(
  target: bigint,
  st: { equity: bigint; maintenanceMargin: bigint; notional: bigint },
  closeFee: bigint,
  fee: bigint,
  keeperReward: bigint,
  reserves: ReserveIn[],
  rescueRequired = 0n,
): PlanOut {
  const mmRequired = targetRequirement(target, st.maintenanceMargin);
  const required = rescueRequired > mmRequired ? rescueRequired : mmRequired;
  let equity = st.equity - fee;
  const plan: PlanOut = { action: 0, assets: [], amounts: [], reduceFraction: 0n, toppedUpUsd: 0n, reducedNotionalUsd: 0n };
  let added = 0n;
  if (required > equity) {
    const need = required - equity;
    for (const r of reserves) {
      if (added >= need || r.available === 0n) continue;
      let amount = topUpAmount(need - added, r.price, Number(r.decimals), r.haircut);
      if (amount > r.available) amount = r.available;
      const value = countedValue(amount, r.price, Number(r.decimals), r.haircut);
      if (value === 0n) continue;
      added += value;
      plan.assets.push(r.asset);
      plan.amounts.push(amount);
    }
    if (added !== 0n) plan.action = ACTION.TOP_UP;
  }
  plan.toppedUpUsd = added;
  equity += added;
  if (required > equity) {
    plan.reduceFraction = reduceFraction(target, st.maintenanceMargin, keeperReward, equity, closeFee);
    plan.reducedNotionalUsd = wMulUp(st.notional, plan.reduceFraction);
    plan.action |= ACTION.REDUCE;
  }
  return plan;
}

export const targetRequirement = (target: bigint, mm: bigint) => mulDivUp(target, mm, WAD);
