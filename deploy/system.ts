import { ZeroAddress, type AddressLike, type BaseContract, type Signer } from "ethers";
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
  MarginEngineCustody__factory,
  OracleRouter__factory,
  IVault__factory,
} from "../typechain-types";
import type { IMarginEngine, IRebalancer, IVault, LiquidityPool, MockAggregator, MockERC20, OracleRouter } from "../typechain-types";
import type { MarginEngineLibraryAddresses } from "../typechain-types/factories/contracts/core/MarginEngine__factory";

/**
 * Builds the engine's contract factory from its linked libraries: the MarginEngine's own unless a caller (the tests'
 * InstantFillEngine) passes another contract built on it, with the same constructor and libraries.
 */
export type EngineFactoryMaker = (
  libraries: MarginEngineLibraryAddresses,
  signer: Signer,
) => { deploy(...args: Parameters<MarginEngine__factory["deploy"]>): Promise<BaseContract> };

const marginEngineFactory: EngineFactoryMaker = (libraries, signer) => new MarginEngine__factory(libraries, signer);
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
 * Addresses of a deployed core, as recorded in deployments/<network>.json. `engine`, `rebalancer` and `vault` are one
 * contract (the MarginEngine, whose facets serve its cold functions) seen through its three interfaces: the engine
 * holds every token (collateral, LP capital, insurance) and serves custody (IVault) at its own address.
 */
export interface CoreContracts {
  vault: IVault;
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
 * Core contracts, wired: oracle, pool, then the engine (which lists the pool's asset, `usdc`, first, with
 * `usdcHaircut`). `gasAsset` is the asset whose USD price converts gas into the rebalance keeper fee (WETH).
 */
export async function deployCore(
  deployer: Signer,
  usdc: string,
  usdcHaircut: bigint,
  gasAsset: string,
  cfg: RebalancerConfig = DEFAULT_REBALANCER,
  makeEngine: EngineFactoryMaker = marginEngineFactory,
): Promise<CoreContracts> {
  const owner = await deployer.getAddress();
  const oracle = await new OracleRouter__factory(deployer).deploy(owner, ZeroAddress, 0); // L1: no sequencer feed
  const pool = await new LiquidityPool__factory(deployer).deploy(usdc, owner);
  const { engine, rebalancer, vault } = await deployEngine(deployer, oracle, pool, gasAsset, usdcHaircut, cfg, makeEngine);
  return { vault, oracle, pool, engine, rebalancer };
}

/** The engine's linked libraries, its two facets (custody, then the extension that routes to it) and its factory. */
export async function engineParts(
  deployer: Signer,
  oracle: AddressLike,
  pool: AddressLike,
  gasAsset: string,
  makeEngine: EngineFactoryMaker = marginEngineFactory,
) {
  const owner = await deployer.getAddress();
  // The engine's modules are linked libraries, and its cold functions live in facets it delegates to: it would not
  // fit in 24 KiB otherwise.
  const deployLib = async (factory: { deploy(): Promise<BaseContract> }) => {
    const lib = await factory.deploy();
    await lib.waitForDeployment();
    return lib.getAddress();
  };
  const rebalanceLogic = await deployLib(new RebalanceLogic__factory(deployer));
  const tradeLogic = await deployLib(new TradeLogic__factory(deployer));
  const liquidationLogic = await deployLib(new LiquidationLogic__factory(deployer));
  const governanceLogic = await deployLib(new GovernanceLogic__factory(deployer));
  const libraries = {
    "contracts/libraries/logic/TradeLogic.sol:TradeLogic": tradeLogic,
    "contracts/libraries/logic/LiquidationLogic.sol:LiquidationLogic": liquidationLogic,
    "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": rebalanceLogic,
  };
  const custody = await new MarginEngineCustody__factory(deployer).deploy(oracle, pool, gasAsset, owner);
  const extensionFactory = new MarginEngineExtension__factory(
    {
      "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": rebalanceLogic,
      "contracts/libraries/logic/GovernanceLogic.sol:GovernanceLogic": governanceLogic,
    },
    deployer,
  );
  const extension = await extensionFactory.deploy(oracle, pool, gasAsset, custody, owner);
  return {
    custody,
    extension,
    extensionFactory,
    engineFactory: makeEngine(libraries, deployer),
    libraries: { TradeLogic: tradeLogic, LiquidationLogic: liquidationLogic, RebalanceLogic: rebalanceLogic, GovernanceLogic: governanceLogic },
  };
}

/**
 * The MarginEngine over an existing oracle and pool: its parts (engineParts), the engine, then the engine wired into
 * the pool. Returns it through its three interfaces.
 */
export async function deployEngine(
  deployer: Signer,
  oracle: OracleRouter,
  pool: LiquidityPool,
  gasAsset: string,
  usdcHaircut: bigint,
  cfg: RebalancerConfig = DEFAULT_REBALANCER,
  makeEngine: EngineFactoryMaker = marginEngineFactory,
): Promise<{ engine: IMarginEngine; rebalancer: IRebalancer; vault: IVault; parts: Record<string, string> }> {
  const owner = await deployer.getAddress();
  const { extension, custody, engineFactory, libraries } = await engineParts(deployer, oracle, pool, gasAsset, makeEngine);
  const deployed = await engineFactory.deploy(
    oracle,
    pool,
    gasAsset,
    extension,
    usdcHaircut,
    { baseFeeUsd: cfg.baseFeeUsd, gasUnits: cfg.gasUnits },
    cfg.upkeepSize,
    cfg.orderFee,
    owner,
  );
  await (await pool.setEngine(deployed)).wait();
  const address = await deployed.getAddress();
  return {
    engine: IMarginEngine__factory.connect(address, deployer),
    rebalancer: IRebalancer__factory.connect(address, deployer),
    vault: IVault__factory.connect(address, deployer),
    parts: { ...libraries, MarginEngineCustody: await custody.getAddress(), MarginEngineExtension: await extension.getAddress() },
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
  makeEngine: EngineFactoryMaker = marginEngineFactory,
): Promise<LocalSystem> {
  const usdc = await new MockERC20__factory(deployer).deploy("USD Coin", "USDC", 6);
  const weth = await new MockERC20__factory(deployer).deploy("Wrapped Ether", "WETH", 18);
  const wbtc = await new MockERC20__factory(deployer).deploy("Wrapped BTC", "WBTC", 8);
  const core = await deployCore(
    deployer,
    await usdc.getAddress(),
    HAIRCUTS.USDC,
    await weth.getAddress(),
    DEFAULT_REBALANCER,
    makeEngine,
  );
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
