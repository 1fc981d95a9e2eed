/**
 * Ballast's contracts at the addresses of a deployment record, typed with TypeChain: the one way the tasks, the
 * keeper and the backtest reach a deployment. Imports TypeChain factories at run time: a Hardhat task must load this
 * module inside its action (`await import("../lib/connect")`), never at the top of the file, because tasks are loaded
 * before anything is compiled.
 */
import type { ContractRunner } from "ethers";

import {
  IERC20Metadata__factory,
  IMarginEngine__factory,
  IRebalancer__factory,
  IVault__factory,
  LiquidityPool__factory,
  OracleRouter__factory,
} from "../typechain-types";
import type { IERC20Metadata, IMarginEngine, IRebalancer, IVault, LiquidityPool, OracleRouter } from "../typechain-types";
import type { DeploymentRecord } from "./deployment";

export interface Ballast {
  rec: DeploymentRecord;
  /** the MarginEngine through its three interfaces (one address) */
  engine: IMarginEngine;
  rebalancer: IRebalancer;
  vault: IVault;
  oracle: OracleRouter;
  pool: LiquidityPool;
  /** the pool's asset (USDC) */
  usdc: IERC20Metadata;
}

export function connectBallast(rec: DeploymentRecord, runner: ContractRunner): Ballast {
  return {
    rec,
    engine: IMarginEngine__factory.connect(rec.engine, runner),
    rebalancer: IRebalancer__factory.connect(rec.engine, runner),
    vault: IVault__factory.connect(rec.engine, runner),
    oracle: OracleRouter__factory.connect(rec.oracle, runner),
    pool: LiquidityPool__factory.connect(rec.pool, runner),
    usdc: IERC20Metadata__factory.connect(rec.settlementAsset, runner),
  };
}

/** An ERC-20 of the deployment by symbol or address, typed; a one-line error naming the known symbols otherwise. */
export function tokenOf(b: Ballast, symbolOrAddress: string, runner: ContractRunner): IERC20Metadata {
  const bySymbol = Object.entries(b.rec.assets).find(([s]) => s.toLowerCase() === symbolOrAddress.toLowerCase());
  const address = bySymbol ? bySymbol[1] : /^0x[0-9a-fA-F]{40}$/.test(symbolOrAddress) ? symbolOrAddress : undefined;
  if (!address) {
    throw new Error(`unknown asset "${symbolOrAddress}": use one of ${Object.keys(b.rec.assets).join(", ")} or a token address`);
  }
  return IERC20Metadata__factory.connect(address, runner);
}
