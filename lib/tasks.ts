/**
 * What every Ballast Hardhat task shares (tasks/): the deployment of the selected network, the signer (`--from`), the
 * account, asset and market a user names, and one-line errors. A user mistake — an unknown account, asset or market,
 * a bad number, a missing deployment, a revert with one of the contracts' named errors — becomes a HardhatPluginError
 * whose message says what was wrong and how to fix it (Hardhat prints it without a stack trace and exits 1).
 *
 * Loaded by hardhat.config.ts through the task files, before anything is compiled: TypeChain is imported with
 * `import type` only, and the factories (lib/connect.ts, typechain-types) are loaded inside functions.
 */
import { task } from "hardhat/config";
import { HardhatPluginError } from "hardhat/plugins";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import type { ContractTransactionResponse, Interface, Result, Signer, TransactionReceipt } from "ethers";

import type { Ballast } from "./connect";
import { DeploymentError, loadDeployment, type DeploymentRecord } from "./deployment";
import { formatFixed, health as fmtHealth, textTable } from "./format";
import { formatUnits, parseInteger, UnitsError } from "./units";

export const PLUGIN = "ballast";
/** The chain id of Hardhat's in-process network and of `npx hardhat node`: where the local-only tasks run. */
export const LOCAL_CHAIN_ID = 31337n;

/** Throws the one-line error a task reports. */
export function fail(message: string): never {
  throw new HardhatPluginError(PLUGIN, message);
}

export interface Asset {
  symbol: string;
  address: string;
  decimals: number;
}

export interface Market {
  symbol: string;
  id: number;
  /** the market's asset */
  asset: Asset;
}

/** A task's view of the deployment: the contracts, the signer, and the names the user may type. */
export interface Ctx {
  hre: HardhatRuntimeEnvironment;
  rec: DeploymentRecord;
  b: Ballast;
  signer: Signer;
  from: string;
  /** decimals of the pool's shares */
  shareDecimals: number;
  /** listed assets and market assets by upper-case symbol */
  assets: Map<string, Asset>;
  markets: Map<string, Market>;
}

/** The deployments directory: BALLAST_DEPLOYMENTS_DIR, else the repository's deployments/. */
export const deploymentsDir = () => process.env.BALLAST_DEPLOYMENTS_DIR || undefined;

/**
 * Loads the deployment of `hre.network.name`, checks the engine is there, resolves `--from` and connects. `from` is a
 * signer index ("0", "1", …) or an address among `hre.ethers.getSigners()`.
 */
export async function connect(hre: HardhatRuntimeEnvironment, from = "0"): Promise<Ctx> {
  let rec: DeploymentRecord;
  try {
    rec = loadDeployment(hre.network.name, deploymentsDir());
  } catch (e) {
    if (e instanceof DeploymentError) fail(e.message);
    throw e;
  }
  const chainId = (await hre.ethers.provider.getNetwork()).chainId;
  if (BigInt(rec.chainId) !== chainId) {
    fail(`the deployment of "${rec.network}" is for chain ${rec.chainId}, but the network is chain ${chainId}: redeploy (npx hardhat deploy --network ${hre.network.name})`);
  }
  if ((await hre.ethers.provider.getCode(rec.engine)) === "0x") {
    fail(`no engine at ${rec.engine} on network "${hre.network.name}": the deployment record is stale (a restarted node?), redeploy (npx hardhat deploy --network ${hre.network.name})`);
  }
  const signer = await resolveSigner(hre, from);
  const { connectBallast } = await import("./connect");
  const b = connectBallast(rec, signer);
  const { IERC20Metadata__factory } = await import("../typechain-types");
  const assets = new Map<string, Asset>();
  for (const [symbol, address] of Object.entries(rec.assets)) {
    const decimals = Number(await IERC20Metadata__factory.connect(address, signer).decimals());
    assets.set(symbol.toUpperCase(), { symbol, address, decimals });
  }
  const markets = new Map<string, Market>();
  for (const [symbol, m] of Object.entries(rec.markets)) {
    const asset = [...assets.values()].find((a) => a.address.toLowerCase() === m.asset.toLowerCase());
    if (!asset) fail(`market ${symbol}'s asset ${m.asset} is not among the deployment's assets: redeploy or restore the record`);
    markets.set(symbol.toUpperCase(), { symbol, id: m.id, asset });
  }
  const shareDecimals = Number(await b.pool.decimals());
  return { hre, rec, b, signer, from: await signer.getAddress(), shareDecimals, assets, markets };
}

export async function resolveSigner(hre: HardhatRuntimeEnvironment, from: string): Promise<Signer> {
  const signers = await hre.ethers.getSigners();
  if (/^\d+$/.test(from)) {
    const i = Number(from);
    if (i >= signers.length) fail(`--from ${from}: the network has ${signers.length} signers, use an index 0..${signers.length - 1} or an address`);
    return signers[i];
  }
  if (/^0x[0-9a-fA-F]{40}$/.test(from)) {
    const s = signers.find((x) => x.address.toLowerCase() === from.toLowerCase());
    if (!s) fail(`--from ${from}: not one of the network's signers, use an index 0..${signers.length - 1} or one of their addresses`);
    return s;
  }
  return fail(`--from "${from}" is neither a signer index nor an address: use e.g. --from 1 or --from 0x…`);
}

/** `--account`: an existing account id. */
export async function accountOf(ctx: Ctx, text: string | undefined, option = "--account"): Promise<bigint> {
  const id = parse(() => parseInteger(need(text, option, "1"), option));
  const count = await ctx.b.vault.accountCount();
  if (id === 0n || id > count) {
    fail(count === 0n
      ? `account ${id} does not exist (no account yet): create one with account:create`
      : `account ${id} does not exist (accounts are 1..${count}): create one with account:create`);
  }
  return id;
}

/** `--asset`: a listed asset by symbol (case-insensitive) or address. */
export function assetOf(ctx: Ctx, text: string | undefined, option = "--asset"): Asset {
  need(text, option, [...ctx.assets.values()].map((x) => x.symbol)[0] ?? "USDC");
  text = text!;
  const a = ctx.assets.get(text.toUpperCase()) ?? [...ctx.assets.values()].find((x) => x.address.toLowerCase() === text.toLowerCase());
  if (!a) fail(`unknown asset "${text}": use one of ${[...ctx.assets.values()].map((x) => x.symbol).join(", ")}`);
  return a;
}

/** `--market`: a market by symbol (ETH, BTC) or by its asset's symbol (WETH, WBTC). */
export function marketOf(ctx: Ctx, text: string | undefined, option = "--market"): Market {
  need(text, option, [...ctx.markets.values()].map((x) => x.symbol)[0] ?? "ETH");
  text = text!;
  const m = ctx.markets.get(text.toUpperCase()) ?? [...ctx.markets.values()].find((x) => x.asset.symbol.toUpperCase() === text.toUpperCase());
  if (!m) fail(`unknown market "${text}": use one of ${[...ctx.markets.values()].map((x) => x.symbol).join(", ")}`);
  return m;
}

/**
 * A required option's value. The tasks declare every option as optional to Hardhat and check here: a parameter
 * Hardhat itself finds missing is reported with a stack trace on machines it takes for CI servers.
 */
export function need(value: string | undefined, option: string, example: string): string {
  if (value === undefined || value === "") fail(`${option} is required, e.g. ${option} ${example}`);
  return value;
}

/** Runs a parser, turning its UnitsError into the task's one-line error. */
export function parse<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof UnitsError) fail(e.message);
    throw e;
  }
}

/** Sends a transaction and waits for its receipt; a revert becomes the one-line error naming it. */
export async function send(ctx: Ctx, tx: () => Promise<ContractTransactionResponse>): Promise<TransactionReceipt> {
  try {
    const receipt = await (await tx()).wait();
    if (!receipt) fail("the transaction was dropped: try again");
    return receipt;
  } catch (e) {
    return rethrow(ctx, e);
  }
}

/** A view call; a revert becomes the one-line error naming it. */
export async function call<T>(ctx: Ctx, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    return rethrow(ctx, e);
  }
}

/** The parsed logs of `receipt` that `iface` knows, by event name. */
export function eventsOf(iface: Interface, receipt: TransactionReceipt, name: string): Result[] {
  const out: Result[] = [];
  for (const l of receipt.logs) {
    let p;
    try {
      p = iface.parseLog(l);
    } catch {
      continue;
    }
    if (p?.name === name) out.push(p.args);
  }
  return out;
}

// ------------------------------------------------------------------------------------------ formatting

/** A token amount, exact: "1.5 WETH". */
export const amount = (value: bigint, a: Asset) => `${formatUnits(value, a.decimals)} ${a.symbol}`;
/** A WAD USD value: "1,234.56". */
export const usd = (wad: bigint) => formatFixed(wad, 18, 2);
/** A WAD ratio: "1.600". */
export const ratio = (wad: bigint) => fmtHealth(wad);
/** Unix seconds as an ISO date (UTC). */
export const when = (seconds: bigint | number) => new Date(Number(seconds) * 1000).toISOString().replace(".000Z", "Z");

export function symbolOf(ctx: Ctx, address: string): string {
  return [...ctx.assets.values()].find((a) => a.address.toLowerCase() === address.toLowerCase())?.symbol ?? address;
}

// ------------------------------------------------------------------------------------------ errors

let errorInterface: Interface | undefined;

/** Every named error of the engine (its three interfaces), the pool, the oracle and the tokens, in one interface. */
async function errors(): Promise<Interface> {
  if (errorInterface) return errorInterface;
  const { Interface: Iface } = await import("ethers");
  const t = await import("../typechain-types");
  const seen = new Map<string, string>();
  for (const f of [
    t.IMarginEngine__factory,
    t.IRebalancer__factory,
    t.IVault__factory,
    t.LiquidityPool__factory,
    t.OracleRouter__factory,
    t.MockERC20__factory,
  ]) {
    for (const frag of f.createInterface().fragments) {
      if (frag.type !== "error") continue;
      const sig = frag.format("full");
      seen.set(frag.format("sighash"), sig);
    }
  }
  errorInterface = new Iface([...seen.values()]);
  return errorInterface;
}

/** The revert data of a failed call or transaction, wherever ethers or the provider put it. */
export function revertData(e: unknown, depth = 0): string | undefined {
  if (!e || typeof e !== "object" || depth > 6) return undefined;
  const o = e as Record<string, unknown>;
  if (typeof o.data === "string" && /^0x[0-9a-fA-F]{8}/.test(o.data)) return o.data;
  if (o.data && typeof o.data === "object") {
    const d = revertData(o.data, depth + 1);
    if (d) return d;
  }
  for (const k of ["error", "info", "cause", "revert"]) {
    const d = revertData(o[k], depth + 1);
    if (d) return d;
  }
  return undefined;
}

/** Turns a failed call into the one-line error: a named contract error explained, a one-line error kept. */
export async function rethrow(ctx: Ctx, e: unknown): Promise<never> {
  if (HardhatPluginError.isHardhatPluginError(e)) throw e;
  const data = revertData(e);
  if (data) {
    const iface = await errors();
    let parsed;
    try {
      parsed = iface.parseError(data);
    } catch {
      parsed = null;
    }
    if (parsed) fail(`${parsed.name}: ${explain(ctx, parsed.name, parsed.args)}`);
    fail(`the transaction reverted with unknown data ${data.slice(0, 10)}: check the deployment record matches the contracts`);
  }
  const msg = e instanceof Error ? e.message : String(e);
  if (/insufficient funds/i.test(msg)) fail(`${ctx.from} has not enough ETH to pay for gas: fund it first`);
  throw e;
}

const num = (v: unknown) => BigInt(v as bigint);

/** What a named error means for the user, and what to do about it. */
export function explain(ctx: Ctx, name: string, a: Result): string {
  const asset = (addr: unknown): Asset =>
    [...ctx.assets.values()].find((x) => x.address.toLowerCase() === String(addr).toLowerCase()) ??
    { symbol: String(addr), address: String(addr), decimals: 0 };
  const tok = (v: unknown, addr: unknown) => {
    const as = asset(addr);
    return as.decimals === 0 && as.symbol === String(addr) ? `${num(v)} units of ${as.symbol}` : amount(num(v), as);
  };
  switch (name) {
    case "NotAuthorized":
    case "NotAccountOwner":
      return `${a[1]} is not the owner or an operator of account ${a[0]}: run it --from the account's owner`;
    case "AccountNotFound":
      return `account ${a[0]} does not exist: create one with account:create`;
    case "AssetNotListed":
      return `${symbolOf(ctx, String(a[0]))} is not listed as collateral: use one of ${[...ctx.assets.values()].map((x) => x.symbol).join(", ")}`;
    case "ZeroAmount":
      return "the amount is zero: give a positive amount";
    case "InsufficientReserve":
      return `account ${a[0]} has ${tok(a[2], a[1])} in reserve, ${tok(a[3], a[1])} needed: deposit more with collateral:deposit or release margin with collateral:release`;
    case "InsufficientMargin":
      return `account ${a[0]} has ${tok(a[2], a[1])} of margin, ${tok(a[3], a[1])} requested: release at most what it has`;
    case "MarginAssetRestricted":
      return `only the owner or an operator of account ${a[0]} may post ${symbolOf(ctx, String(a[1]))} as margin: run it --from the account's owner, or deposit USDC`;
    case "BelowInitialMargin":
      return `account ${a[0]} would have equity ${usd(num(a[1]))} USD, below its initial margin ${usd(num(a[2]))} USD: post more margin (collateral:post), trade a smaller size, or reduce with position:close (reduce-only, needs no margin)`;
    case "OrderPending":
      return `account ${a[0]} already has order ${a[1]} waiting, which may add risk: one at a time, and no margin release until a keeper settles it (order:execute); reduce-only orders (position:close) are still accepted`;
    case "PositionIncreasePaused":
      return "the engine is paused: only orders that reduce or close a position are accepted until it is unpaused";
    case "ZeroSizeDelta":
      return "the size is zero: give a positive --size";
    case "PositionTooLarge":
      return `a position of ${formatUnits(num(a[1]), 18)} units in market ${a[0]} is too large: trade a smaller size`;
    case "InvalidDeadline":
      return `deadline ${when(num(a[0]))} is outside ${when(num(a[1]))} … ${when(num(a[2]))}: use --deadline-seconds from 1 to 86400`;
    case "TooManyPendingOrders":
      return `account ${a[0]} already has ${a[1]} pending orders: wait until a keeper settles them (order:execute)`;
    case "OrderNotFound":
      return `order ${a[0]} is not pending (never requested, or already filled or cancelled)`;
    case "OrderNotReady":
      return `order ${a[0]} fills at the feed's round after ${a[1]}, not published yet: a keeper fills it then (on a local network: oracle:push)`;
    case "NotLiquidatable":
      return `account ${a[0]} is not liquidatable: its health ${ratio(num(a[1]))} is not below 1`;
    case "RescueAvailable":
      return `account ${a[0]} can be rescued from its own reserve, which comes before liquidation: rebalance it (rebalance --accounts ${a[0]})`;
    case "NothingToRebalance":
      return "the account needs no rebalance now (inside its band, in cooldown, or nothing its policy allows would help): account:status shows why";
    case "NotOptedIn":
      return `account ${a[0]} has no rebalancing policy: set one with policy:set`;
    case "Liquidatable":
      return `account ${a[0]} is below health 1 (${ratio(num(a[1]))}) and its reserve cannot rescue it: only liquidate acts on it`;
    case "OracleUnhealthy":
      return `the oracle of ${symbolOf(ctx, String(a[0]))} has no valid price now (stale, tripped or out of bounds): wait for a fresh round`;
    case "StalePrice":
      return `the ${symbolOf(ctx, String(a[0]))} price is stale (last round ${when(num(a[1]))}, heartbeat ${a[2]} s): wait for a fresh round`;
    case "CircuitBreakerTripped":
      return `the ${symbolOf(ctx, String(a[0]))} circuit breaker is tripped until ${when(num(a[1]))}: wait for it to reset`;
    case "PriceOutOfBounds":
      return `the ${symbolOf(ctx, String(a[0]))} price ${usd(num(a[1]))} is outside its sane band ${usd(num(a[2]))} … ${usd(num(a[3]))}`;
    case "FeedNotSet":
      return `${symbolOf(ctx, String(a[0]))} has no price feed: use a listed market asset`;
    case "PolicyTriggerTooLow":
      return `--trigger ${ratio(num(a[0]))} must be above 1`;
    case "PolicyBandTooNarrow":
      return `ratios ${ratio(num(a[0]))} and ${ratio(num(a[1]))} are closer than ${ratio(num(a[2]))}: keep --target ≥ --trigger + ${ratio(num(a[2]))} and --release ≥ --target + ${ratio(num(a[2]))}`;
    case "PolicyTargetTooHigh":
      return `--target ${ratio(num(a[0]))} is above the maximum ${ratio(num(a[1]))}`;
    case "PolicyUnknownActions":
      return `actions ${a[0]} are unknown: use top-up, reduce, release, and reduce-first only with reduce`;
    case "PolicyReleaseRatioMissing":
      return "the release action needs a release ratio: give --release (≥ target + 0.05)";
    case "PolicyTopUpAssetsMissing":
      return "top-up and release need reserve assets: give --assets, e.g. --assets USDC,WETH";
    case "PolicyRatioPrecision":
      return `ratio ${formatUnits(num(a[0]), 18)} has more than 6 decimals: give --trigger, --target and --release to at most 6 decimals`;
    case "PolicyReleaseTooHigh":
      return `--release ${ratio(num(a[0]))} is above the maximum ${ratio(num(a[1]))}`;
    case "PolicyTooManyAssets":
      return `${a[0]} assets given, at most ${a[1]}: shorten --assets`;
    case "PolicyAssetNotListed":
      return `${symbolOf(ctx, String(a[0]))} is not a listed asset: use one of ${[...ctx.assets.values()].map((x) => x.symbol).join(", ")}`;
    case "PolicyDuplicateAsset":
      return `${symbolOf(ctx, String(a[0]))} is given twice in --assets: list each asset once`;
    case "PolicyCooldownTooLong":
      return `--cooldown ${a[0]} s is above the maximum ${a[1]} s`;
    case "PolicyFeeTooHigh":
      return `--max-fee ${usd(num(a[0]))} USD is above the maximum ${usd(num(a[1]))} USD`;
    case "SharesLocked":
      return `${a[0]}'s ${formatUnits(num(a[1]), ctx.shareDecimals)} newest shares are locked until ${when(num(a[2]))} (the pool's hold period): redeem after that`;
    case "ReceiverLocked":
      return `${a[0]} has shares locked until ${when(num(a[1]))}: only it may deposit for itself until then`;
    case "ERC4626ExceededMaxRedeem":
      return `${a[0]} can redeem at most ${formatUnits(num(a[2]), ctx.shareDecimals)} shares now, ${formatUnits(num(a[1]), ctx.shareDecimals)} asked (the rest is locked, or backs open interest)`;
    case "ERC4626ExceededMaxDeposit":
      return `the pool accepts at most ${a[2]} units now, ${a[1]} given (it cannot be valued while an oracle is invalid)`;
    case "InsufficientCapital":
      return `the pool has ${a[0]} units free, ${a[1]} requested: redeem less or wait until open interest is closed`;
    case "PoolValuationUnavailable":
      return "the pool cannot be valued now (an oracle of a market with open interest is invalid): try again after a fresh round";
    case "ERC20InsufficientBalance":
      return `${a[0]} holds ${a[1]} units of the token, ${a[2]} needed: fund the wallet first`;
    case "ERC20InsufficientAllowance":
      return `allowance ${a[1]} units, ${a[2]} needed: approve the spender ${a[0]} first`;
    case "OwnableUnauthorizedAccount":
      return `${a[0]} is not the owner of the contract: run it --from the owner`;
    case "OpenInterestCap":
      return `market ${a[0]} would reach ${usd(num(a[1]))} USD of open interest, above its cap ${usd(num(a[2]))} USD: trade a smaller size`;
    case "PriceNotAcceptable":
      return `the fill price ${usd(num(a[0]))} is beyond the acceptable price ${usd(num(a[1]))}: allow more slippage`;
    case "UnknownMarket":
      return `market ${a[0]} does not exist: markets:list shows the markets`;
    default:
      return `the contract refused (${name}(${[...a].map(String).join(", ")}))`;
  }
}

// ------------------------------------------------------------------------------------------ actions and output

const TASK_NAMES = new Set<string>();

/** Declares a Ballast task (hardhat/config `task`), remembered so its one-line errors can be printed as one line. */
export function ballastTask(name: string, description: string) {
  TASK_NAMES.add(name);
  return task(name, description);
}

/** True when the process is `npx hardhat <one of our tasks> …`: the task is the command line's, not a script's or a test's. */
const fromCommandLine = () => process.argv.slice(2).some((a) => TASK_NAMES.has(a));

/**
 * Wraps a task action: a UnitsError or DeploymentError raised anywhere in it becomes the one-line error (the
 * contracts' reverts are turned into one by `send` and `call`). Run from the command line, the one-line error is
 * printed as `Error: <message>` on stderr and the process exits 1 — Hardhat itself would add a stack trace on
 * machines it takes for CI servers (any Linux without a display). Called from a script or a test (`hre.run`), it
 * is thrown as a HardhatPluginError.
 */
export function action<A>(fn: (args: A, hre: HardhatRuntimeEnvironment) => Promise<unknown>) {
  return async (args: A, hre: HardhatRuntimeEnvironment) => {
    try {
      try {
        return await fn(args, hre);
      } catch (e) {
        if (e instanceof UnitsError || e instanceof DeploymentError) fail(e.message);
        throw e;
      }
    } catch (e) {
      if (!HardhatPluginError.isHardhatPluginError(e) || e.pluginName !== PLUGIN || !fromCommandLine()) throw e;
      console.error(`Error: ${e.message}`);
      process.exitCode = 1;
      return undefined;
    }
  };
}

/** Rows as aligned columns (the first row is the header), one string. */
export function table(rows: string[][]): string {
  return textTable(rows[0], rows.slice(1));
}

/** Where a task prints (tests may silence it with BALLAST_TASKS_QUIET=true). */
export function say(text: string): void {
  if (process.env.BALLAST_TASKS_QUIET !== "true") console.log(text);
}

/** Action names of a policy or plan bitmask: "TOP_UP+REDUCE", "none". */
export function actionNames(bits: number | bigint): string {
  const b = Number(bits);
  const names = [b & 1 ? "TOP_UP" : "", b & 2 ? "REDUCE" : "", b & 4 ? "RELEASE" : "", b & 8 ? "REDUCE_FIRST" : ""].filter(Boolean);
  return names.length ? names.join("+") : "none";
}

/** IRebalancer.Status by value. */
export const STATUS = ["Ready", "NotOptedIn", "Cooldown", "InBand", "Liquidatable", "OracleUnhealthy", "NoAction"] as const;

/** Refuses unless the network is a local one (chain id 31337). */
export async function requireLocal(hre: HardhatRuntimeEnvironment, what: string): Promise<void> {
  const chainId = (await hre.ethers.provider.getNetwork()).chainId;
  if (chainId !== LOCAL_CHAIN_ID) {
    fail(`${what} runs on local networks only (chain id 31337); "${hre.network.name}" is chain ${chainId}`);
  }
}
