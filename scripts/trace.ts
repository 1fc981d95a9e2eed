/**
 * Where the gas of one steady-state rebalance TOP_UP goes (the bench's TOP_UP scenario): per contract, every cold
 * slot, and the 40 most expensive source lines. Usage: `npm run bench:trace` (PROFILE_OPS=1: per contract and
 * opcode instead of per line).
 */
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { ballastWorld, moveEthUntil, openAccount } from "../lib/bench/ballast";
import { profile } from "../lib/bench/profile";
import { ACTION, NARROW_POLICY } from "../deploy/params";

const USDC = (n: number) => BigInt(n) * 10n ** 6n;
const E18 = (n: number) => BigInt(n) * 10n ** 18n;

async function main() {
  const w = await loadFixture(ballastWorld);
  const id = await openAccount(w, { margin: USDC(5_000), reserve: USDC(5_000), size: E18(10), policy: { actions: ACTION.TOP_UP | ACTION.REDUCE } });
  const below = async () => (await w.engine.healthBatch([id]))[0][0] < NARROW_POLICY.triggerRatio;
  const k = w.keepers[0];
  await moveEthUntil(w, -1, below);
  await (await w.rebalancer.connect(k).rebalance(id)).wait();
  await moveEthUntil(w, -1, below);
  const tx = await w.rebalancer.connect(k).rebalance(id, { gasLimit: 2_000_000 });
  await tx.wait();
  const t = (c: { target: unknown }) => c.target as string;
  const p = await profile(
    tx.hash,
    {
      engine: [t(w.engine), "contracts/core/MarginEngine.sol:MarginEngine"],
      oracle: [t(w.oracle), "contracts/core/OracleRouter.sol:OracleRouter"],
      pool: [t(w.pool), "contracts/core/LiquidityPool.sol:LiquidityPool"],
      usdc: [t(w.usdc), ""],
      ethFeed: [t(w.ethFeed), ""],
    },
    [
      "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic",
      "contracts/libraries/logic/TradeLogic.sol:TradeLogic",
      "contracts/libraries/logic/LiquidationLogic.sol:LiquidationLogic",
    ],
  );
  console.log(`gasUsed ${p.gasUsed}`);
  console.log("per contract (storage context):", p.perContract);
  console.log(`cold slots (${p.coldSlots.length}):`);
  for (const c of p.coldSlots) console.log(`  ${c.contract} ${c.slot}  ${c.line}`);
  console.log("SLOADs per slot (reads):");
  for (const [slot, n] of p.slotReads) if (n > 1) console.log(`  ${String(n).padStart(3)}  ${slot}`);
  console.log("top lines:");
  for (const [line, gas] of p.lines.slice(0, 40)) console.log(`  ${String(gas).padStart(7)}  ${line}`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
