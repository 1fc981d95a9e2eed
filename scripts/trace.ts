/**
 * Where the gas of one steady-state transaction goes: per contract, every cold slot, and the 40 most expensive source
 * lines, and per internal function. Usage: `npm run bench:trace` (the bench's TOP_UP scenario); TRACE=request or
 * TRACE=execute: the second open (+5 ETH) of an account that opened and closed once, as the bench's open row;
 * TRACE=batch: the second rebalanceBatch of the bench's 10 accounts (divide a per-account function's gas by 10);
 * PROFILE_OPS=1: per contract and opcode instead of per line; PROFILE_FN=RebalanceLogic._apply: that function's own
 * steps by opcode and line.
 */
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import { ballastWorld, batchAccounts, moveEthUntil, openAccount } from "../lib/bench/ballast";
import { profile } from "../lib/bench/profile";
import { ACTION, NARROW_POLICY } from "../deploy/params";
import { requestOrder } from "../lib/orders";
import { time } from "@nomicfoundation/hardhat-network-helpers";

const USDC = (n: number) => BigInt(n) * 10n ** 6n;
const E18 = (n: number) => BigInt(n) * 10n ** 18n;

/** The bench's open row, second cycle: a request and its execution after a fresh round. */
async function openHash(w: Awaited<ReturnType<typeof ballastWorld>>, which: "request" | "execute"): Promise<string> {
  const id = await openAccount(w, { margin: USDC(10_000), reserve: USDC(10) });
  const k = w.keepers[0];
  let hash = "";
  for (const size of [E18(5), -E18(5), E18(5)]) {
    const deadline = BigInt((await time.latest()) + 3_600);
    const { orderId } = await requestOrder(w.engine, w.owner, {
      accountId: id, marketId: w.ethMarket, sizeDelta: size, acceptablePrice: size > 0n ? E18(1_000_000) : 0n, deadline, reduceOnly: size < 0n,
    });
    const a = (await w.ethFeed.latestRoundData())[1];
    await (await w.ethFeed.setAnswer(a + (a * 5n) / 10_000n)).wait();
    const tx = await w.engine.connect(k).executeOrder(orderId, { gasLimit: 2_000_000 });
    await tx.wait();
    if (which === "execute") hash = tx.hash;
  }
  if (which === "request") {
    // The measured request: the account's second open.
    const size = E18(5);
    const deadline = BigInt((await time.latest()) + 3_600);
    const tx = await w.engine.connect(w.owner).requestOrder(id, w.ethMarket, size, E18(1_000_000), deadline, false, { gasLimit: 2_000_000 });
    await tx.wait();
    hash = tx.hash;
  }
  return hash;
}

/** The bench's batch of 10, steady state: the second batch TOP_UP of the same accounts by the same keeper. */
async function batchHash(w: Awaited<ReturnType<typeof ballastWorld>>): Promise<string> {
  const ids = await batchAccounts(w, 10);
  const k = w.keepers[0];
  const allBelow = async () => {
    const [healths] = await w.engine.healthBatch(ids);
    return healths.every((h) => h < NARROW_POLICY.triggerRatio);
  };
  await moveEthUntil(w, -1, allBelow);
  await (await w.rebalancer.connect(k).rebalanceBatch(ids)).wait();
  await moveEthUntil(w, -1, allBelow);
  const tx = await w.rebalancer.connect(k).rebalanceBatch(ids, { gasLimit: 10_000_000 });
  await tx.wait();
  return tx.hash;
}

async function topUpHash(w: Awaited<ReturnType<typeof ballastWorld>>): Promise<string> {
  const id = await openAccount(w, { margin: USDC(5_000), reserve: USDC(5_000), size: E18(10), policy: { actions: ACTION.TOP_UP | ACTION.REDUCE } });
  const below = async () => (await w.engine.healthBatch([id]))[0][0] < NARROW_POLICY.triggerRatio;
  const k = w.keepers[0];
  await moveEthUntil(w, -1, below);
  await (await w.rebalancer.connect(k).rebalance(id)).wait();
  await moveEthUntil(w, -1, below);
  const tx = await w.rebalancer.connect(k).rebalance(id, { gasLimit: 2_000_000 });
  await tx.wait();
  return tx.hash;
}

async function main() {
  const w = await loadFixture(ballastWorld);
  const which = process.env.TRACE ?? "topup";
  if (!["topup", "request", "execute", "batch"].includes(which)) throw new Error(`TRACE=${which}: use topup, request, execute or batch`);
  const hash =
    which === "topup" ? await topUpHash(w) : which === "batch" ? await batchHash(w) : await openHash(w, which as "request" | "execute");
  const t = (c: { target: unknown }) => c.target as string;
  const p = await profile(
    hash,
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
      "contracts/core/MarginEngineExtension.sol:MarginEngineExtension",
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
  console.log("internal functions (total: with what they call; self: their own steps), by total:");
  for (const f of p.functions.slice(0, 60)) console.log(`  ${String(f.total).padStart(7)} ${String(f.self).padStart(7)}  ${f.name}`);
  if (p.focus.length) {
    console.log(`${process.env.PROFILE_FN}: its own steps by opcode and line`);
    for (const [k, gas] of p.focus.slice(0, 50)) console.log(`  ${String(gas).padStart(7)}  ${k}`);
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
