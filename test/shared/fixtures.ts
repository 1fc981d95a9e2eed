import { ethers } from "hardhat";
import { deployLocalSystem, type LocalSystem } from "../../deploy/system";

export const USDC = (n: bigint | number) => BigInt(n) * 10n ** 6n;
export const E18 = (n: bigint | number) => BigInt(n) * 10n ** 18n;
export const E8 = (n: bigint | number) => BigInt(n) * 10n ** 8n;

export interface SystemFixture extends LocalSystem {
  deployer: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  lp: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  alice: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  bob: Awaited<ReturnType<typeof ethers.getSigners>>[number];
  keeper: Awaited<ReturnType<typeof ethers.getSigners>>[number];
}

/** Whole system, ETH at 2,000 and BTC at 30,000, and an LP with 1,000,000 USDC in the pool. */
export async function systemFixture(): Promise<SystemFixture> {
  const [deployer, lp, alice, bob, keeper] = await ethers.getSigners();
  const sys = await deployLocalSystem(deployer);
  await sys.usdc.mint(lp.address, USDC(1_000_000));
  await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000));
  await sys.pool.connect(lp).deposit(USDC(1_000_000), lp.address);
  return { ...sys, deployer, lp, alice, bob, keeper };
}
