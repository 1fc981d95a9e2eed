/**
 * Per-network deployment parameters: the tokens, the Chainlink feeds (proxies) with their heartbeats, the L2
 * sequencer-uptime feed, the markets and the risk parameters, for every network `npx hardhat deploy` knows.
 *
 * Units: prices and USD values WAD (1e18 = 1 USD); fractions WAD (1e18 = 100 %); times in seconds; token amounts
 * in the token's own decimals. A feed's `maxAge` (the router's `heartbeat`) is the feed's published heartbeat plus
 * a margin: an answer older than that is stale. Addresses are the published mainnet/testnet ones (Chainlink's
 * data-feed and L2 sequencer-feed pages; Circle's USDC; the chains' canonical WETH).
 *
 * `hardhat` and `localhost` deploy mock tokens and Chainlink-style mock feeds (contracts/test/): nothing there is
 * real, and `oracle:push` moves their prices.
 */
import { CRYPTO_FEED, DEFAULT_REBALANCER, DEFAULT_RISK, HAIRCUTS, MAJOR_MARKET, wad } from "./params";
import type { FeedConfig, MarketConfig, RebalancerConfig, RiskConfig } from "./params";

/** A token: a deployed ERC-20, or a mock the deploy creates (local networks). */
export type TokenSource = { address: string } | { mock: { name: string; decimals: number } };
/** A price feed: a Chainlink proxy, or a MockAggregator the deploy creates with an initial answer (8 decimals). */
export type FeedSource = { proxy: string } | { mock: { answer: bigint } };

export interface AssetParams {
  symbol: string;
  token: TokenSource;
  /** collateral haircut, WAD (≤ 1e18) */
  haircut: bigint;
  /** the feed quoting the asset in USD; none for the settlement asset (it counts as exactly 1 USD) */
  feed?: FeedSource;
  /** the router's sanity band and breaker for this feed */
  feedConfig?: FeedConfig;
}

export interface MarketParamsOf {
  /** market name (ETH, BTC) and the symbol of its asset */
  symbol: string;
  asset: string;
  params: MarketConfig;
}

export interface NetworkParams {
  chainId: number;
  /** true: mock tokens and feeds (no real value anywhere) */
  local: boolean;
  /** the settlement asset (the pool's and the markets' currency), listed first */
  settlement: AssetParams;
  /** other collateral/market assets, listed in this order */
  assets: AssetParams[];
  markets: MarketParamsOf[];
  /** the asset whose USD price converts gas into the keeper fee (the chain's native token wrapper) */
  gasAsset: string;
  /** L2 sequencer-uptime feed and the grace period after it comes back; absent on L1 */
  sequencer?: { feed: string; gracePeriod: number };
  risk: RiskConfig;
  keeper: RebalancerConfig;
  /** confirmations each deploy transaction waits for */
  confirmations: number;
  /**
   * The periphery FlashLiquidator (capital-free liquidation through a Uniswap V3 flash swap), deployed where a Uniswap
   * V3 factory and a deep pool of `collateral` (an asset symbol) against the settlement asset exist: the deploy checks
   * that `pool` is that factory's pool of the pair. Absent: not deployed.
   */
  flashLiquidator?: { factory: string; pool: string; collateral: string };
}

/** A feed's router settings: the local default band and breaker with `maxAge` seconds before an answer is stale. */
const feed = (maxAge: number): FeedConfig => ({ ...CRYPTO_FEED, heartbeat: maxAge });

/** Local networks: mock USDC (6), WETH (18), WBTC (8), mock feeds at 2,000 and 30,000 USD, 2 h staleness. */
const LOCAL = (chainId: number): NetworkParams => ({
  chainId,
  local: true,
  settlement: { symbol: "USDC", token: { mock: { name: "USD Coin", decimals: 6 } }, haircut: HAIRCUTS.USDC },
  assets: [
    { symbol: "WETH", token: { mock: { name: "Wrapped Ether", decimals: 18 } }, haircut: HAIRCUTS.WETH, feed: { mock: { answer: 2_000n * 10n ** 8n } }, feedConfig: CRYPTO_FEED },
    { symbol: "WBTC", token: { mock: { name: "Wrapped BTC", decimals: 8 } }, haircut: HAIRCUTS.WBTC, feed: { mock: { answer: 30_000n * 10n ** 8n } }, feedConfig: CRYPTO_FEED },
  ],
  markets: [
    { symbol: "ETH", asset: "WETH", params: MAJOR_MARKET },
    { symbol: "BTC", asset: "WBTC", params: MAJOR_MARKET },
  ],
  gasAsset: "WETH",
  risk: DEFAULT_RISK,
  keeper: DEFAULT_REBALANCER,
  confirmations: 1,
});

/** Live networks: a 10 USDC order fee on Ethereum (an execution costs ~270k gas), 0.5 USDC on rollups. */
const L1_KEEPER: RebalancerConfig = { ...DEFAULT_REBALANCER, orderFee: 10_000_000n };
/** Conservative open-interest caps for a new deployment (USD per side); governance raises them with the pool. */
const LAUNCH_MARKET: MarketConfig = { ...MAJOR_MARKET, oiCapUsd: wad("250000") };

export const NETWORKS: Record<string, NetworkParams> = {
  hardhat: LOCAL(31337),
  localhost: LOCAL(31337),

  // Ethereum mainnet. ETH/USD and BTC/USD: 1 h heartbeat, 0.5 % deviation.
  mainnet: {
    chainId: 1,
    local: false,
    settlement: { symbol: "USDC", token: { address: "0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48" }, haircut: HAIRCUTS.USDC },
    assets: [
      { symbol: "WETH", token: { address: "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2" }, haircut: HAIRCUTS.WETH, feed: { proxy: "0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419" }, feedConfig: feed(3_600 + 1_800) },
      { symbol: "WBTC", token: { address: "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599" }, haircut: HAIRCUTS.WBTC, feed: { proxy: "0xF4030086522a5bEEa4988F8cA5B36dbC97BeE88c" }, feedConfig: feed(3_600 + 1_800) },
    ],
    markets: [
      { symbol: "ETH", asset: "WETH", params: LAUNCH_MARKET },
      { symbol: "BTC", asset: "WBTC", params: LAUNCH_MARKET },
    ],
    gasAsset: "WETH",
    risk: DEFAULT_RISK,
    keeper: L1_KEEPER,
    confirmations: 2,
    // Uniswap V3's factory and its WETH/USDC 0.05 % pool (the deepest WETH/USDC pool on mainnet)
    flashLiquidator: { factory: "0x1F98431c8aD98523631AE4a59f267346ea31F984", pool: "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640", collateral: "WETH" },
  },

  // Sepolia testnet: Circle's test USDC, the canonical Sepolia WETH; ETH/USD 1 h heartbeat. No BTC market (no
  // canonical test WBTC).
  sepolia: {
    chainId: 11_155_111,
    local: false,
    settlement: { symbol: "USDC", token: { address: "0x1c7D4B196Cb0C7B01d743Fbc6116a902379C7238" }, haircut: HAIRCUTS.USDC },
    assets: [
      { symbol: "WETH", token: { address: "0xfFf9976782d46CC05630D1f6eBAb18b2324d6B14" }, haircut: HAIRCUTS.WETH, feed: { proxy: "0x694AA1769357215DE4FAC081bf1f309aDC325306" }, feedConfig: feed(3_600 + 1_800) },
    ],
    markets: [{ symbol: "ETH", asset: "WETH", params: LAUNCH_MARKET }],
    gasAsset: "WETH",
    risk: DEFAULT_RISK,
    keeper: DEFAULT_REBALANCER,
    confirmations: 2,
  },

  // Arbitrum One: native USDC; ETH/USD and BTC/USD 24 h heartbeat, 0.05 % deviation; sequencer-uptime feed.
  arbitrum: {
    chainId: 42_161,
    local: false,
    settlement: { symbol: "USDC", token: { address: "0xaf88d065e77c8cC2239327C5EDb3A432268e5831" }, haircut: HAIRCUTS.USDC },
    assets: [
      { symbol: "WETH", token: { address: "0x82aF49447D8a07e3bd95BD0d56f35241523fBab1" }, haircut: HAIRCUTS.WETH, feed: { proxy: "0x639Fe6ab55C921f74e7fac1ee960C0B6293ba612" }, feedConfig: feed(86_400 + 3_600) },
      { symbol: "WBTC", token: { address: "0x2f2a2543B76A4166549F7aaB2e75Bef0aefC5B0f" }, haircut: HAIRCUTS.WBTC, feed: { proxy: "0x6ce185860a4963106506C203335A2910413708e9" }, feedConfig: feed(86_400 + 3_600) },
    ],
    markets: [
      { symbol: "ETH", asset: "WETH", params: LAUNCH_MARKET },
      { symbol: "BTC", asset: "WBTC", params: LAUNCH_MARKET },
    ],
    gasAsset: "WETH",
    sequencer: { feed: "0xFdB631F5EE196F0ed6FAa767959853A9F217697D", gracePeriod: 3_600 },
    risk: DEFAULT_RISK,
    keeper: DEFAULT_REBALANCER,
    confirmations: 1,
  },

  // Base: native USDC; ETH/USD and BTC/USD 20 min heartbeat (BTC/USD prices cbBTC); sequencer-uptime feed.
  base: {
    chainId: 8_453,
    local: false,
    settlement: { symbol: "USDC", token: { address: "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913" }, haircut: HAIRCUTS.USDC },
    assets: [
      { symbol: "WETH", token: { address: "0x4200000000000000000000000000000000000006" }, haircut: HAIRCUTS.WETH, feed: { proxy: "0x71041dddad3595F9CEd3DcCFBe3D1F4b0a16Bb70" }, feedConfig: feed(1_200 + 1_800) },
      { symbol: "cbBTC", token: { address: "0xcbB7C0000aB88B473b1f5aFd9ef808440eed33Bf" }, haircut: HAIRCUTS.WBTC, feed: { proxy: "0x64c911996D3c6aC71f9b455B1E8E7266BcbD848F" }, feedConfig: feed(1_200 + 1_800) },
    ],
    markets: [
      { symbol: "ETH", asset: "WETH", params: LAUNCH_MARKET },
      { symbol: "BTC", asset: "cbBTC", params: LAUNCH_MARKET },
    ],
    gasAsset: "WETH",
    sequencer: { feed: "0xBCF85224fc0756B9Fa45aA7892530B47e10b6433", gracePeriod: 3_600 },
    risk: DEFAULT_RISK,
    keeper: DEFAULT_REBALANCER,
    confirmations: 1,
  },
};

/** The parameters of `network`; a one-line error naming the known networks otherwise. */
export function networkParams(network: string): NetworkParams {
  const p = NETWORKS[network];
  if (!p) throw new Error(`no deployment parameters for network "${network}": use one of ${Object.keys(NETWORKS).join(", ")}`);
  return p;
}
