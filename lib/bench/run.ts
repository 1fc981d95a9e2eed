/**
 * The whole benchmark (`npm run bench`, scripts/bench.ts) and the assembly of its results: rows measured by
 * ballast.ts, morpho.ts and uniswap.ts, then derived figures, ratios and the targets (results.ts).
 */
import { execFileSync } from "node:child_process";
import hre from "hardhat";

import { benchBallast } from "./ballast";
import { benchMorphoLiquidate, compileMorpho, MORPHO_SETTINGS } from "./morpho";
import { benchUniswapSwap } from "./uniswap";
import { benchScan } from "./scan";
import { BENCH_BASE_FEE, txGasLimit } from "./measure";
import {
  CONDITION_TEXT,
  CONDITIONS,
  DERIVED,
  RESULTS_SCHEMA,
  ROW,
  computeRatios,
  evaluateTargets,
  type BenchResults,
  type Condition,
  type Derived,
  type Row,
} from "./results";
import type { CompileResult } from "./solc";

export const DEFAULT_BATCH_SIZES = [10, 50, 200];

/** Per-account figures of the batch rows: the marginal cost of one more account, and the average. */
export function batchDerived(rows: Row[]): Derived[] {
  const batches = rows
    .filter((r) => r.id.startsWith("ballast.rebalanceBatch."))
    .map((r) => ({ n: Number(r.id.split(".").pop()), row: r }))
    .filter((b) => Number.isInteger(b.n))
    .sort((a, b) => a.n - b.n);
  const out: Derived[] = [];
  if (batches.length >= 2) {
    const small = batches[0];
    // The largest batch that executed, per condition (a batch over the per-transaction gas cap has no figure).
    const pair = (c: Condition) => {
      const big = [...batches].reverse().find((b) => b.n > small.n && b.row[c].gas !== null);
      return big && small.row[c].gas !== null ? { big, value: Math.round((big.row[c].gas! - small.row[c].gas!) / (big.n - small.n)) } : undefined;
    };
    const formulas = new Set<string>();
    const value = (c: Condition): number | null => {
      const p = pair(c);
      if (!p) return null;
      formulas.add(`(total${p.big.n} − total${small.n}) / ${p.big.n - small.n}`);
      return p.value;
    };
    const steady = value("steady");
    const firstTouch = value("firstTouch");
    out.push({
      id: DERIVED.batchMarginal,
      label: "rebalanceBatch marginal per account",
      steady,
      firstTouch,
      formula: [...formulas].join("; ") || "needs two executed batch sizes",
    });
  }
  for (const b of batches) {
    const avg = (c: Condition) => (b.row[c].gas === null ? null : Math.round(b.row[c].gas! / b.n));
    out.push({ id: `${b.row.id}.perAccount`, label: `rebalanceBatch of ${b.n}, average per account`, steady: avg("steady"), firstTouch: avg("firstTouch"), formula: `total${b.n} / ${b.n}` });
  }
  return out;
}

function git(): BenchResults["git"] {
  try {
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    const status = execFileSync("git", ["status", "--porcelain", "--", ".", ":(exclude)bench/results.json"], { encoding: "utf8" });
    return { commit, dirty: status.trim().length > 0 };
  } catch {
    return { commit: null, dirty: null };
  }
}

/** Results object from measured rows (any subset: ratios and targets whose rows are missing are left out). */
export async function buildResults(
  rows: Row[],
  opts: { startedAt: number; morpho?: CompileResult; keeperScan?: BenchResults["keeperScan"]; keeperLatency?: BenchResults["keeperLatency"] },
): Promise<BenchResults> {
  const derived = batchDerived(rows);
  const ratios = computeRatios(rows);
  const targets = evaluateTargets(rows, derived, ratios);
  const net = await hre.ethers.provider.getNetwork();
  const block = await hre.ethers.provider.getBlock("latest");
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const solc = require("solc") as { version(): string };
  const cfg = hre.config.solidity.compilers[0];
  const compilers: Record<string, string> = {
    ballast: `solc ${solc.version()} (npm solc), optimizer ${cfg.settings.optimizer?.runs} runs, evm ${cfg.settings.evmVersion}`,
    uniswap: "published artifacts of @uniswap/v3-core 1.0.1 and @uniswap/v3-periphery 1.4.4 (solc 0.7.6, as published)",
  };
  if (opts.morpho) {
    const s = MORPHO_SETTINGS;
    compilers.morpho = `solc ${opts.morpho.solcLongVersion} (npm solc-0.8.19), via-IR ${s.viaIR}, optimizer ${s.optimizer.runs} runs, evm ${s.evmVersion}, bytecodeHash ${s.metadata?.bytecodeHash}`;
  }
  return {
    schema: RESULTS_SCHEMA,
    generatedAt: new Date().toISOString(),
    git: git(),
    environment: {
      node: process.version,
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      hardhat: (require("hardhat/package.json") as { version: string }).version,
      network: hre.network.name,
      hardfork: String((hre.network.config as { hardfork?: string }).hardfork ?? "unknown"),
      chainId: Number(net.chainId),
      blockGasLimit: Number(block!.gasLimit),
      txGasCap: Number(await txGasLimit()),
      baseFeeGwei: Number(BENCH_BASE_FEE / 10n ** 9n),
      compilers,
    },
    conditions: Object.fromEntries(CONDITIONS.map((c) => [c, CONDITION_TEXT[c]])) as Record<Condition, string>,
    rows,
    derived,
    ratios,
    targets,
    ...(opts.keeperScan ? { keeperScan: opts.keeperScan } : {}),
    ...(opts.keeperLatency ? { keeperLatency: opts.keeperLatency } : {}),
    durationSeconds: Math.round((Date.now() - opts.startedAt) / 100) / 10,
  };
}

/** Every measurement of the issue, in table order. */
export async function runBench(opts: { batchSizes?: number[]; log?: (s: string) => void } = {}): Promise<BenchResults> {
  const log = opts.log ?? (() => undefined);
  const startedAt = Date.now();
  if (hre.network.name !== "hardhat") throw new Error(`the benchmark runs on the in-process hardhat network, not ${hre.network.name}`);

  let t = Date.now();
  const morpho = await compileMorpho();
  log(`Morpho Blue compiled with solc ${morpho.solcLongVersion}${morpho.cached ? " (cached)" : ""} (${((Date.now() - t) / 1000).toFixed(1)} s)`);

  log("Ballast:");
  const rows = await benchBallast({ batchSizes: opts.batchSizes ?? DEFAULT_BATCH_SIZES, log });
  t = Date.now();
  rows.push(await benchMorphoLiquidate(morpho, "mock"));
  rows.push(await benchMorphoLiquidate(morpho, "chainlink"));
  log(`Morpho Blue liquidate, both oracles (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  t = Date.now();
  rows.push(await benchUniswapSwap());
  log(`Uniswap V3 exactInputSingle (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  if (!rows.some((r) => r.id === ROW.topUp)) throw new Error("no TOP_UP row");
  t = Date.now();
  log("Keeper health scan:");
  const scan = await benchScan({ log });
  log(`  (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  return buildResults(rows, { startedAt, morpho, keeperScan: scan.rows, keeperLatency: scan.latency });
}
