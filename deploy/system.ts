import type { Signer } from "ethers";
import {
  GovernanceLogic__factory,
  IMarginEngine__factory,
  IRebalancer__factory,
  LiquidationLogic__factory,
  RebalanceLogic__factory,
  TradeLogic__factory,
  LiquidityPool__factory,
  MarginEngine__factory,
  MarginEngineExtension__factory,
  MockAggregator__factory,
  MockERC20__factory,
  OracleRouter__factory,
  Vault__factory,
} from "../typechain-types";
import type { IMarginEngine, IRebalancer, LiquidityPool, MockAggregator, MockERC20, OracleRouter, Vault } from "../typechain-types";
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

/**
 * Addresses of a deployed core, as recorded in deployments/<network>.json. `engine` and `rebalancer` are one contract
 * (the MarginEngine, whose extension serves its cold functions) seen through its two interfaces.
 */
export interface CoreContracts {
  vault: Vault;
  oracle: OracleRouter;
  pool: LiquidityPool;
  engine: IMarginEngine;
  rebalancer: IRebalancer;
}

export interface LocalSystem extends CoreContracts {
  usdc: MockERC20;
  weth: MockERC20;
  wbtc: MockERC20;
  ethFeed: MockAggregator;
  btcFeed: MockAggregator;
  ethMarket: bigint;
  btcMarket: bigint;
}

/**
 * Core contracts, wired. The vault must list the settlement asset before the engine is deployed. `gasAsset` is the
 * asset whose USD price converts gas into the rebalance keeper fee (WETH).
 */
export async function deployCore(
  deployer: Signer,
  usdc: string,
  usdcHaircut: bigint,
  gasAsset: string,
  cfg: RebalancerConfig = DEFAULT_REBALANCER,
): Promise<CoreContracts> {
  const owner = await deployer.getAddress();
  const vault = await new Vault__factory(deployer).deploy(owner);
  const oracle = await new OracleRouter__factory(deployer).deploy(owner);
  const pool = await new LiquidityPool__factory(deployer).deploy(usdc, owner);
  await (await vault.listAsset(usdc, usdcHaircut)).wait();
  const { engine, rebalancer } = await deployEngine(deployer, vault, oracle, pool, gasAsset, cfg);
  return { vault, oracle, pool, engine, rebalancer };
}

/**
 * The MarginEngine over an existing vault (which must list the pool's asset), oracle and pool: its linked libraries,
 * its extension, the engine, then the engine wired into vault and pool. Returns it through its two interfaces.
 */
export async function deployEngine(
  deployer: Signer,
  vault: Vault,
  oracle: OracleRouter,
  pool: LiquidityPool,
  gasAsset: string,
  cfg: RebalancerConfig = DEFAULT_REBALANCER,
): Promise<{ engine: IMarginEngine; rebalancer: IRebalancer }> {
  const owner = await deployer.getAddress();
  // The engine's modules are linked libraries, and its cold functions live in an extension it delegates to: it would
  // not fit in 24 KiB otherwise.
  const deployLib = async (factory: { deploy(): Promise<{ getAddress(): Promise<string> }> }) =>
    (await factory.deploy()).getAddress();
  const rebalanceLogic = await deployLib(new RebalanceLogic__factory(deployer));
  const libraries = {
    "contracts/libraries/logic/TradeLogic.sol:TradeLogic": await deployLib(new TradeLogic__factory(deployer)),
    "contracts/libraries/logic/LiquidationLogic.sol:LiquidationLogic": await deployLib(new LiquidationLogic__factory(deployer)),
    "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": rebalanceLogic,
  };
  const extension = await new MarginEngineExtension__factory(
    {
      "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": rebalanceLogic,
      "contracts/libraries/logic/GovernanceLogic.sol:GovernanceLogic": await deployLib(new GovernanceLogic__factory(deployer)),
    },
    deployer,
  ).deploy(vault, oracle, pool, gasAsset, owner);
  const deployed = await new MarginEngine__factory(libraries, deployer).deploy(
    vault,
    oracle,
    pool,
    gasAsset,
    extension,
    { baseFeeUsd: cfg.baseFeeUsd, gasUnits: cfg.gasUnits },
    cfg.upkeepSize,
    owner,
  );
  await (await vault.setEngine(deployed)).wait();
  await (await pool.setEngine(deployed)).wait();
  const address = await deployed.getAddress();
  return {
    engine: IMarginEngine__factory.connect(address, deployer),
    rebalancer: IRebalancer__factory.connect(address, deployer),
  };
}

export async function setFeed(oracle: OracleRouter, asset: string, feed: string, cfg: FeedConfig): Promise<void> {
  await (await oracle.setFeed(asset, { feed, ...cfg })).wait();
  await (await oracle.poke(asset)).wait();
}

export async function createMarket(engine: IMarginEngine, asset: string, cfg: MarketConfig): Promise<bigint> {
  const id = await engine.marketCount();
  await (await engine.createMarket({ asset, ...cfg })).wait();
  return id;
}

export async function setRisk(engine: IMarginEngine, cfg: RiskConfig): Promise<void> {
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
  const core = await deployCore(deployer, await usdc.getAddress(), HAIRCUTS.USDC, await weth.getAddress());
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
  return { ...core, usdc, weth, wbtc, ethFeed, btcFeed, ethMarket, btcMarket };
}
