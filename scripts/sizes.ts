/**
 * Deployed bytecode size of every production contract and library (the README's "Contract sizes"), against the
 * EIP-170 limit of 24,576 bytes. Usage: `npm run sizes`.
 */
import { artifacts } from "hardhat";

const LIMIT = 24_576;
const NAMES = [
  "RebalanceLogic",
  "MarginEngineExtension",
  "MarginEngine",
  "OracleRouter",
  "LiquidationLogic",
  "TradeLogic",
  "LiquidityPool",
  "GovernanceLogic",
  "MarginEngineCustody",
  "FlashLiquidator",
];

async function main() {
  const rows: [string, number][] = [];
  for (const name of NAMES) {
    const a = await artifacts.readArtifact(name);
    rows.push([name, (a.deployedBytecode.length - 2) / 2]);
  }
  rows.sort((x, y) => y[1] - x[1]);
  for (const [name, size] of rows) {
    console.log(`${name.padEnd(24)} ${size.toLocaleString("en-US").padStart(7)} B  room ${(LIMIT - size).toLocaleString("en-US").padStart(6)} B`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
