/**
 * sim:backtest and sim:sweep: the backtester (sim/) as Hardhat tasks, on the in-process network. Every argument and
 * the price data are checked before anything is deployed; a mistake is one line naming the file, row or option.
 */
import { ballastTask, action, fail, say } from "../lib/tasks";

/** Loads the simulator (it imports TypeChain factories, which exist only after compiling) and runs `fn` with it. */
async function withSim<T>(hre: { network: { name: string }; run: (task: string, args?: object) => Promise<unknown> }, fn: (sim: typeof import("../sim/run")) => Promise<T>): Promise<T> {
  if (hre.network.name !== "hardhat") fail(`the backtester runs on the in-process network: drop --network ${hre.network.name}`);
  await hre.run("compile", { quiet: true });
  const sim = await import("../sim/run");
  const { SimInputError } = await import("../sim/population");
  const { PriceDataError } = await import("../lib/prices");
  try {
    return await fn(sim);
  } catch (e) {
    if (e instanceof SimInputError || e instanceof PriceDataError) fail(e.message);
    throw e;
  }
}

const commandLine = () => `npx hardhat ${process.argv.slice(2).join(" ")}`.trim();

type Args = Record<string, string | boolean | undefined>;
type Definition = ReturnType<typeof ballastTask>;

/** The options both tasks take: the data, the population, the replay's conditions, the output. */
function replayOptions(t: Definition, scenario: string): Definition {
  return t
    .addOptionalParam("data", "timestamp,price CSV (a file in data/ or a path)", "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv")
    .addOptionalParam("ohlc", "OHLC CSV: each bar replayed through its low and high")
    .addOptionalParam("accounts", "accounts (default: every leverage × side, control + each policy)")
    .addOptionalParam("seed", "seed of the population's margins", "1")
    .addOptionalParam("sampling", "close (one round per row) or chainlink (a round per 0.5 % deviation or 1 h heartbeat)", "close")
    .addOptionalParam("leverages", "leverages at entry, comma-separated (default 2,3,4,5,5.5)")
    .addOptionalParam("warmup", "hours of the path before the population opens (default 48, or a quarter of a shorter file)")
    .addOptionalParam("gasGwei", "base fee of every block, gwei (default 0.05, a rollup's; 20 prices an L1)")
    .addOptionalParam("scenario", `report name (default: ${scenario})`)
    .addOptionalParam("out", "directory of the reports", "reports")
    .addFlag("quiet", "no progress bar");
}

/** Prints a report's table, findings and files, and returns the report. */
function printed<R extends { findings: string[] }>(out: { report: R; files: { json: string; html: string } }, table: string): R {
  say(table);
  for (const f of out.report.findings) say(`- ${f}`);
  say(`Report: ${out.files.html}\n        ${out.files.json}`);
  return out.report;
}

replayOptions(ballastTask("sim:backtest", "Replays a price CSV through the contracts with the keeper; writes reports/<scenario>.json and .html"), "the data file's name")
  .addOptionalParam("policy", "trigger,target[,release] of one policy (default: top-up, reduce, top-up+reduce at 1.3,1.6)")
  .addOptionalParam("actions", "actions of the policy: top-up,reduce,release")
  .setAction(
    action(async (args: Args, hre) =>
      withSim(hre, async (sim) => {
        const out = await sim.backtestCommand(args as unknown as Parameters<typeof sim.backtestCommand>[0], commandLine());
        return printed(out, sim.summaryTable(out.report));
      }),
    ),
  );

replayOptions(ballastTask("sim:sweep", "Runs a grid of policies side by side on one replay; per leverage the cheapest safe policy and the richest"), "sweep-<data file>")
  .addOptionalParam("triggers", "trigger ratios, comma-separated", "1.3,1.6,2")
  .addOptionalParam("targets", "target ratios, comma-separated", "1.6,2,3")
  .addOptionalParam("actions", 'action sets separated by "|", each comma-separated', "top-up|reduce|top-up,reduce|top-up,reduce,reduce-first")
  .setAction(
    action(async (args: Args, hre) =>
      withSim(hre, async (sim) => {
        const out = await sim.sweepCommand(args as unknown as Parameters<typeof sim.sweepCommand>[0], commandLine());
        return printed(out, sim.sweepTable(out.report));
      }),
    ),
  );
