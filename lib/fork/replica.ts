/**
 * A local replica of the parts of Ethereum mainnet Ballast touches, seeded into a running `hardhat node` whose chain id
 * is 1 (BALLAST_NODE_CHAIN_ID=1) and whose clock lies inside the Chainlink data's range (BALLAST_NODE_INITIAL_DATE):
 * a test suite then forks that node over JSON-RPC exactly as it would fork mainnet (README "Forked-mainnet tests").
 *
 * What is placed, at its mainnet address, and how:
 *   REAL published bytecode
 *   - WETH9: @uniswap/v2-periphery/build/WETH9.json (that package's compile of WETH9; mainnet's 2017 contract is a
 *     0.4 compile of the same source), runtime code and its constructor-written storage copied to the address.
 *   - UniswapV3Factory, SwapRouter, NonfungiblePositionManager: the npm artifacts of @uniswap/v3-core and
 *     @uniswap/v3-periphery, created by impersonating Uniswap's deployer at the nonces that created them on mainnet
 *     (same address, same constructor arguments, so the same immutables). The NFT descriptor passed to the position
 *     manager is a stand-in address with no code.
 *   - the WETH/USDC 0.05 % pool, created through that factory: its CREATE2 address is checked to be mainnet's
 *     (the artifact's init code hash equals mainnet's), initialised at the replica's ETH/USD price, with liquidity
 *     minted through the position manager around it.
 *   STAND-INS (contracts/fork/, this repository's code)
 *   - USDC (6 decimals) and WBTC (8 decimals): StandInERC20 with the real names and decimals, minted to the holders
 *     of lib/fork/mainnet.ts HOLDERS (and to the seeder for the pool's liquidity).
 *   - the ETH/USD and BTC/USD proxies: ForkAggregatorProxy (what EACAggregatorProxy does for readers and its owner),
 *     each over a ReplayAggregator serving the REAL rounds of data/chainlink_*_rounds_mainnet.csv up to the replica's
 *     clock, with their real phase-aware round ids. Their owner is the seeder.
 * Not reproduced: the rest of mainnet's state (every other contract and account), real holders' balances and token
 * supplies, the pool's real liquidity depth and position history, the real feeds' oracles (no round is ever added
 * after seeding), earlier feed phases, and mainnet's block numbers and hashes (the replica's chain is a few dozen
 * blocks long).
 */
import fs from "node:fs";
import path from "node:path";
import { ContractFactory, JsonRpcProvider, JsonRpcSigner, getCreate2Address, keccak256, AbiCoder, type InterfaceAbi } from "ethers";

import { ForkAggregatorProxy__factory, ReplayAggregator__factory, StandInERC20__factory } from "../../typechain-types";
import { DECIMALS, FEEDS, FORK_BLOCK, HOLDERS, MAINNET_CHAIN_ID, REPLICA_DATE, TOKENS, UNISWAP } from "./mainnet";

/** How far below the upstream's head Hardhat forks a chain with id 1 (it refuses a later block): its reorg margin. */
export const REPLICA_SAFE_DEPTH = 128;

/** A mistake the user can fix (a URL, a node started without the replica's settings): one line. */
export class ReplicaError extends Error {}

const ROOT = path.resolve(__dirname, "..", "..");
export const ROUND_FILES = {
  WETH: path.join(ROOT, "data", "chainlink_eth_usd_rounds_mainnet.csv"),
  WBTC: path.join(ROOT, "data", "chainlink_btc_usd_rounds_mainnet.csv"),
} as const;
const FEED_DESCRIPTIONS = { WETH: "ETH / USD", WBTC: "BTC / USD" } as const;

export interface Round {
  roundId: bigint;
  answer: bigint;
  startedAt: bigint;
  updatedAt: bigint;
}

/** The rounds of a data/chainlink_*_rounds_mainnet.csv file (roundId,answer,startedAt,updatedAt,answeredInRound). */
export function readRounds(file: string): Round[] {
  const lines = fs.readFileSync(file, "utf8").trim().split("\n");
  if (lines[0].trim() !== "roundId,answer,startedAt,updatedAt,answeredInRound") {
    throw new ReplicaError(`${file}: expected the header roundId,answer,startedAt,updatedAt,answeredInRound`);
  }
  return lines.slice(1).map((l, i) => {
    const [roundId, answer, startedAt, updatedAt] = l.split(",").map((x) => BigInt(x.trim()));
    if (answer <= 0n || updatedAt === 0n) throw new ReplicaError(`${file}: row ${i + 2} is not a valid round`);
    return { roundId, answer, startedAt, updatedAt };
  });
}

/** The rounds of `file` with updatedAt <= `at`: contiguous aggregator rounds 1, 2, … of one phase (checked). */
export function roundsUntil(file: string, at: bigint): { phaseId: number; rounds: Round[] } {
  const all = readRounds(file);
  const phaseId = Number(all[0].roundId >> 64n);
  all.forEach((r, i) => {
    if (r.roundId !== (BigInt(phaseId) << 64n) + BigInt(i + 1)) {
      throw new ReplicaError(`${file}: row ${i + 2} has round id ${r.roundId}, expected round ${i + 1} of phase ${phaseId}`);
    }
  });
  return { phaseId, rounds: all.filter((r) => r.updatedAt <= at) };
}

/** One round as ReplayAggregator stores it: answer | startedAt << 192 | updatedAt << 224. */
const packRound = (r: Round) => r.answer | (r.startedAt << 192n) | (r.updatedAt << 224n);

/** sqrt(token1/token0 in raw units) × 2^96 for the USDC (token0) / WETH (token1) pool at `answer` (8-decimal USD per ETH). */
export function sqrtPriceX96(answer8: bigint): bigint {
  // raw price = 1e18 wei / (answer/1e8 × 1e6 units) = 1e20 / answer
  const n = (10n ** 20n << 192n) / answer8;
  let x = BigInt(Math.floor(Math.sqrt(Number(n))));
  for (;;) {
    const y = (x + n / x) >> 1n;
    if (y >= x - 1n && y <= x + 1n) {
      while (x * x > n) x--;
      while ((x + 1n) * (x + 1n) <= n) x++;
      return x;
    }
    x = y;
  }
}

export interface Placed {
  name: string;
  address: string;
  what: string;
}

export interface ReplicaReport {
  url: string;
  /** the replica's head after seeding: the block a suite forks */
  block: number;
  timestamp: number;
  /** the latest ETH/USD and BTC/USD rounds the proxies serve */
  eth: Round;
  btc: Round;
  placed: Placed[];
  /** true when the node was a replica already (nothing sent) */
  already: boolean;
}

const LOOPBACK = /^https?:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?\/?$/i;
const hex = (n: bigint | number) => "0x" + BigInt(n).toString(16);

function artifact(pkg: string): { abi: InterfaceAbi; bytecode: string } {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const j = require(pkg);
  return { abi: j.abi, bytecode: typeof j.bytecode === "string" ? j.bytecode : "0x" + j.evm.bytecode.object };
}
const WETH9 = () => {
  const j = artifact("@uniswap/v2-periphery/build/WETH9.json");
  return { abi: j.abi, bytecode: j.bytecode.startsWith("0x") ? j.bytecode : "0x" + j.bytecode };
};

/** An account (no code) whose slot 0 records the replica's fork block, for a second `fork:replica` to report. */
export const REPLICA_MARKER = "0x000000000000000000000000000000000ba11a57";

/** Blocks the seeding needs (≈ 70 transactions) and margin. */
const SEEDING_BLOCKS = 300;

/**
 * The fork block's number: Hardhat forks chain id 1 only at blocks whose mainnet hardfork is Spurious Dragon or later
 * (block numbers are mainnet's, chain id 1) and only REPLICA_SAFE_DEPTH blocks below the upstream's head. So before
 * seeding, the chain jumps (`hardhat_mine`, constant time, interval 0: no time passes) to SEEDING_BLOCKS below
 * `forkBlock`, the seeding runs in real blocks after that, and real blocks carry it to `forkBlock` exactly (FORK_BLOCK:
 * the mainnet block the suite pins, same number, same hardfork — Shanghai). Placeholder blocks of `hardhat_mine` must
 * not hold the seeded state: asked for by number, they answer with storage the transactions before them did not
 * write (found the hard way: a fork at such a block saw the seeded code but empty balances); real blocks after them
 * answer correctly. Returns the first block of the seeding.
 */
async function reserveBlocks(provider: JsonRpcProvider, forkBlock: number): Promise<number> {
  const head = await provider.getBlockNumber();
  const jump = forkBlock - SEEDING_BLOCKS - head - 1;
  if (forkBlock < 2_675_000 + SEEDING_BLOCKS) throw new ReplicaError(`fork block ${forkBlock} is before Spurious Dragon on chain 1 (2,675,000): Hardhat will not fork it`);
  if (jump < 0) throw new ReplicaError(`the node is at block ${head}, too close to the fork block ${forkBlock}: seed a fresh node`);
  if (jump > 0) await provider.send("hardhat_mine", [hex(jump), "0x0"]);
  return head + jump + 1;
}

/** Checks `url` is a local Hardhat node with chain id 1 that is not a fork; returns its provider. */
export async function connectUpstream(url: string): Promise<JsonRpcProvider> {
  if (!LOOPBACK.test(url)) {
    throw new ReplicaError(`fork:replica seeds only a local node (http://127.0.0.1:<port>), not ${url}: it rewrites accounts' code and storage`);
  }
  const provider = new JsonRpcProvider(url, MAINNET_CHAIN_ID, { staticNetwork: true, batchMaxCount: 1 });
  let chainId: bigint;
  let client: string;
  try {
    chainId = BigInt(await provider.send("eth_chainId", []));
    client = String(await provider.send("web3_clientVersion", []));
  } catch (e) {
    provider.destroy();
    throw new ReplicaError(`no node answers at ${url} (${String((e as Error).message).split("\n")[0]}): start one with \`BALLAST_NODE_CHAIN_ID=1 BALLAST_NODE_INITIAL_DATE=${REPLICA_DATE} npx hardhat node\``);
  }
  if (chainId !== BigInt(MAINNET_CHAIN_ID)) {
    provider.destroy();
    throw new ReplicaError(`the node at ${url} has chain id ${chainId}; the replica needs chain id 1: start it with BALLAST_NODE_CHAIN_ID=1`);
  }
  if (!/hardhat/i.test(client)) {
    provider.destroy();
    throw new ReplicaError(`the node at ${url} is "${client}", not a Hardhat node: the replica is seeded with hardhat_* methods`);
  }
  const meta = (await provider.send("hardhat_metadata", [])) as { forkedNetwork?: unknown };
  if (meta.forkedNetwork) {
    provider.destroy();
    throw new ReplicaError(`the node at ${url} forks another chain: seed a fresh \`hardhat node\`, not a fork`);
  }
  return provider;
}

/**
 * Seeds the replica into the node at `url` (see the header). A node that already has the replica is reported, not
 * seeded again. `log` gets one line per placement.
 */
export async function seedReplica(url: string, log: (line: string) => void = () => undefined, forkBlock = FORK_BLOCK): Promise<ReplicaReport> {
  const provider = await connectUpstream(url);
  try {
    return await seed(provider, url, log, forkBlock);
  } finally {
    provider.destroy();
  }
}

async function seed(provider: JsonRpcProvider, url: string, log: (line: string) => void, forkBlock: number): Promise<ReplicaReport> {
  const send = (m: string, p: unknown[]) => provider.send(m, p);
  const latest = await provider.getBlock("latest");
  const now = BigInt(latest!.timestamp);

  // the rounds each proxy will serve: everything the data has up to the node's clock
  const eth = roundsUntil(ROUND_FILES.WETH, now);
  const btc = roundsUntil(ROUND_FILES.WBTC, now);
  const report = (placed: Placed[], already: boolean, block: number, timestamp: number): ReplicaReport => ({
    url,
    block,
    timestamp,
    eth: eth.rounds[eth.rounds.length - 1],
    btc: btc.rounds[btc.rounds.length - 1],
    placed,
    already,
  });

  if ((await provider.getCode(UNISWAP.wethUsdc500)) !== "0x") {
    const head = Number(BigInt(await provider.getStorage(REPLICA_MARKER, 0)));
    log(`the node at ${url} is a replica already (the WETH/USDC pool has code); its fork block is ${head}`);
    return report([], true, head, (await provider.getBlock(head))!.timestamp);
  }
  const allEth = readRounds(ROUND_FILES.WETH);
  const [ethFirst, ethLast] = [allEth[0].updatedAt, allEth[allEth.length - 1].updatedAt];
  if (eth.rounds.length < 2 || btc.rounds.length < 2 || now > ethLast + 3_600n) {
    const date = (t: bigint) => new Date(Number(t) * 1000).toISOString().slice(0, 10);
    throw new ReplicaError(
      `the node's clock (${new Date(Number(now) * 1000).toISOString()}) is outside the Chainlink data's range ` +
        `(${date(ethFirst)} – ${date(ethLast)}): start the node with BALLAST_NODE_INITIAL_DATE=${REPLICA_DATE}`,
    );
  }

  const [seederAddress] = (await send("eth_accounts", [])) as string[];
  if (!seederAddress) throw new ReplicaError(`the node at ${url} has no unlocked account to seed from`);
  const seeder = await provider.getSigner(seederAddress);
  await send("hardhat_setBalance", [seederAddress, hex(10n ** 24n)]); // 1,000,000 ETH: the pool's WETH and gas
  const firstSeedBlock = await reserveBlocks(provider, forkBlock);
  const placed: Placed[] = [];
  const put = (name: string, address: string, what: string) => {
    placed.push({ name, address, what });
    log(`${name.padEnd(28)} ${address}  ${what}`);
  };

  /**
   * Deploys with `deploy` at a scratch address, then copies the runtime code (immutables included) and every storage
   * slot the constructor wrote (found by tracing the deployment) to `target`.
   */
  const copyTo = async (target: string, deploy: () => Promise<{ address: string; hash: string }>) => {
    const { address, hash } = await deploy();
    const trace = (await send("debug_traceTransaction", [hash, { disableMemory: true, disableStorage: true }])) as {
      structLogs: { op: string; stack: string[] }[];
    };
    const slots = new Set<string>();
    for (const s of trace.structLogs) {
      if (s.op === "SSTORE") slots.add(hex(BigInt((s.stack[s.stack.length - 1].startsWith("0x") ? "" : "0x") + s.stack[s.stack.length - 1])));
    }
    await send("hardhat_setCode", [target, await provider.getCode(address)]);
    for (const slot of slots) {
      const v = await provider.getStorage(address, slot);
      await send("hardhat_setStorageAt", [target, "0x" + BigInt(slot).toString(16).padStart(64, "0"), v]);
    }
    return slots.size;
  };
  const deployed = async (c: { waitForDeployment(): Promise<unknown>; getAddress(): Promise<string>; deploymentTransaction(): { hash: string } | null }) => {
    await c.waitForDeployment();
    return { address: await c.getAddress(), hash: c.deploymentTransaction()!.hash };
  };

  // ---- WETH9: real published bytecode, copied ----
  const weth9 = WETH9();
  await copyTo(TOKENS.WETH, async () => deployed(await new ContractFactory(weth9.abi, weth9.bytecode, seeder).deploy()));
  put("WETH9", TOKENS.WETH, "real bytecode (@uniswap/v2-periphery build/WETH9.json), code + storage copied");

  // ---- USDC, WBTC: stand-ins ----
  for (const [sym, name] of [["USDC", "USD Coin"], ["WBTC", "Wrapped BTC"]] as const) {
    await copyTo(TOKENS[sym], async () =>
      deployed(await new StandInERC20__factory(seeder).deploy(name, sym, DECIMALS[sym], seederAddress)),
    );
    put(sym, TOKENS[sym], `STAND-IN StandInERC20 (${DECIMALS[sym]} decimals, minter = seeder), code + storage copied`);
  }

  // ---- Uniswap V3: real artifacts, created by the real deployer at the real nonces ----
  const d = UNISWAP.deployer;
  await send("hardhat_setBalance", [d, hex(10n ** 20n)]);
  await send("hardhat_impersonateAccount", [d]);
  const deployer = new JsonRpcSigner(provider, d);
  const create = async (name: string, at: { address: string; nonce: number }, pkg: string, args: unknown[]) => {
    const nonce = await provider.getTransactionCount(d);
    if (nonce > at.nonce) throw new ReplicaError(`${name}: the deployer's nonce is ${nonce} already, past ${at.nonce}`);
    if (nonce < at.nonce) await send("hardhat_setNonce", [d, hex(at.nonce)]);
    const a = artifact(pkg);
    const c = await new ContractFactory(a.abi, a.bytecode, deployer).deploy(...args);
    const { address } = await deployed(c);
    if (address.toLowerCase() !== at.address.toLowerCase()) throw new Error(`${name} landed at ${address}, not ${at.address}`);
    put(name, address, `real bytecode (${pkg.split("/artifacts/")[0]} artifact), CREATE by ${d.slice(0, 10)}… at nonce ${at.nonce}`);
  };
  await create("UniswapV3Factory", UNISWAP.factory, "@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json", []);
  await create("SwapRouter", UNISWAP.swapRouter, "@uniswap/v3-periphery/artifacts/contracts/SwapRouter.sol/SwapRouter.json", [UNISWAP.factory.address, TOKENS.WETH]);
  await create(
    "NonfungiblePositionManager",
    UNISWAP.positionManager,
    "@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json",
    [UNISWAP.factory.address, TOKENS.WETH, UNISWAP.tokenDescriptor],
  );
  await send("hardhat_stopImpersonatingAccount", [d]);

  // ---- Chainlink: replayed real rounds behind stand-in proxies ----
  for (const [sym, data] of [["WETH", eth], ["WBTC", btc]] as const) {
    const agg = await new ReplayAggregator__factory(seeder).deploy(8, FEED_DESCRIPTIONS[sym], seederAddress);
    await agg.waitForDeployment();
    const words = data.rounds.map(packRound);
    // 400 rounds (~11M gas) a transaction: under the 2^24 per-transaction gas cap of recent hardforks
    for (let i = 0; i < words.length; i += 400) await (await agg.load(words.slice(i, i + 400))).wait();
    const aggAddress = await agg.getAddress();
    await copyTo(FEEDS[sym], async () =>
      deployed(await new ForkAggregatorProxy__factory(seeder).deploy(aggAddress, data.phaseId, seederAddress)),
    );
    const lastRound = data.rounds[data.rounds.length - 1];
    put(
      `${FEED_DESCRIPTIONS[sym]} proxy`,
      FEEDS[sym],
      `STAND-IN ForkAggregatorProxy (phase ${data.phaseId}, owner = seeder) over ReplayAggregator ${aggAddress}: ` +
        `${data.rounds.length} real rounds, latest ${lastRound.roundId} = ${lastRound.answer} at ${lastRound.updatedAt}`,
    );
  }

  // ---- holders ----
  const usdc = StandInERC20__factory.connect(TOKENS.USDC, seeder);
  const wbtc = StandInERC20__factory.connect(TOKENS.WBTC, seeder);
  await (await usdc.mint(HOLDERS.USDC.address, HOLDERS.USDC.replicaBalance)).wait();
  await (await wbtc.mint(HOLDERS.WBTC.address, HOLDERS.WBTC.replicaBalance)).wait();
  put("USDC holder", HOLDERS.USDC.address, `minted ${HOLDERS.USDC.replicaBalance / 10n ** 6n} USDC (${HOLDERS.USDC.label}'s address)`);
  put("WBTC holder", HOLDERS.WBTC.address, `minted ${HOLDERS.WBTC.replicaBalance / 10n ** 8n} WBTC (${HOLDERS.WBTC.label}'s address)`);

  // ---- the WETH/USDC 0.05 % pool through the real factory, initialised at the replayed ETH price ----
  const poolArt = artifact("@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json");
  if (keccak256(poolArt.bytecode) !== UNISWAP.poolInitCodeHash) throw new Error("the v3-core pool artifact's init code hash is not mainnet's");
  const salt = keccak256(AbiCoder.defaultAbiCoder().encode(["address", "address", "uint24"], [TOKENS.USDC, TOKENS.WETH, 500]));
  if (getCreate2Address(UNISWAP.factory.address, salt, UNISWAP.poolInitCodeHash).toLowerCase() !== UNISWAP.wethUsdc500.toLowerCase()) {
    throw new Error("USDC/WETH 500 does not map to mainnet's pool address");
  }
  const ethRound = eth.rounds[eth.rounds.length - 1];
  const npmArt = artifact("@uniswap/v3-periphery/artifacts/contracts/NonfungiblePositionManager.sol/NonfungiblePositionManager.json");
  const npm = new ContractFactory(npmArt.abi, "0x", seeder).attach(UNISWAP.positionManager.address) as unknown as {
    createAndInitializePoolIfNecessary(a: string, b: string, fee: number, sqrtP: bigint): Promise<{ wait(): Promise<unknown> }>;
    mint(p: unknown): Promise<{ wait(): Promise<unknown> }>;
  };
  const sqrtP = sqrtPriceX96(ethRound.answer);
  await (await npm.createAndInitializePoolIfNecessary(TOKENS.USDC, TOKENS.WETH, 500, sqrtP)).wait();
  if ((await provider.getCode(UNISWAP.wethUsdc500)) === "0x") throw new Error(`the pool is not at ${UNISWAP.wethUsdc500}`);
  // liquidity: 20,000,000 USDC and 8,000 WETH offered from half to twice the price (±6,932 ticks = ln 2 / ln 1.0001,
  // spacing 10): wide enough that a test can move the pool along with a crash of the feed (test/fork: −25 %) and
  // still flash-swap against it
  const usdcLiquidity = 20_000_000n * 10n ** 6n;
  const wethLiquidity = 8_000n * 10n ** 18n;
  await (await usdc.mint(seederAddress, usdcLiquidity)).wait();
  const wethC = new ContractFactory(weth9.abi, "0x", seeder).attach(TOKENS.WETH) as unknown as {
    deposit(o: { value: bigint }): Promise<{ wait(): Promise<unknown> }>;
    approve(s: string, a: bigint): Promise<{ wait(): Promise<unknown> }>;
  };
  await (await wethC.deposit({ value: wethLiquidity })).wait();
  await (await usdc.approve(UNISWAP.positionManager.address, usdcLiquidity)).wait();
  await (await wethC.approve(UNISWAP.positionManager.address, wethLiquidity)).wait();
  const tick = Math.floor(Math.log(1e20 / Number(ethRound.answer)) / Math.log(1.0001));
  const [tickLower, tickUpper] = [Math.floor((tick - 6_932) / 10) * 10, Math.ceil((tick + 6_932) / 10) * 10];
  await (
    await npm.mint({
      token0: TOKENS.USDC,
      token1: TOKENS.WETH,
      fee: 500,
      tickLower,
      tickUpper,
      amount0Desired: usdcLiquidity,
      amount1Desired: wethLiquidity,
      amount0Min: 0n,
      amount1Min: 0n,
      recipient: seederAddress,
      deadline: now + 86_400n * 365n,
    })
  ).wait();
  put(
    "UniswapV3Pool WETH/USDC 0.05%",
    UNISWAP.wethUsdc500,
    `real bytecode, created by the factory (init code hash = mainnet's); sqrtPriceX96 ${sqrtP} (ETH ${ethRound.answer} e-8 USD), ` +
      `liquidity from ≤ 20,000,000 USDC + 8,000 WETH over ticks [${tickLower}, ${tickUpper}]`,
  );
  // Up to the fork block in real blocks (a zero-value transfer each; see `reserveBlocks`), then REPLICA_SAFE_DEPTH
  // placeholder blocks above it.
  const seeded = await provider.getBlockNumber();
  if (seeded > forkBlock) throw new ReplicaError(`the replica's seeding reached block ${seeded}, past the fork block ${forkBlock}: choose a later block`);
  for (let n = seeded; n < forkBlock; n++) await (await seeder.sendTransaction({ to: seederAddress, value: 0n })).wait();
  await send("hardhat_mine", [hex(REPLICA_SAFE_DEPTH), "0x0"]);
  const at = await provider.getBlock(forkBlock);
  // self-check: the state a fork reads at the fork block is the seeded one (a slot a transaction wrote)
  const probe = "0x" + (2n).toString(16).padStart(64, "0"); // StandInERC20 (OpenZeppelin ERC20) _totalSupply
  if ((await provider.getStorage(TOKENS.USDC, probe, forkBlock)) !== (await provider.getStorage(TOKENS.USDC, probe, "latest"))) {
    throw new Error(`the node serves different state at block ${forkBlock} than at its head: a fork would not see the replica`);
  }
  await send("hardhat_setStorageAt", [REPLICA_MARKER, "0x" + "0".repeat(64), "0x" + BigInt(forkBlock).toString(16).padStart(64, "0")]);
  put("fork block", String(forkBlock), `seeded in blocks ${firstSeedBlock}–${seeded}, real blocks to ${forkBlock}, head ${forkBlock + REPLICA_SAFE_DEPTH}`);
  return report(placed, false, forkBlock, at!.timestamp);
}
