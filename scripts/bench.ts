/**
 * `npm run bench`: gas of Ballast's actions next to Morpho Blue's liquidate and a Uniswap V3 swap, measured from
 * receipts on the in-process Hardhat network (lib/bench/). Writes bench/results.json and prints the table with the
 * issue's targets. BENCH_BATCH_SIZES=10,50 (comma-separated) runs other rebalanceBatch sizes (default 10,50,200);
 * BENCH_OUT=<path> writes the results elsewhere.
 */
import fs from "node:fs";
import path from "node:path";

import { DEFAULT_BATCH_SIZES, runBench } from "../lib/bench/run";
import { formatTable, validateResults } from "../lib/bench/results";

function batchSizes(): number[] {
  const raw = process.env.BENCH_BATCH_SIZES;
  if (!raw) return DEFAULT_BATCH_SIZES;
  const sizes = raw.split(",").map((s) => Number(s.trim()));
  if (sizes.length < 2 || sizes.some((n) => !Number.isInteger(n) || n < 1)) {
    throw new Error(`BENCH_BATCH_SIZES must list at least two positive integers, got "${raw}"`);
  }
  return sizes;
}

async function main(): Promise<void> {
  const results = validateResults(await runBench({ batchSizes: batchSizes(), log: (s) => console.log(s) }));
  const out = path.resolve(process.env.BENCH_OUT ?? path.join(__dirname, "..", "bench", "results.json"));
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
  console.log("");
  console.log(formatTable(results));
  console.log("");
  console.log(`wrote ${path.relative(process.cwd(), out)} in ${results.durationSeconds} s`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
