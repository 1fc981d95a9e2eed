/**
 * The deployment record, `deployments/<network>.json`: what a deploy wrote and what the tasks and the keeper read to
 * find the contracts. One format for every network (the in-process `hardhat` network, `localhost`, live chains).
 */
import fs from "node:fs";
import path from "node:path";

import type { LocalSystem } from "../deploy/system";

/** Bumped when a field changes meaning; readers refuse other schemas with a one-line message. */
export const DEPLOYMENT_SCHEMA = "ballast.deployment/1";

export interface MarketRecord {
  /** the engine's market id */
  id: number;
  /** the market's asset (ERC-20 address), priced by the oracle's feed for it */
  asset: string;
}

export interface DeploymentRecord {
  schema: typeof DEPLOYMENT_SCHEMA;
  network: string;
  chainId: number;
  /** the block the engine was deployed in: indexers start here */
  startBlock: number;
  deployer: string;
  /** the MarginEngine: IMarginEngine, IRebalancer and IVault at one address */
  engine: string;
  oracle: string;
  pool: string;
  /** the pool's asset (USDC) */
  settlementAsset: string;
  /** listed collateral and market assets by symbol (USDC, WETH, WBTC, …) */
  assets: Record<string, string>;
  /** markets by symbol of their asset (ETH, BTC, …) */
  markets: Record<string, MarketRecord>;
  /** the Chainlink feed (proxy) of each asset, by asset symbol */
  feeds: Record<string, string>;
  /** every other deployed address (libraries, facets, mocks), by name */
  parts: Record<string, string>;
}

export class DeploymentError extends Error {}

export function deploymentPath(network: string, dir = path.resolve(__dirname, "..", "deployments")): string {
  return path.join(dir, `${network}.json`);
}

/** Reads `deployments/<network>.json`; a missing or foreign file is a one-line DeploymentError saying what to do. */
export function loadDeployment(network: string, dir?: string): DeploymentRecord {
  const file = deploymentPath(network, dir);
  if (!fs.existsSync(file)) {
    throw new DeploymentError(`no deployment for network "${network}" (${file}): run \`npx hardhat deploy --network ${network}\` first`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new DeploymentError(`${file} is not valid JSON (${(e as Error).message}): redeploy or restore the file`);
  }
  const rec = parsed as Partial<DeploymentRecord>;
  if (rec.schema !== DEPLOYMENT_SCHEMA) {
    throw new DeploymentError(`${file} has schema ${JSON.stringify(rec.schema)}, expected ${DEPLOYMENT_SCHEMA}: redeploy with this version`);
  }
  for (const key of ["engine", "oracle", "pool", "settlementAsset"] as const) {
    if (typeof rec[key] !== "string") throw new DeploymentError(`${file} lacks "${key}": redeploy or restore the file`);
  }
  return rec as DeploymentRecord;
}

export function saveDeployment(rec: DeploymentRecord, dir?: string): string {
  const file = deploymentPath(rec.network, dir);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(rec, null, 2) + "\n");
  return file;
}

/** The record of a local system (deploy/system.ts `deployLocalSystem`): mock tokens and feeds, ETH and BTC markets. */
export async function recordOfLocalSystem(
  sys: LocalSystem,
  meta: { network: string; chainId: number; startBlock: number; deployer: string },
): Promise<DeploymentRecord> {
  const a = (c: { getAddress(): Promise<string> }) => c.getAddress();
  return {
    schema: DEPLOYMENT_SCHEMA,
    ...meta,
    engine: await a(sys.engine),
    oracle: await a(sys.oracle),
    pool: await a(sys.pool),
    settlementAsset: await a(sys.usdc),
    assets: { USDC: await a(sys.usdc), WETH: await a(sys.weth), WBTC: await a(sys.wbtc) },
    markets: {
      ETH: { id: Number(sys.ethMarket), asset: await a(sys.weth) },
      BTC: { id: Number(sys.btcMarket), asset: await a(sys.wbtc) },
    },
    feeds: { WETH: await a(sys.ethFeed), WBTC: await a(sys.btcFeed) },
    parts: { extension: await sys.engine.extension() },
  };
}
