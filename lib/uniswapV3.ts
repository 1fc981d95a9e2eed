/**
 * Uniswap V3 on a local chain from the published bytecode (@uniswap/v3-core's artifacts: the real factory and pool),
 * typed with Ballast's minimal 0.8 interfaces (contracts/periphery/interfaces/IUniswapV3Minimal.sol): deploy a
 * factory, create and initialise a pool at a USD price, add full-range liquidity through the test helper
 * (contracts/test/UniswapV3TestHelper.sol), and quote a swap with the pool's own arithmetic. Used by the
 * FlashLiquidator tests and the keeper's; reusable by any suite that needs a pool next to a local system.
 *
 * The npm artifact's pool bytecode hashes to mainnet's POOL_INIT_CODE_HASH (0xe34f…8b54; lib/fork/replica.ts checks
 * it, and the periphery artifacts embed the same constant), so a pool's address follows from its factory's address;
 * these helpers still ask the factory (`getPool`), as the FlashLiquidator does, and quote with the pool's own
 * arithmetic (`quoteExactOutput`), not a periphery quoter.
 */
import { ContractFactory, type Signer } from "ethers";
import UniswapV3FactoryArtifact from "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json";

import {
  IERC20Metadata__factory,
  IUniswapV3FactoryMinimal__factory,
  IUniswapV3PoolMinimal__factory,
  UniswapV3TestHelper__factory,
} from "../typechain-types";
import type { IUniswapV3FactoryMinimal, IUniswapV3PoolMinimal, UniswapV3TestHelper } from "../typechain-types";

export const Q96 = 2n ** 96n;
export const MIN_TICK = -887_272;
export const MAX_TICK = 887_272;
/** Fee tiers (hundredths of a bip) the factory enables at deployment, with their tick spacings. */
export const FEE_TIERS = { 500: 10, 3_000: 60, 10_000: 200 } as const;
export type FeeTier = keyof typeof FEE_TIERS;

/** Deploys UniswapV3Factory from the npm artifact (its deployer becomes the factory owner). */
export async function deployUniswapV3Factory(signer: Signer): Promise<IUniswapV3FactoryMinimal> {
  const f = new ContractFactory(UniswapV3FactoryArtifact.abi, UniswapV3FactoryArtifact.bytecode, signer);
  const c = await f.deploy();
  await c.waitForDeployment();
  return IUniswapV3FactoryMinimal__factory.connect(await c.getAddress(), signer);
}

/** Deploys the test helper (liquidity minting and swap quotes). */
export async function deployUniswapV3TestHelper(signer: Signer): Promise<UniswapV3TestHelper> {
  const h = await new UniswapV3TestHelper__factory(signer).deploy();
  await h.waitForDeployment();
  return h;
}

/** Integer square root, rounded down. */
export function sqrtDown(x: bigint): bigint {
  if (x < 0n) throw new Error("sqrt of a negative number");
  if (x < 2n) return x;
  // Newton's iteration from above: decreases monotonically to floor(sqrt(x))
  let r = 1n << BigInt(Math.ceil(x.toString(2).length / 2));
  for (;;) {
    const next = (r + x / r) >> 1n;
    if (next >= r) return r;
    r = next;
  }
}

/**
 * The pool's sqrtPriceX96 (sqrt(token1 units per token0 unit) × 2^96, rounded down) at which `base` is worth
 * `priceWad` (WAD) `quote` per whole token, for base/quote of `baseDecimals`/`quoteDecimals`; token0 is the lower
 * address, as the factory orders them.
 */
export function sqrtPriceX96At(base: string, baseDecimals: number, quote: string, quoteDecimals: number, priceWad: bigint): bigint {
  const W = 10n ** 18n;
  const b = 10n ** BigInt(baseDecimals);
  const q = 10n ** BigInt(quoteDecimals);
  // raw price token1/token0: base is token0 → priceWad × q / (W × b); base is token1 → W × b / (priceWad × q)
  return BigInt(base.toLowerCase()) < BigInt(quote.toLowerCase())
    ? sqrtDown((priceWad * q * Q96 * Q96) / (W * b))
    : sqrtDown((W * b * Q96 * Q96) / (priceWad * q));
}

/**
 * Creates the factory's pool of (`base`, `quote`) at `fee` and initialises it where `base` is worth `priceWad`
 * `quote` per whole token (the tokens' decimals are read from them).
 */
export async function createPoolAtPrice(
  factory: IUniswapV3FactoryMinimal,
  base: string,
  quote: string,
  fee: FeeTier,
  priceWad: bigint,
): Promise<IUniswapV3PoolMinimal> {
  const signer = factory.runner as Signer;
  await (await factory.createPool(base, quote, fee)).wait();
  const pool = IUniswapV3PoolMinimal__factory.connect(await factory.getPool(base, quote, fee), signer);
  const [bd, qd] = await Promise.all([
    IERC20Metadata__factory.connect(base, signer).decimals(),
    IERC20Metadata__factory.connect(quote, signer).decimals(),
  ]);
  await (await pool.initialize(sqrtPriceX96At(base, Number(bd), quote, Number(qd), priceWad))).wait();
  return pool;
}

/** The widest range of ticks a position can span at `tickSpacing`. */
export function fullRange(tickSpacing: number): { tickLower: number; tickUpper: number } {
  return { tickLower: Math.ceil(MIN_TICK / tickSpacing) * tickSpacing, tickUpper: Math.floor(MAX_TICK / tickSpacing) * tickSpacing };
}

/**
 * Adds `liquidity` (the pool's L) over the full range for `lp`, paid by `lp` through `helper` (it approves the helper
 * for exactly what the mint takes, measured by a static call first). Returns the amounts paid.
 */
export async function addFullRangeLiquidity(
  helper: UniswapV3TestHelper,
  pool: IUniswapV3PoolMinimal,
  lp: Signer,
  liquidity: bigint,
): Promise<{ amount0: bigint; amount1: bigint }> {
  const { tickLower, tickUpper } = fullRange(Number(await pool.tickSpacing()));
  const [t0, t1] = await Promise.all([pool.token0(), pool.token1()]);
  const who = await lp.getAddress();
  const h = helper.connect(lp);
  // What the mint will take: the pool's own rounding, from a call that reverts in the callback's transfer if unfunded
  // — so approve generously for the probe, then set the exact allowance.
  const MAX = 2n ** 256n - 1n;
  await (await IERC20Metadata__factory.connect(t0, lp).approve(helper, MAX)).wait();
  await (await IERC20Metadata__factory.connect(t1, lp).approve(helper, MAX)).wait();
  const [amount0, amount1] = await h.mint.staticCall(pool, who, tickLower, tickUpper, liquidity);
  await (await h.mint(pool, who, tickLower, tickUpper, liquidity)).wait();
  await (await IERC20Metadata__factory.connect(t0, lp).approve(helper, 0n)).wait();
  await (await IERC20Metadata__factory.connect(t1, lp).approve(helper, 0n)).wait();
  return { amount0, amount1 };
}

/**
 * Full-range L that holds about `quoteAmount` of the quote token at the pool's current price: L = amount1 × 2^96 /
 * sqrtP when the quote is token1, amount0 × sqrtP / 2^96 when it is token0 (rounded down).
 */
export async function liquidityForQuote(pool: IUniswapV3PoolMinimal, quote: string, quoteAmount: bigint): Promise<bigint> {
  const [{ sqrtPriceX96 }, t1] = await Promise.all([pool.slot0(), pool.token1()]);
  return t1.toLowerCase() === quote.toLowerCase() ? (quoteAmount * Q96) / sqrtPriceX96 : (quoteAmount * sqrtPriceX96) / Q96;
}

/**
 * What `pool` would take in and give out for an exact output of `amountOut` of `tokenOut`, by its own arithmetic (the
 * swap run in a static call and reverted in the callback): { amountIn, amountOut } in token units.
 */
export async function quoteExactOutput(
  helper: UniswapV3TestHelper,
  pool: IUniswapV3PoolMinimal,
  tokenOut: string,
  amountOut: bigint,
): Promise<{ amountIn: bigint; amountOut: bigint }> {
  const t0 = await pool.token0();
  const outIs0 = t0.toLowerCase() === tokenOut.toLowerCase();
  // paying token0 for token1 (zeroForOne) when the output is token1
  const [d0, d1] = await helper.quoteSwap.staticCall(pool, !outIs0, -amountOut);
  return outIs0 ? { amountIn: d1, amountOut: -d0 } : { amountIn: d0, amountOut: -d1 };
}
