import type { Signer } from "ethers";
import {
  GovernanceLogic__factory,
  LiquidationLogic__factory,
  RebalanceLogic__factory,
  Rebalancer__factory,
  TradeLogic__factory,
  LiquidityPool__factory,
  MarginEngine__factory,
  MockAggregator__factory,
  MockERC20__factory,
  OracleRouter__factory,
  Vault__factory,
} from "../typechain-types";
import type { LiquidityPool, MarginEngine, MockAggregator, MockERC20, OracleRouter, Rebalancer, Vault } from "../typechain-types";
import {
  CRYPTO_FEED,
  DEFAULT_REBALANCER,
  DEFAULT_RISK,
  HAIRCUTS,
  MAJOR_MARKET,
  type FeedConfig,
  type MarketConfig,
  type RebalancerConfig,
  type RiskConfig,
} from "./params";

/** Addresses of a deployed core, as recorded in deployments/<network>.json. */
export interface CoreContracts {
  vault: Vault;
  oracle: OracleRouter;
  pool: LiquidityPool;
  engine: MarginEngine;
}

export interface LocalSystem extends CoreContracts {
  rebalancer: Rebalancer;
  usdc: MockERC20;
  weth: MockERC20;
  wbtc: MockERC20;
  ethFeed: MockAggregator;
  btcFeed: MockAggregator;
  ethMarket: bigint;
  btcMarket: bigint;
}

/**
 * Step 1-4: core contracts, wired. The vault must list the settlement asset before the engine is deployed.
 */
export async function deployCore(deployer: Signer, usdc: string, usdcHaircut: bigint): Promise<CoreContracts> {
  const owner = await deployer.getAddress();
  const vault = await new Vault__factory(deployer).deploy(owner);
  const oracle = await new OracleRouter__factory(deployer).deploy(owner);
  const pool = await new LiquidityPool__factory(deployer).deploy(usdc, owner);
  await (await vault.listAsset(usdc, usdcHaircut)).wait();
  // The engine's modules are linked libraries (it would not fit in 24 KiB otherwise); governance is one of them.
  const libraries = {
    "contracts/libraries/logic/TradeLogic.sol:TradeLogic": await (await new TradeLogic__factory(deployer).deploy()).getAddress(),
    "contracts/libraries/logic/LiquidationLogic.sol:LiquidationLogic": await (
      await new LiquidationLogic__factory(deployer).deploy()
    ).getAddress(),
    "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": await (
      await new RebalanceLogic__factory(deployer).deploy()
    ).getAddress(),
    "contracts/libraries/logic/GovernanceLogic.sol:GovernanceLogic": await (
      await new GovernanceLogic__factory(deployer).deploy()
    ).getAddress(),
  };
  const engine = await new MarginEngine__factory(libraries, deployer).deploy(vault, oracle, pool, owner);
  await (await vault.setEngine(engine)).wait();
  await (await pool.setEngine(engine)).wait();
  return { vault, oracle, pool, engine };
}

/**
 * Step 5: the Rebalancer module, registered with the engine so accounts can opt into it. `gasAsset` is the
 * asset whose USD price converts gas into the keeper fee (WETH).
 */
export async function deployRebalancer(
  deployer: Signer,
  engine: MarginEngine,
  gasAsset: string,
  cfg: RebalancerConfig = DEFAULT_REBALANCER,
): Promise<Rebalancer> {
  const owner = await deployer.getAddress();
  const rebalancer = await new Rebalancer__factory(deployer).deploy(
    engine,
    gasAsset,
    { baseFeeUsd: cfg.baseFeeUsd, gasUnits: cfg.gasUnits },
    cfg.upkeepSize,
    owner,
  );
  await (await engine.setRebalancer(rebalancer, true)).wait();
  return rebalancer;
}

export async function setFeed(oracle: OracleRouter, asset: string, feed: string, cfg: FeedConfig): Promise<void> {
  await (await oracle.setFeed(asset, { feed, ...cfg })).wait();
  await (await oracle.poke(asset)).wait();
}

export async function createMarket(engine: MarginEngine, asset: string, cfg: MarketConfig): Promise<bigint> {
  const id = await engine.marketCount();
  await (await engine.createMarket({ asset, ...cfg })).wait();
  return id;
}

export async function setRisk(engine: MarginEngine, cfg: RiskConfig): Promise<void> {
  await (await engine.setRiskParams(cfg)).wait();
}

/**
 * The whole system on a development chain with mock tokens and Chainlink-style mock feeds
 * (8-decimal answers), ETH-USD and BTC-USD markets and the default risk parameters.
 */
export async function deployLocalSystem(
  deployer: Signer,
  prices: { eth: bigint; btc: bigint } = { eth: 2000n * 10n ** 8n, btc: 30000n * 10n ** 8n },
): Promise<LocalSystem> {
  const usdc = await new MockERC20__factory(deployer).deploy("USD Coin", "USDC", 6);
  const weth = await new MockERC20__factory(deployer).deploy("Wrapped Ether", "WETH", 18);
  const wbtc = await new MockERC20__factory(deployer).deploy("Wrapped BTC", "WBTC", 8);
  const core = await deployCore(deployer, await usdc.getAddress(), HAIRCUTS.USDC);
  await (await core.vault.listAsset(weth, HAIRCUTS.WETH)).wait();
  await (await core.vault.listAsset(wbtc, HAIRCUTS.WBTC)).wait();

  const ethFeed = await new MockAggregator__factory(deployer).deploy(8);
  const btcFeed = await new MockAggregator__factory(deployer).deploy(8);
  await (await ethFeed.setAnswer(prices.eth)).wait();
  await (await btcFeed.setAnswer(prices.btc)).wait();
  await setFeed(core.oracle, await weth.getAddress(), await ethFeed.getAddress(), CRYPTO_FEED);
  await setFeed(core.oracle, await wbtc.getAddress(), await btcFeed.getAddress(), CRYPTO_FEED);

  await setRisk(core.engine, DEFAULT_RISK);
  const ethMarket = await createMarket(core.engine, await weth.getAddress(), MAJOR_MARKET);
  const btcMarket = await createMarket(core.engine, await wbtc.getAddress(), MAJOR_MARKET);
  const rebalancer = await deployRebalancer(deployer, core.engine, await weth.getAddress());
  return { ...core, rebalancer, usdc, weth, wbtc, ethFeed, btcFeed, ethMarket, btcMarket };
}
