/**
 * Uniswap V3 `exactInputSingle`, a familiar yardstick for one DeFi transaction. Deployed from the published
 * Hardhat artifacts of the npm packages `@uniswap/v3-core` (UniswapV3Factory; its pool bytecode hashes to the
 * periphery's POOL_INIT_CODE_HASH, checked below) and `@uniswap/v3-periphery` (NonfungiblePositionManager,
 * SwapRouter): nothing is compiled. The tokens are the project's MockERC20 (WETH-like 18 decimals, USDC-like 6);
 * the WETH-like token is also the routers' WETH9 address: a swap paid with an ERC-20 never wraps ETH, so the
 * periphery only compares addresses with it (neither package ships a WETH9 artifact).
 *
 * One 0.05 % pool at 2,000 USDC per WETH with full-range liquidity of 1,000 WETH + 2,000,000 USDC, already swapped
 * both ways by another trader (no fee-growth slot is written from zero by the measured swap). The swapper sells
 * 1 WETH for USDC: first touch = its first swap (its USDC balance written from zero), steady = its next one, after
 * the other trader swapped back. No initialized tick is crossed.
 */
import fs from "node:fs";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { Contract, ContractFactory } from "ethers";

import { MockERC20__factory } from "../../typechain-types";
import type { MockERC20 } from "../../typechain-types";
import { measure } from "./measure";
import { ROW, type Row } from "./results";

const POOL_INIT_CODE_HASH = "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54";
const FEE = 500;
const FULL_RANGE = 887_270; // the largest multiple of the 0.05 % tier's tick spacing (10) within ±887,272

interface Artifact {
  abi: unknown[];
  bytecode: string;
  linkReferences: Record<string, unknown>;
}

export function uniswapArtifact(pkgPath: string): Artifact {
  const a = JSON.parse(fs.readFileSync(require.resolve(pkgPath), "utf8")) as Artifact;
  if (Object.keys(a.linkReferences).length !== 0) throw new Error(`${pkgPath} needs library linking`);
  return a;
}

const ARTIFACTS = {
  factory: "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json",
  pool: "@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json",
  positions: "@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json",
  router: "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json",
} as const;

async function deployArtifact(pkgPath: string, signer: HardhatEthersSigner, ...args: unknown[]): Promise<Contract> {
  const a = uniswapArtifact(pkgPath);
  const c = await new ContractFactory(a.abi as never, a.bytecode, signer).deploy(...args);
  await c.waitForDeployment();
  return c as Contract;
}

function sqrt(n: bigint): bigint {
  if (n < 2n) return n;
  let x = n;
  let y = (x + 1n) / 2n;
  while (y < x) {
    x = y;
    y = (x + n / x) / 2n;
  }
  return x;
}

interface UniswapWorld {
  router: Contract;
  weth: MockERC20;
  usdc: MockERC20;
  trader: HardhatEthersSigner;
  swapper: HardhatEthersSigner;
}

async function uniswapWorld(): Promise<UniswapWorld> {
  const [deployer, lp, trader, swapper] = await ethers.getSigners();
  if (ethers.keccak256(uniswapArtifact(ARTIFACTS.pool).bytecode) !== POOL_INIT_CODE_HASH) {
    throw new Error("the v3-core pool bytecode does not match the periphery's POOL_INIT_CODE_HASH");
  }
  const weth = await new MockERC20__factory(deployer).deploy("Wrapped Ether", "WETH", 18);
  const usdc = await new MockERC20__factory(deployer).deploy("USD Coin", "USDC", 6);
  const factory = await deployArtifact(ARTIFACTS.factory, deployer);
  // The position manager's token descriptor only serves tokenURI: none is needed here.
  const positions = await deployArtifact(ARTIFACTS.positions, deployer, factory, weth, ethers.ZeroAddress);
  const router = await deployArtifact(ARTIFACTS.router, deployer, factory, weth);

  const wethFirst = (await weth.getAddress()).toLowerCase() < (await usdc.getAddress()).toLowerCase();
  const [token0, token1] = wethFirst ? [weth, usdc] : [usdc, weth];
  // price = token1 units per token0 unit; 2,000 USDC (6 decimals) per WETH (18 decimals)
  const [num, den] = wethFirst ? [2_000n * 10n ** 6n, 10n ** 18n] : [10n ** 18n, 2_000n * 10n ** 6n];
  const sqrtPriceX96 = sqrt((num << 192n) / den);
  await (await positions.createAndInitializePoolIfNecessary(token0, token1, FEE, sqrtPriceX96)).wait();

  const amounts = { weth: 1_000n * 10n ** 18n, usdc: 2_000_000n * 10n ** 6n };
  for (const [who, w, u] of [
    [lp, amounts.weth, amounts.usdc],
    [trader, 100n * 10n ** 18n, 200_000n * 10n ** 6n],
    [swapper, 100n * 10n ** 18n, 0n],
  ] as const) {
    if (w > 0n) await (await weth.mint(who.address, w)).wait();
    if (u > 0n) await (await usdc.mint(who.address, u)).wait();
  }
  await (await weth.connect(lp).approve(positions, ethers.MaxUint256)).wait();
  await (await usdc.connect(lp).approve(positions, ethers.MaxUint256)).wait();
  const deadline = (await time.latest()) + 365 * 86_400;
  await (
    await (positions.connect(lp) as Contract).mint({
      token0,
      token1,
      fee: FEE,
      tickLower: -FULL_RANGE,
      tickUpper: FULL_RANGE,
      amount0Desired: wethFirst ? amounts.weth : amounts.usdc,
      amount1Desired: wethFirst ? amounts.usdc : amounts.weth,
      amount0Min: 0,
      amount1Min: 0,
      recipient: lp.address,
      deadline,
    })
  ).wait();
  for (const who of [trader, swapper]) {
    await (await weth.connect(who).approve(router, ethers.MaxUint256)).wait();
    await (await usdc.connect(who).approve(router, ethers.MaxUint256)).wait();
  }
  const w = { router, weth, usdc, trader, swapper };
  // The pool's first swaps, both ways, by another trader.
  await swap(w, trader, weth, usdc, 10n ** 18n);
  await swap(w, trader, usdc, weth, 2_000n * 10n ** 6n);
  return w;
}

function swapParams(recipient: string, tokenIn: string, tokenOut: string, amountIn: bigint, deadline: number) {
  return { tokenIn, tokenOut, fee: FEE, recipient, deadline, amountIn, amountOutMinimum: 0, sqrtPriceLimitX96: 0 };
}

async function swap(w: UniswapWorld, who: HardhatEthersSigner, tokenIn: MockERC20, tokenOut: MockERC20, amountIn: bigint): Promise<void> {
  const p = swapParams(who.address, await tokenIn.getAddress(), await tokenOut.getAddress(), amountIn, (await time.latest()) + 3_600);
  await (await (w.router.connect(who) as Contract).exactInputSingle(p)).wait();
}

/** SwapRouter.exactInputSingle of 1 WETH for USDC. */
export async function benchUniswapSwap(): Promise<Row> {
  const w = await loadFixture(uniswapWorld);
  const measureSwap = async () => {
    const p = swapParams(w.swapper.address, await w.weth.getAddress(), await w.usdc.getAddress(), 10n ** 18n, (await time.latest()) + 3_600);
    const before = await w.usdc.balanceOf(w.swapper.address);
    const m = await measure((o) => (w.router.connect(w.swapper) as Contract).exactInputSingle(p, o));
    if ((await w.usdc.balanceOf(w.swapper.address)) <= before) throw new Error("the swap paid no USDC");
    return { gas: m.gas, method: "receipt" as const };
  };
  const firstTouch = await measureSwap();
  await swap(w, w.trader, w.usdc, w.weth, 2_000n * 10n ** 6n);
  const steady = await measureSwap();
  return {
    id: ROW.uniswapSwap,
    protocol: "uniswap-v3",
    label: "Uniswap V3 exactInputSingle (1 WETH → USDC)",
    description:
      "published artifacts of @uniswap/v3-core 1.0.1 and @uniswap/v3-periphery 1.4.4; 0.05 % pool, full-range liquidity " +
      "1,000 WETH + 2,000,000 USDC, swapped both ways before; MockERC20 tokens; no tick crossed; first touch = the swapper's first swap",
    steady,
    firstTouch,
  };
}
