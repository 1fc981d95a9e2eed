/**
 * Block-explorer verification of a deployment (hardhat-verify's `verify:verify`), libraries included: every contract
 * of the record with the constructor arguments deploy/deploy.ts gave it. Already-verified contracts are reported and
 * skipped by the plugin.
 */
import { ZeroAddress } from "ethers";
import type { HardhatRuntimeEnvironment } from "hardhat/types";

import type { DeploymentRecord } from "../lib/deployment";
import type { NetworkParams } from "./networks";

export async function verifyDeployment(hre: HardhatRuntimeEnvironment, rec: DeploymentRecord, params: NetworkParams, log: (l: string) => void) {
  const owner = rec.deployer;
  const gasAsset = rec.assets[params.gasAsset];
  const p = rec.parts;
  const lib = (name: string) => `contracts/libraries/logic/${name}.sol:${name}`;
  const targets: { name: string; address: string; constructorArguments: unknown[]; libraries?: Record<string, string> }[] = [
    {
      name: "OracleRouter",
      address: rec.oracle,
      constructorArguments: [owner, params.sequencer?.feed ?? ZeroAddress, params.sequencer?.gracePeriod ?? 0],
    },
    { name: "LiquidityPool", address: rec.pool, constructorArguments: [rec.settlementAsset, owner] },
    ...["TradeLogic", "LiquidationLogic", "RebalanceLogic", "GovernanceLogic"].map((n) => ({ name: n, address: p[n], constructorArguments: [] })),
    { name: "MarginEngineCustody", address: p.MarginEngineCustody, constructorArguments: [rec.oracle, rec.pool, gasAsset, owner] },
    {
      name: "MarginEngineExtension",
      address: p.MarginEngineExtension,
      constructorArguments: [rec.oracle, rec.pool, gasAsset, p.MarginEngineCustody, owner],
      libraries: { [lib("RebalanceLogic")]: p.RebalanceLogic, [lib("GovernanceLogic")]: p.GovernanceLogic },
    },
    {
      name: "MarginEngine",
      address: rec.engine,
      constructorArguments: [
        rec.oracle,
        rec.pool,
        gasAsset,
        p.MarginEngineExtension,
        params.settlement.haircut,
        [params.keeper.baseFeeUsd, params.keeper.gasUnits],
        params.keeper.upkeepSize,
        params.keeper.orderFee,
        owner,
      ],
      libraries: { [lib("TradeLogic")]: p.TradeLogic, [lib("LiquidationLogic")]: p.LiquidationLogic, [lib("RebalanceLogic")]: p.RebalanceLogic },
    },
  ];
  for (const t of targets) {
    log(`verifying ${t.name} at ${t.address}`);
    await hre.run("verify:verify", { address: t.address, constructorArguments: t.constructorArguments, libraries: t.libraries });
  }
}
