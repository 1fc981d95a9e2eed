import { ethers } from "hardhat";
import { expect } from "chai";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";

import type { SystemFixture } from "./fixtures";
import { DEFAULT_RISK, HAIRCUTS, MAJOR_MARKET } from "../../deploy/params";
import {
  abs,
  min,
  mulDivUp,
  USDC_SCALE,
  WAD,
  wMulUp,
  type AccountIn,
  type MarketP,
  type RiskP,
  type ChainState,
  type StateOut,
} from "./marginMath";

/** Prices as the tests set them: 8-decimal feed answers. */
export const PX8 = (usd: bigint | number) => BigInt(usd) * 10n ** 8n;
/** 8-decimal feed answer → WAD price (exact: the router only multiplies). */
export const toWad8 = (answer: bigint) => answer * 10n ** 10n;

export const RISK: RiskP = { ...DEFAULT_RISK };

/**
 * The test's own ledger of one account, kept from what the test did (deposits, trades at known prices),
 * never read back from the engine: the expected values are computed from it.
 */
export interface Book {
  id: bigint;
  usdcMargin: bigint;
  wethMargin: bigint;
  settlement: bigint;
  positions: { market: bigint; size: bigint; entryPrice: bigint; entryFunding: bigint }[];
}

export async function fundAndApprove(f: SystemFixture, who: HardhatEthersSigner, usdc: bigint, weth: bigint) {
  if (usdc > 0n) {
    await f.usdc.mint(who.address, usdc);
    await f.usdc.connect(who).approve(f.vault, usdc);
  }
  if (weth > 0n) {
    await f.weth.mint(who.address, weth);
    await f.weth.connect(who).approve(f.vault, weth);
  }
}

/** Fee on a trade at `px`: |Δ| × px (up) × feeRate (up), then settled against USDC margin (owed rounded up). */
export function bookTrade(b: Book, market: bigint, size: bigint, px: bigint, m: MarketP) {
  const fee = wMulUp(mulDivUp(abs(size), px, WAD), m.feeRate);
  b.positions.push({ market, size, entryPrice: px, entryFunding: 0n });
  b.settlement -= fee;
  bookSettle(b);
  return fee;
}

/** `_settle` for a negative balance: USDC margin pays what it can, owed rounded up. */
export function bookSettle(b: Book) {
  if (b.settlement >= 0n) return 0n;
  const owed = mulDivUp(-b.settlement, 1n, USDC_SCALE);
  const amount = min(owed, b.usdcMargin);
  if (amount === 0n) return 0n;
  b.settlement = amount === owed ? 0n : b.settlement + amount * USDC_SCALE;
  b.usdcMargin -= amount;
  return amount;
}

/**
 * Creates an account for `owner`, posts margin, opens the trades at the current prices `pxOf(market)`.
 * Returns the ledger; checks the vault agrees on the USDC margin after fees.
 */
export async function openAccount(
  f: SystemFixture,
  owner: HardhatEthersSigner,
  margin: { usdc?: bigint; weth?: bigint },
  trades: { market: bigint; size: bigint }[],
  pxOf: (market: bigint) => bigint,
  m: MarketP = MAJOR_MARKET,
): Promise<Book> {
  await f.vault.connect(owner).createAccount();
  const id = await f.vault.accountCount();
  const usdc = margin.usdc ?? 0n;
  const weth = margin.weth ?? 0n;
  await fundAndApprove(f, owner, usdc, weth);
  if (usdc > 0n) await f.vault.connect(owner).depositMargin(id, f.usdc, usdc);
  if (weth > 0n) await f.vault.connect(owner).depositMargin(id, f.weth, weth);
  const b: Book = { id, usdcMargin: usdc, wethMargin: weth, settlement: 0n, positions: [] };
  for (const t of trades) {
    const px = pxOf(t.market);
    await f.engine
      .connect(owner)
      .modifyPosition(id, t.market, t.size, t.size > 0n ? ethers.MaxUint256 : 0n);
    bookTrade(b, t.market, t.size, px, m);
  }
  expect(await f.vault.marginOf(id, f.usdc)).to.equal(b.usdcMargin);
  return b;
}

/**
 * The valuation inputs of a ledger at the given prices. Volatilities (σ and σ_mm) are read from the oracle (the
 * oracle's state after the test's own poke, at the latest block's time); funding is off in these markets, so
 * every index is 0.
 */
export async function modelInputs(
  f: SystemFixture,
  b: Book,
  px: { eth: bigint; btc: bigint },
  m: MarketP = MAJOR_MARKET,
): Promise<AccountIn> {
  const assetOf = (market: bigint) => (market === f.ethMarket ? f.weth : f.wbtc);
  const pxOfMarket = (market: bigint) => (market === f.ethMarket ? px.eth : px.btc);
  const positions = [];
  for (const p of b.positions) {
    const [vol, mmVol] = await f.oracle.volatilities(assetOf(p.market));
    positions.push({
      size: p.size,
      entryPrice: p.entryPrice,
      entryFunding: p.entryFunding,
      index: 0n,
      price: pxOfMarket(p.market),
      market: m,
      vol,
      mmVol,
    });
  }
  return {
    collateral: [
      { amount: b.usdcMargin, price: WAD, decimals: 6, haircut: HAIRCUTS.USDC },
      { amount: b.wethMargin, price: px.eth, decimals: 18, haircut: HAIRCUTS.WETH },
    ],
    settlement: b.settlement,
    positions,
  };
}

/** Field-by-field equality of an on-chain AccountState with the model's. */
export function expectState(actual: ChainState, expected: ChainState) {
  // mmNow (the liquidation's requirement at the current σ) is the model's own: accountState has no such field.
  for (const key of Object.keys(expected) as (keyof ChainState)[]) {
    if ((key as string) === "mmNow") continue;
    expect(actual[key], String(key)).to.equal(expected[key]);
  }
}
