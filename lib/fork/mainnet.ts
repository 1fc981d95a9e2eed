/**
 * Ethereum mainnet as the forked-mainnet suite and the replica (lib/fork/replica.ts) see it: the tokens and Chainlink
 * proxies Ballast's `mainnet` deploy parameters name (read from deploy/networks.ts, not restated), the Uniswap V3
 * contracts the replica places, the pinned fork block, and the one table of token holders the tests fund accounts
 * from by impersonation.
 */
import { NETWORKS } from "../../deploy/networks";

const params = NETWORKS.mainnet;

function tokenOf(symbol: string): string {
  const a = [params.settlement, ...params.assets].find((x) => x.symbol === symbol);
  if (!a || !("address" in a.token)) throw new Error(`deploy/networks.ts: mainnet has no ${symbol} token address`);
  return a.token.address;
}

function feedOf(symbol: string): string {
  const a = params.assets.find((x) => x.symbol === symbol);
  if (!a?.feed || !("proxy" in a.feed)) throw new Error(`deploy/networks.ts: mainnet has no ${symbol} feed proxy`);
  return a.feed.proxy;
}

export const MAINNET_CHAIN_ID = params.chainId;

/** Token addresses (deploy/networks.ts `mainnet`). */
export const TOKENS = { USDC: tokenOf("USDC"), WETH: tokenOf("WETH"), WBTC: tokenOf("WBTC") } as const;
export const DECIMALS = { USDC: 6, WETH: 18, WBTC: 8 } as const;

/** Chainlink EACAggregatorProxy addresses (deploy/networks.ts `mainnet`), by the asset they price. */
export const FEEDS = { WETH: feedOf("WETH"), WBTC: feedOf("WBTC") } as const;

/** Uniswap V3 on mainnet. Factory, SwapRouter and NonfungiblePositionManager were created by one deployer account
 *  with plain CREATE at these nonces (checked: keccak(rlp(deployer, nonce)) gives each address), so the replica
 *  reproduces their addresses by impersonating the deployer at the same nonces. */
export const UNISWAP = {
  deployer: "0x6C9FC64A53c1b71FB3f9Af64d1ae3A4931A5f4E9",
  factory: { address: "0x1F98431c8aD98523631AE4a59f267346ea31F984", nonce: 0 },
  swapRouter: { address: "0xE592427A0AEce92De3Edee1F18E0157C05861564", nonce: 4 },
  positionManager: { address: "0xC36442b4a4522E871399CD717aBDD847Ab11FE88", nonce: 8 },
  /** the WETH/USDC 0.05 % pool: CREATE2 by the factory, salt keccak(USDC, WETH, 500) */
  wethUsdc500: "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640",
  /** UniswapV3Pool's init code hash on mainnet (PoolAddress.POOL_INIT_CODE_HASH); the replica checks the npm artifact's */
  poolInitCodeHash: "0xe34f199b19b2b4f47f68442619d555527d244f78a3297ea89325f843f87b8b54",
  /** The NonfungiblePositionManager's token descriptor, an immutable of its constructor. On the replica this address
   *  is a STAND-IN with no code (tokenURI reverts there); nothing in Ballast or its tests reads it. */
  tokenDescriptor: "0xEe6A57eC80ea46401049E92587E52f5Ec1c24785",
} as const;

/**
 * The pinned mainnet block the suite forks when MAINNET_RPC_URL is set (FORK_BLOCK overrides): block 19,000,000, about
 * 13 Jan 2024, inside the range of data/chainlink_*_rounds_mainnet.csv (2023-04-05 – 2024-01-29), after Shanghai and
 * before Cancun (so both modes fork a pre-Cancun block and run their own blocks as Cancun; see test/fork/upstream.ts).
 */
export const FORK_BLOCK = 19_000_000;

/** The replica's clock: a `hardhat node` started with BALLAST_NODE_INITIAL_DATE at this time seeds the rounds up to it
 *  (about the time of FORK_BLOCK on mainnet). */
export const REPLICA_DATE = "2024-01-13T19:00:00Z";

/**
 * Holders the tests fund accounts from by impersonation, one table for both modes. On mainnet these accounts hold the
 * token at FORK_BLOCK (big exchange/protocol wallets: NOT checked offline; the suite checks the balance and says so
 * when it falls short); on the replica, seeding MINTS `replicaBalance` to the same addresses (the replica's holders
 * are its own creation, not mainnet's balances).
 */
export const HOLDERS = {
  USDC: { address: "0x28C6c06298d514Db089934071355E5743bf21d60", label: "Binance 14", replicaBalance: 100_000_000n * 10n ** 6n },
  WBTC: { address: "0x5Ee5bf7ae06D1Be5997A1A72006FE6C607eC6DE8", label: "Aave v3 aEthWBTC", replicaBalance: 1_000n * 10n ** 8n },
} as const;
