/**
 * Ballast on a fork (in process or a `hardhat node --fork` child), the same way in both upstream modes: deployed with
 * the MAINNET parameters through deploy/deploy.ts (what `npx hardhat deploy` runs), funded from the holders of
 * lib/fork/mainnet.ts by impersonation, and the ETH/USD proxy moved to a test aggregator the way one moves a price on
 * a real fork: its owner() proposes and confirms an aggregator we control.
 */
import { Contract, HDNodeWallet, type Provider, type Signer } from "ethers";

import { NETWORKS } from "../../deploy/networks";
import { deployBallast } from "../../deploy/deploy";
import type { DeploymentRecord } from "../../lib/deployment";
import { FEEDS, HOLDERS, TOKENS, UNISWAP } from "../../lib/fork/mainnet";
import { sqrtPriceX96 } from "../../lib/fork/replica";
import {
  ERC20__factory,
  ForkAggregatorProxy__factory,
  IMarginEngine__factory,
  IRebalancer__factory,
  IVault__factory,
  LiquidityPool__factory,
  MockAggregator__factory,
  OracleRouter__factory,
  type MockAggregator,
} from "../../typechain-types";

export const USDC = (n: bigint | number) => BigInt(n) * 10n ** 6n;
export const WAD = 10n ** 18n;
export const VOL_INTERVAL = 3_600;

/** What a fork gives the world: JSON-RPC, and a signer for any address (impersonated or unlocked). */
export interface ForkChain {
  provider: Provider & { send(method: string, params: unknown[]): Promise<unknown> };
  signerOf(address: string): Promise<Signer>;
}

const hex = (n: bigint) => "0x" + n.toString(16);

/** Impersonates `address` with 100 ETH for gas. */
export async function impersonate(chain: ForkChain, address: string): Promise<Signer> {
  await chain.provider.send("hardhat_impersonateAccount", [address]);
  await chain.provider.send("hardhat_setBalance", [address, hex(100n * WAD)]);
  return chain.signerOf(address);
}

/** Ballast's mainnet parameters as deployed on a local fork: the chain id the fork answers with (the in-process network
 *  keeps Hardhat's 31337; a `hardhat node` child answers 1) and one confirmation (automine never brings a second). */
export async function forkParams(chain: ForkChain) {
  const chainId = Number((await chain.provider.getNetwork()).chainId);
  return { ...NETWORKS.mainnet, chainId, confirmations: 1 };
}

export interface Ballast {
  rec: DeploymentRecord;
  engine: ReturnType<typeof IMarginEngine__factory.connect>;
  vault: ReturnType<typeof IVault__factory.connect>;
  rebalancer: ReturnType<typeof IRebalancer__factory.connect>;
  oracle: ReturnType<typeof OracleRouter__factory.connect>;
  pool: ReturnType<typeof LiquidityPool__factory.connect>;
  usdc: ReturnType<typeof ERC20__factory.connect>;
  ethMarket: bigint;
}

/** Deploys Ballast with deployBallast (the code path of `npx hardhat deploy`), the record in `dir`. */
export async function deploy(chain: ForkChain, owner: Signer, dir: string): Promise<Ballast> {
  const rec = await deployBallast(owner, "mainnet", await forkParams(chain), { dir });
  return connect(rec, owner);
}

export function connect(rec: DeploymentRecord, runner: Signer): Ballast {
  return {
    rec,
    engine: IMarginEngine__factory.connect(rec.engine, runner),
    vault: IVault__factory.connect(rec.engine, runner),
    rebalancer: IRebalancer__factory.connect(rec.engine, runner),
    oracle: OracleRouter__factory.connect(rec.oracle, runner),
    pool: LiquidityPool__factory.connect(rec.pool, runner),
    usdc: ERC20__factory.connect(rec.assets.USDC, runner),
    ethMarket: BigInt(rec.markets.ETH.id),
  };
}

/**
 * Funding off in the ETH market (a governance parameter: the owner's setMarketParams), so valuations do not drift
 * between the block a test reads and the block its transaction lands in, and expected values are exact.
 */
export async function fundingOff(b: Ballast) {
  const m = NETWORKS.mainnet.markets.find((x) => x.symbol === "ETH")!;
  await (await b.engine.setMarketParams(b.ethMarket, { asset: TOKENS.WETH, ...m.params, maxFundingRate: 0n })).wait();
}

/** Sends `amounts` of USDC from the USDC holder (impersonated) to each address. */
export async function fundUsdc(chain: ForkChain, to: [string, bigint][]) {
  const holder = await impersonate(chain, HOLDERS.USDC.address);
  const usdc = ERC20__factory.connect(TOKENS.USDC, holder);
  const need = to.reduce((s, [, a]) => s + a, 0n);
  const has = await usdc.balanceOf(HOLDERS.USDC.address);
  if (has < need) throw new Error(`the USDC holder ${HOLDERS.USDC.address} (${HOLDERS.USDC.label}) has ${has} units here, the tests need ${need}: pick another in lib/fork/mainnet.ts HOLDERS`);
  for (const [a, amount] of to) await (await usdc.transfer(a, amount)).wait();
  await chain.provider.send("hardhat_stopImpersonatingAccount", [HOLDERS.USDC.address]);
}

/**
 * Points the ETH/USD proxy at a new MockAggregator (8 decimals) whose first round repeats the proxy's latest answer:
 * the proxy's owner() (impersonated) proposes and confirms it, so it becomes the proxy's next phase. Returns it and
 * that answer.
 */
export async function takeOverEthFeed(chain: ForkChain, deployer: Signer): Promise<{ agg: MockAggregator; answer: bigint; phaseBefore: bigint }> {
  const proxy = ForkAggregatorProxy__factory.connect(FEEDS.WETH, deployer);
  const [, answer] = await proxy.latestRoundData();
  const phaseBefore = await proxy.phaseId();
  const agg = await new MockAggregator__factory(deployer).deploy(8);
  await agg.waitForDeployment();
  await (await agg.setAnswer(answer)).wait();
  const ownerAddress = await proxy.owner();
  const owner = await impersonate(chain, ownerAddress);
  await (await proxy.connect(owner).proposeAggregator(await agg.getAddress())).wait();
  await (await proxy.connect(owner).confirmAggregator(await agg.getAddress())).wait();
  await chain.provider.send("hardhat_stopImpersonatingAccount", [ownerAddress]);
  return { agg, answer, phaseBefore };
}

/**
 * Moves the clock just past the next boundary of the oracle's volatility grid and publishes `answer` again there, then
 * pokes: the grid sample at that boundary sees the same price as the previous sample (a zero return), and the next
 * sample is an hour away — far beyond the suite — so σ and σ_mm stay put and exact values do not depend on the block.
 */
export async function alignVolGrid(chain: ForkChain, b: Ballast, agg: MockAggregator, answer: bigint) {
  const now = (await chain.provider.getBlock("latest"))!.timestamp;
  const boundary = (Math.floor(now / VOL_INTERVAL) + 1) * VOL_INTERVAL;
  await chain.provider.send("evm_setNextBlockTimestamp", [boundary + 5]);
  await (await agg.setAnswer(answer)).wait();
  await (await b.oracle.poke(TOKENS.WETH)).wait();
}

/** A new round at `answer` on the test aggregator, and a poke. */
export async function pushEth(b: Ballast, agg: MockAggregator, answer: bigint) {
  await (await agg.setAnswer(answer)).wait();
  await (await b.oracle.poke(TOKENS.WETH)).wait();
}

/** The USDC reserve of an account as the rebalance plan's mirror takes it. */
export async function usdcReserve(b: Ballast, id: bigint) {
  return { asset: TOKENS.USDC, available: await b.vault.reserveOf(id, TOKENS.USDC), price: WAD, decimals: 6n, haircut: NETWORKS.mainnet.settlement.haircut };
}

/**
 * The WETH/USDC 0.05 % pool follows the feed down to `answer` (8 decimals), as arbitrage would move it: a fresh wallet
 * wraps ETH and sells WETH into the pool through the SwapRouter with the price limit at `answer` (the router pays only
 * what the swap to the limit takes). Returns the pool's sqrtPriceX96 afterwards (= the limit).
 */
export async function movePoolDownTo(chain: ForkChain, answer: bigint): Promise<bigint> {
  const arb = HDNodeWallet.createRandom().connect(chain.provider);
  const wrap = 1_000_000n * WAD; // more than any mainnet pool depth over the move
  await chain.provider.send("hardhat_setBalance", [arb.address, hex(wrap + 10n * WAD)]);
  const weth = new Contract(TOKENS.WETH, ["function deposit() payable", "function approve(address,uint256) returns (bool)"], arb);
  await (await weth.deposit({ value: wrap })).wait();
  await (await weth.approve(UNISWAP.swapRouter.address, wrap)).wait();
  const router = new Contract(UNISWAP.swapRouter.address, [
    "function exactInputSingle((address tokenIn,address tokenOut,uint24 fee,address recipient,uint256 deadline,uint256 amountIn,uint256 amountOutMinimum,uint160 sqrtPriceLimitX96)) payable returns (uint256)",
  ], arb);
  const limit = sqrtPriceX96(answer); // token0 = USDC, token1 = WETH: the sqrt price rises as ETH falls
  await (await router.exactInputSingle({ tokenIn: TOKENS.WETH, tokenOut: TOKENS.USDC, fee: 500, recipient: arb.address, deadline: 2n ** 40n, amountIn: wrap, amountOutMinimum: 0n, sqrtPriceLimitX96: limit })).wait();
  return limit;
}
