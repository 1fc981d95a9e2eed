/**
 * `npx hardhat deploy` (tasks/deploy.ts): Ballast on any network of deploy/networks.ts, in numbered steps that are
 * idempotent and resumable. Each step first reads the chain: what is already there is kept (a contract whose address
 * the journal holds and that has code; a feed, listing, risk setting or market already as configured), so running the
 * command again after a failure — or after success — sends only what is missing. Progress is journalled in
 * `deployments/<network>.steps.json` after every step; the finished record is `deployments/<network>.json`
 * (lib/deployment.ts), which the tasks and the keeper read.
 *
 *   01 tokens     mock ERC-20s on local networks; on live ones, checks the configured tokens have code
 *   02 feeds      MockAggregator feeds on local networks (8 decimals, the configured answer); live: checks the proxies
 *   03 oracle     OracleRouter, with the L2 sequencer-uptime feed and its grace period (immutable; none on L1)
 *   04 pool       LiquidityPool (ERC-4626 over the settlement asset)
 *   05 engine     the linked libraries, the custody and extension facets, the MarginEngine; wired into the pool
 *   06 sequencer  checks the router's sequencer feed and grace period are the network's (L2s only): they are
 *                 immutable, so a router of a run with other values is refused (a new one needs a fresh journal)
 *   07 feeds set  each asset's feed in the router with its staleness bound, band and breaker (then a poke)
 *   08 assets     collateral listings with their haircuts
 *   09 risk       the engine's risk parameters
 *   10 markets    one market per configured asset
 *   11 flash liquidator  the periphery FlashLiquidator, where the network names a Uniswap V3 factory and pool (checked:
 *                 the pool must be the factory's pool of the collateral and the settlement asset); recorded in `parts`
 *                 (flashLiquidator, flashLiquidatorPool) for the keeper's flashLiquidator / flashPool
 *   12 record     deployments/<network>.json (written on every run)
 */
import fs from "node:fs";
import path from "node:path";
import { ZeroAddress, type Signer } from "ethers";

import {
  FlashLiquidator__factory,
  IMarginEngine__factory,
  IUniswapV3FactoryMinimal__factory,
  IUniswapV3PoolMinimal__factory,
  IVault__factory,
  LiquidityPool__factory,
  MockAggregator__factory,
  MockERC20__factory,
  OracleRouter__factory,
} from "../typechain-types";
import { DEPLOYMENT_SCHEMA, deploymentPath, saveDeployment, type DeploymentRecord } from "../lib/deployment";
import type { NetworkParams } from "./networks";
import { deployEngine } from "./system";

/** What each finished step left: addresses by name. */
export interface StepJournal {
  network: string;
  chainId: number;
  steps: Record<string, Record<string, string>>;
}

export interface DeployOptions {
  /** directory of deployments/<network>.json and the journal (default: the repository's deployments/) */
  dir?: string;
  /** ignore (and replace) an existing journal */
  fresh?: boolean;
  /** one line per step */
  log?: (line: string) => void;
}

export class DeployError extends Error {}

const journalPath = (network: string, dir?: string) => deploymentPath(network, dir).replace(/\.json$/, ".steps.json");

function loadJournal(network: string, chainId: number, opts: DeployOptions): StepJournal {
  const file = journalPath(network, opts.dir);
  if (opts.fresh || !fs.existsSync(file)) return { network, chainId, steps: {} };
  const j = JSON.parse(fs.readFileSync(file, "utf8")) as StepJournal;
  if (j.chainId !== chainId) {
    throw new DeployError(`${file} is for chain ${j.chainId}, this network is chain ${chainId}: delete it or pass --fresh`);
  }
  return j;
}

function saveJournal(j: StepJournal, dir?: string) {
  const file = journalPath(j.network, dir);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(j, null, 2) + "\n");
}

/**
 * Deploys (or completes the deployment of) Ballast with `params` on the network `signer` is connected to.
 * Returns the record it wrote.
 */
export async function deployBallast(signer: Signer, network: string, params: NetworkParams, opts: DeployOptions = {}): Promise<DeploymentRecord> {
  const log = opts.log ?? (() => undefined);
  const provider = signer.provider!;
  const chainId = Number((await provider.getNetwork()).chainId);
  if (chainId !== params.chainId) {
    throw new DeployError(`network "${network}" answers with chain id ${chainId}, its parameters are for chain ${params.chainId}: check the RPC URL`);
  }
  const owner = await signer.getAddress();
  const hasCode = async (a: string) => (await provider.getCode(a)) !== "0x";
  let journal = loadJournal(network, chainId, opts);
  // A journal whose contracts are gone is from another instance of the chain (a restarted local node): local networks
  // start over, a live network stops and says so.
  const recorded = Object.values(journal.steps).flatMap((o) => Object.values(o)).filter((v) => /^0x[0-9a-fA-F]{40}$/.test(v));
  for (const a of recorded) {
    if (await hasCode(a)) continue;
    if (!params.local) {
      throw new DeployError(`${journalPath(network, opts.dir)} names ${a}, which has no code on ${network}: delete the journal or pass --fresh`);
    }
    log(`the journal names contracts this chain does not have (a new local chain): starting over`);
    journal = { network, chainId, steps: {} };
    break;
  }
  const confirmations = params.confirmations;
  const step = async (name: string, run: () => Promise<Record<string, string>>) => {
    if (journal.steps[name]) {
      log(`${name}: done before`);
      return journal.steps[name];
    }
    const out = await run();
    journal.steps[name] = out;
    saveJournal(journal, opts.dir);
    log(`${name}: ${Object.entries(out).map(([k, v]) => `${k} ${v}`).join(", ") || "ok"}`);
    return out;
  };
  const wait = async (tx: { wait(confirms?: number): Promise<unknown> }) => {
    await tx.wait(confirmations);
  };

  const all = [params.settlement, ...params.assets];
  const tokens = await step("01 tokens", async () => {
    const out: Record<string, string> = {};
    for (const a of all) {
      if ("mock" in a.token) {
        const t = await new MockERC20__factory(signer).deploy(a.token.mock.name, a.symbol, a.token.mock.decimals);
        await t.waitForDeployment();
        out[a.symbol] = await t.getAddress();
      } else {
        if (!(await hasCode(a.token.address))) throw new DeployError(`${a.symbol} at ${a.token.address} has no code on ${network}: fix deploy/networks.ts`);
        out[a.symbol] = a.token.address;
      }
    }
    return out;
  });
  const feeds = await step("02 feeds", async () => {
    const out: Record<string, string> = {};
    for (const a of params.assets) {
      if (!a.feed) continue;
      if ("mock" in a.feed) {
        const f = await new MockAggregator__factory(signer).deploy(8);
        await f.waitForDeployment();
        await wait(await f.setAnswer(a.feed.mock.answer));
        out[a.symbol] = await f.getAddress();
      } else {
        if (!(await hasCode(a.feed.proxy))) throw new DeployError(`the ${a.symbol} feed ${a.feed.proxy} has no code on ${network}: fix deploy/networks.ts`);
        out[a.symbol] = a.feed.proxy;
      }
    }
    return out;
  });
  const { oracle: oracleAddress } = await step("03 oracle", async () => {
    const seq = params.sequencer ?? { feed: ZeroAddress, gracePeriod: 0 };
    const o = await new OracleRouter__factory(signer).deploy(owner, seq.feed, seq.gracePeriod);
    await o.waitForDeployment();
    return { oracle: await o.getAddress() };
  });
  const oracle = OracleRouter__factory.connect(oracleAddress, signer);
  const { pool: poolAddress } = await step("04 pool", async () => {
    const p = await new LiquidityPool__factory(signer).deploy(tokens[params.settlement.symbol], owner);
    await p.waitForDeployment();
    return { pool: await p.getAddress() };
  });
  const pool = LiquidityPool__factory.connect(poolAddress, signer);
  const engineParts = await step("05 engine", async () => {
    // Indexers start at the block before the engine's: nothing it emits is earlier.
    const startBlock = String(await provider.getBlockNumber());
    const { engine, parts } = await deployEngine(signer, oracle, pool, tokens[params.gasAsset], params.settlement.haircut, params.keeper);
    return { engine: await engine.getAddress(), ...parts, startBlock };
  });
  const engine = IMarginEngine__factory.connect(engineParts.engine, signer);
  const vault = IVault__factory.connect(engineParts.engine, signer);

  await step("06 sequencer", async (): Promise<Record<string, string>> => {
    if (!params.sequencer) return {};
    const seq = params.sequencer;
    const [feed, grace] = [await oracle.sequencerFeed(), Number(await oracle.sequencerGracePeriod())];
    if (feed !== seq.feed || grace !== seq.gracePeriod) {
      throw new DeployError(
        `the router ${oracleAddress} has sequencer feed ${feed} (grace ${grace} s), not ${seq.feed} (${seq.gracePeriod} s): ` +
          "they are immutable; deploy a new router (drop 03 oracle and later steps from the journal)",
      );
    }
    return { sequencerFeed: seq.feed };
  });
  await step("07 feeds set", async () => {
    for (const a of params.assets) {
      if (!a.feed || !a.feedConfig) continue;
      const want = { feed: feeds[a.symbol], ...a.feedConfig };
      const have = await oracle.feedParams(tokens[a.symbol]);
      const same =
        have.feed === want.feed && Number(have.heartbeat) === Number(want.heartbeat) && have.minPrice === want.minPrice &&
        have.maxPrice === want.maxPrice && Number(have.maxJumpBps) === Number(want.maxJumpBps) && Number(have.cooldown) === Number(want.cooldown);
      if (same) continue;
      await wait(await oracle.setFeed(tokens[a.symbol], want));
      await wait(await oracle.poke(tokens[a.symbol]));
    }
    return {};
  });
  await step("08 assets", async () => {
    const listed = (await vault.listedAssets()).map((a) => a.toLowerCase());
    for (const a of params.assets) {
      if (listed.includes(tokens[a.symbol].toLowerCase())) continue;
      await wait(await vault.listAsset(tokens[a.symbol], a.haircut));
    }
    return {};
  });
  await step("09 risk", async () => {
    const have = await engine.riskParams();
    const want = params.risk;
    const same = (Object.keys(want) as (keyof typeof want)[]).every((k) => BigInt(have[k] as bigint) === BigInt(want[k]));
    if (!same) await wait(await engine.setRiskParams(want));
    return {};
  });
  const marketIds = await step("10 markets", async () => {
    const out: Record<string, string> = {};
    const count = Number(await engine.marketCount());
    const existing = new Map<string, number>();
    for (let id = 0; id < count; id++) existing.set((await engine.marketParams(id)).asset.toLowerCase(), id);
    for (const m of params.markets) {
      const asset = tokens[m.asset];
      let id = existing.get(asset.toLowerCase());
      if (id === undefined) {
        id = Number(await engine.marketCount());
        await wait(await engine.createMarket({ asset, ...m.params }));
      }
      out[m.symbol] = String(id);
    }
    return out;
  });

  // A journal that ran this step before the network named a pool: run it again (it deploys nothing twice).
  const FLASH = "11 flash liquidator";
  if (params.flashLiquidator && journal.steps[FLASH] && !journal.steps[FLASH].flashLiquidator) delete journal.steps[FLASH];
  const flash = await step(FLASH, async (): Promise<Record<string, string>> => {
    const fl = params.flashLiquidator;
    if (!fl) return {};
    const collateral = tokens[fl.collateral];
    if (!collateral) throw new DeployError(`flashLiquidator.collateral ${fl.collateral} is not an asset of ${network}: fix deploy/networks.ts`);
    for (const [what, a] of [["factory", fl.factory], ["pool", fl.pool]] as const) {
      if (!(await hasCode(a))) throw new DeployError(`the Uniswap V3 ${what} ${a} has no code on ${network}: fix deploy/networks.ts`);
    }
    const fee = await IUniswapV3PoolMinimal__factory.connect(fl.pool, signer).fee();
    const registered = await IUniswapV3FactoryMinimal__factory.connect(fl.factory, signer).getPool(collateral, tokens[params.settlement.symbol], fee);
    if (registered.toLowerCase() !== fl.pool.toLowerCase()) {
      throw new DeployError(
        `${fl.pool} is not the factory's ${fl.collateral}/${params.settlement.symbol} pool at fee ${fee} (that is ${registered}): fix deploy/networks.ts`,
      );
    }
    const c = await new FlashLiquidator__factory(signer).deploy(engineParts.engine, fl.factory);
    await c.waitForDeployment();
    return { flashLiquidator: await c.getAddress(), flashLiquidatorPool: fl.pool };
  });

  const { startBlock: start, engine: engineAddress, ...engineRest } = engineParts;
  const parts = { ...engineRest, ...flash };
  const rec: DeploymentRecord = {
    schema: DEPLOYMENT_SCHEMA,
    network,
    chainId,
    startBlock: Number(start),
    deployer: owner,
    engine: engineAddress,
    oracle: oracleAddress,
    pool: poolAddress,
    settlementAsset: tokens[params.settlement.symbol],
    assets: tokens,
    markets: Object.fromEntries(params.markets.map((m) => [m.symbol, { id: Number(marketIds[m.symbol]), asset: tokens[m.asset] }])),
    feeds,
    parts,
  };
  // Always written (a deleted record is rewritten by running the command again).
  log(`12 record: ${saveDeployment(rec, opts.dir)}`);
  return rec;
}
