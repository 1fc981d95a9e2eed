/**
 * `npm run risk:table`: replays the public crashes (data/, see data/SOURCES.md) through the real contracts on
 * the in-process network (lib/riskReplay.ts) and prints, per crash and per risk model, the table behind the
 * risk-model evidence (test/scenario/RiskModel.test.ts): the largest leverage IM allows calm and in the crash,
 * liquidations on the detrended path (the real absolute hourly returns signed toward the entry price) and how
 * many of them only a risen requirement explains, liquidations and bad debt on the hourly closes and on the
 * OHLC bars through their lows, whether accounts with a policy and a reserve were liquidated, and whether the
 * position of the largest size IM allowed became liquidatable at its entry price.
 *
 * The previous model's column is read from data/risk-baseline.json, measured once with this same script on
 * that model's commit:
 *   git worktree add --detach /tmp/prevmodel <commit> && ln -s "$PWD/node_modules" /tmp/prevmodel/node_modules
 *   cp lib/riskReplay.ts /tmp/prevmodel/lib/ && cp scripts/risk-table.ts /tmp/prevmodel/scripts/
 *   (cd /tmp/prevmodel && RISK_BASELINE_OUT="$PWD/../risk-baseline.json" npx hardhat run scripts/risk-table.ts)
 * then the JSON is copied to data/ (the worktree is removed; nothing is committed there).
 *
 * Exploring defaults (how the README's were chosen): RISK_IM_VOL_FLOOR (the market's imVolFloor, annualised, e.g.
 * 1.5 = 150 %) and RISK_MAX_CHANGE_PER_DAY (the maintenance σ's speed, e.g. 0.25) replay the current model with
 * those values instead of deploy/params.ts and the oracle's defaults.
 */
import fs from "node:fs";
import { execFileSync } from "node:child_process";
import { network } from "hardhat";

import { wad } from "../deploy/params";
import {
  BASELINE_FILE,
  formatTable,
  loadBaseline,
  populationFingerprint,
  replayPaths,
  standardPaths,
  summarise,
  type Baseline,
} from "../lib/riskReplay";

async function main() {
  if (network.name !== "hardhat") throw new Error(`the risk table runs on the in-process network; got --network ${network.name}`);
  const t0 = Date.now();
  const paths = standardPaths();
  const config: Parameters<typeof replayPaths>[1] = {};
  // The contracts' bounds: imVolFloor 0 … 10 (GovernanceLogic), maxChangePerDay 0.01 … 10 (OracleRouter).
  // imVolFloor is a market fraction, kept in whole billionths (GovernanceLogic: ParamPrecision): at most 9 decimals.
  const floor = envDecimal("RISK_IM_VOL_FLOOR", 0, 10, 9);
  const speed = envDecimal("RISK_MAX_CHANGE_PER_DAY", 0.01, 10);
  if (floor !== undefined) config.market = { imVolFloor: floor };
  if (speed !== undefined) config.volParams = { maxChangePerDay: speed };
  if (floor !== undefined || speed !== undefined)
    console.log(`explored: imVolFloor ${process.env.RISK_IM_VOL_FLOOR ?? "default"}, maxChangePerDay ${process.env.RISK_MAX_CHANGE_PER_DAY ?? "default"}`);
  const result = await replayPaths(paths, config);
  const summaries = result.paths.map(summarise);
  const population = populationFingerprint(paths);

  const out = process.env.RISK_BASELINE_OUT;
  if (out) {
    const commit = execFileSync("git", ["rev-parse", "HEAD"], { encoding: "utf8" }).trim();
    const dirty = execFileSync("git", ["status", "--porcelain", "--untracked-files=no"], { encoding: "utf8" }).trim();
    const baseline: Baseline = {
      note:
        `Figures of the ${result.model === "previous" ? "previous" : "current"} risk model, measured by scripts/risk-table.ts ` +
        `(lib/riskReplay.ts copied into a clean checkout of ${commit.slice(0, 7)}, contracts unchanged${
          dirty ? "; tracked files modified: " + dirty.replace(/\n/g, ", ") : ""
        }). ` +
        `WAD values are decimal strings. Read by the table and by test/scenario/RiskModel.test.ts (bad debt, per path).`,
      commit,
      model: result.model,
      population,
      paths: Object.fromEntries(summaries.map((s) => [s.key, s])),
    };
    fs.writeFileSync(out, JSON.stringify(baseline, null, 1) + "\n");
    console.log(`baseline of the ${result.model} model at ${commit.slice(0, 7)} written to ${out}`);
  }

  let baseline: Baseline | null = null;
  if (!out && fs.existsSync(BASELINE_FILE)) {
    baseline = loadBaseline();
    if (JSON.stringify(baseline.population) !== JSON.stringify(population)) {
      console.log(`warning: ${BASELINE_FILE} was measured on another population or config; its column is not comparable`);
    }
  }
  const head = execFileSync("git", ["rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  const dirtyContracts = execFileSync("git", ["status", "--porcelain", "--", "contracts"], { encoding: "utf8" }).trim();
  console.log(
    `contracts: ${head}${
      dirtyContracts
        ? " with uncommitted changes (" +
          dirtyContracts
            .split("\n")
            .map((l) => l.slice(3))
            .join(", ") +
          ")"
        : ""
    }`
  );
  const modelName = result.model === "bounded-speed" ? "current (bounded-speed σ)" : "measured (previous model)";
  console.log(
    `Risk replays: ${paths.length} paths, ${result.paths.reduce((n, p) => n + p.accounts.length, 0)} accounts of 2,000 USDC, ${
      result.blocks
    } blocks`
  );
  console.log(
    `σ-only: a liquidation the price alone does not explain (the account is above 1 at this price at the maintenance rate of its opening block).`
  );
  console.log(`near entry: price within ±4 % of the position's entry. Large reserve: margin + reserve = notional at entry.`);
  console.log(formatTable(summaries, baseline, modelName));
  console.log(`\nreplays ${result.wallSeconds.toFixed(1)} s, total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
}

/** A decimal environment variable as WAD, within [min, max]; undefined when unset. Bad input: a one-line error. */
function envDecimal(name: string, min: number, max: number, decimals = 18): bigint | undefined {
  const text = process.env[name];
  if (text === undefined || text === "") return undefined;
  if (!new RegExp(`^\\d+(\\.\\d{1,${decimals}})?$`).test(text) || Number(text) < min || Number(text) > max) {
    throw new UserError(`${name}=${text} is not a decimal between ${min} and ${max} with at most ${decimals} decimals (e.g. ${name}=1.5)`);
  }
  return wad(text);
}

class UserError extends Error {}

main().catch((e) => {
  if (e instanceof UserError) {
    console.error(`error: ${e.message}`);
    process.exitCode = 1;
    return;
  }
  console.error(e);
  process.exitCode = 1;
});
