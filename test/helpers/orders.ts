/**
 * What the order reviews (test/review/OrdersReview*.test.ts) share: the production system with a 0.5 USDC order fee
 * and no funding, alice's account 1 (10,000 USDC margin, 10 USDC reserve), rounds at chosen block times, requests,
 * opens through orders, and the USDC conservation check.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";

import { productionFixture, USDC, E8, type ProductionFixture } from "./fixtures";
import { DEFAULT_RISK, MAJOR_MARKET } from "../../deploy/params";
import { mmr, sqrtHorizon, wMulUp } from "../../lib/margin";
import type { IMarginEngine } from "../../typechain-types";

export const FEE = USDC(1) / 2n;
export const HOUR = 3_600;
export const MAX = ethers.MaxUint256;
export type F = ProductionFixture;
type Signer = F["alice"];
export const sel = (e: IMarginEngine, name: string) => e.interface.getError(name)!.selector;

/** Production system, 0.5 USDC order fee, no funding; alice's account 1: 10,000 USDC margin, 10 USDC reserve. */
export async function base(): Promise<F> {
  const f = await productionFixture();
  await f.engine.setOrderFee(FEE);
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  await f.vault.connect(f.alice).createAccount();
  await f.usdc.mint(f.alice.address, USDC(20_000));
  await f.usdc.connect(f.alice).approve(f.vault, USDC(20_000));
  await f.vault.connect(f.alice).depositMargin(1, f.usdc, USDC(10_000));
  await f.vault.connect(f.alice).deposit(1, f.usdc, USDC(10));
  return f;
}

export const at = (t: number) => time.setNextBlockTimestamp(t);

export async function ethRound(f: F, usd: number | bigint, t: number) {
  await at(t);
  await f.ethFeed.setAnswer(typeof usd === "bigint" ? usd : E8(usd));
}

export async function btcRound(f: F, usd: number, t: number) {
  await at(t);
  await f.btcFeed.setAnswer(E8(usd));
}

/** `who` (alice) requests an order for account `acct` (1) at block time `t`; returns its id. */
export async function request(
  f: F, t: number, market: bigint, size: bigint,
  o: { who?: Signer; acct?: bigint; limit?: bigint; deadline?: number; reduceOnly?: boolean } = {},
) {
  const id = (await f.engine.lastOrderId()) + 1n;
  await at(t);
  await f.engine
    .connect(o.who ?? f.alice)
    .requestOrder(o.acct ?? 1n, market, size, o.limit ?? (size > 0n ? MAX : 0n), o.deadline ?? t + HOUR, o.reduceOnly ?? false);
  return id;
}

/** Opens `size` on `market` for account 1 through an order filled by the keeper at a round of `usd`; returns a time after it. */
export async function openAt(f: F, market: bigint, size: bigint, usd: number) {
  const t = (await time.latest()) + 10;
  const id = await request(f, t, market, size);
  if (market === f.ethMarket) await ethRound(f, usd, t + 5);
  else await btcRound(f, usd, t + 5);
  await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
  return t + 10;
}

/** The engine's USDC equals its tracked total and Σ escrow + the accounts' reserves and margins + pool buckets. */
export async function conserved(f: F, accounts: bigint[]) {
  const held = await f.usdc.balanceOf(await f.engine.getAddress());
  expect(await f.vault.totalTracked(f.usdc)).to.equal(held);
  let sum = await f.engine.orderEscrow();
  for (const a of accounts) sum += (await f.vault.reserveOf(a, f.usdc)) + (await f.vault.marginOf(a, f.usdc));
  sum += (await f.pool.capital()) + (await f.pool.insuranceBalance()) + (await f.engine.totalKeeperRewards());
  expect(sum).to.equal(held);
}

/** One position's initial margin at a MAJOR_MARKET market's stress floor σ = imVolFloor, rounded up as the engine does. */
export const floorImOf = (notional: bigint) =>
  wMulUp(wMulUp(notional, mmr(MAJOR_MARKET, notional, MAJOR_MARKET.imVolFloor, sqrtHorizon(DEFAULT_RISK.volHorizon))), MAJOR_MARKET.imFactor);

/** What a request must be backed by (MarginEngine._checkBacking) for positions of these notionals (WAD USD, the
 *  order's market at the size the order can leave): Σ floor IM + the keeper reward. */
export const floorIm = (...notionals: bigint[]) => notionals.reduce((sum, n) => sum + floorImOf(n), DEFAULT_RISK.keeperReward);

