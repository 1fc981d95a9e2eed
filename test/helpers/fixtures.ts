import { ethers } from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import { deployLocalSystem, type LocalSystem } from "../../deploy/system";
import { deployInstantFillSystem, type InstantFillSystem } from "../../lib/instantFill";

export const USDC = (n: bigint | number) => BigInt(n) * 10n ** 6n;
export const E18 = (n: bigint | number) => BigInt(n) * 10n ** 18n;
export const E8 = (n: bigint | number) => BigInt(n) * 10n ** 8n;

/** The tests' system: the InstantFillEngine (lib/instantFill.ts), positions set at a known price in one transaction. */
export type TestSystem = InstantFillSystem;
export const deployTestSystem = deployInstantFillSystem;

export interface SystemFixture extends TestSystem {
  deployer: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  lp: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  alice: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  bob: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  keeper: Awaited<ReturnType<typeof ethers.getSigners>>[number];
}

/** The oracle's default volatility sampling grid, seconds of the feed's clock (Constants.DEFAULT_VOL_INTERVAL). */
export const VOL_INTERVAL = 3_600;

/**
 * Moves chain time so that the next block is `offset` seconds into the next interval of the volatility grid.
 * The volatility samples sit on the grid's boundaries, each priced at the last round at or before it, and are
 * taken when a round at or after the boundary is observed: tests that move prices a few seconds apart stay
 * inside one interval (no sample, σ unchanged) whatever the wall clock, and a test that wants a sample advances
 * time across a boundary on purpose (offset 0: a round set in that block is the boundary's own sample).
 * Returns the time of that next block.
 */
export async function alignToVolGrid(offset = 1): Promise<number> {
  const next = (Math.floor((await time.latest()) / VOL_INTERVAL) + 1) * VOL_INTERVAL + offset;
  await time.setNextBlockTimestamp(next);
  return next;
}

/**
 * Whole system, ETH at 2,000 and BTC at 30,000, and an LP with 1,000,000 USDC in the pool. Deployed from the
 * first second of a volatility-grid interval (`alignToVolGrid`), so every later price move within the test's
 * first ~55 minutes of chain time is in the interval of the feeds' first rounds: σ and σ_mm stay at the floor
 * until a test crosses an interval boundary itself (the sample at that boundary is then the last price set
 * before it, a return from the first rounds' price).
 */
export async function systemFixture(): Promise<SystemFixture> {
  const [deployer, lp, alice, bob, keeper] = await ethers.getSigners();
  await alignToVolGrid();
  const sys = await deployTestSystem(deployer);
  await sys.usdc.mint(lp.address, USDC(1_000_000));
  await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000));
  await sys.pool.connect(lp).deposit(USDC(1_000_000), lp.address);
  return { ...sys, deployer, lp, alice, bob, keeper };
}

/** The system as deploy/ deploys it (the production MarginEngine: two-step orders only), with the same LP capital
 *  and grid alignment as `systemFixture`. */
export interface ProductionFixture extends LocalSystem {
  deployer: SystemFixture["deployer"];
  lp: SystemFixture["lp"];
  alice: SystemFixture["alice"];
  bob: SystemFixture["bob"];
  keeper: SystemFixture["keeper"];
}

export async function productionFixture(): Promise<ProductionFixture> {
  const [deployer, lp, alice, bob, keeper] = await ethers.getSigners();
  await alignToVolGrid();
  const sys = await deployLocalSystem(deployer);
  await sys.usdc.mint(lp.address, USDC(1_000_000));
  await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000));
  await sys.pool.connect(lp).deposit(USDC(1_000_000), lp.address);
  return { ...sys, deployer, lp, alice, bob, keeper };
}
