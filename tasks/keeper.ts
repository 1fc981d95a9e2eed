/**
 * `npx hardhat keeper:run --keeper-config keeper/keeper.example.json [--once] [--dry-run] [--shard 0/2]`: thin over keeper/
 * (`--config` is Hardhat's own flag, hence `--keeper-config`).
 */
import { task } from "hardhat/config";

task("keeper:run", "Runs the Ballast keeper (rebalances, liquidations, order executions)")
  .addOptionalParam("keeperConfig", "keeper JSON config (see keeper/keeper.example.json)")
  .addOptionalParam("shard", 'act on shard "i/N" of the accounts')
  .addFlag("once", "run one cycle and exit (cron)")
  .addFlag("dryRun", "simulate and log, send nothing")
  .setAction(async (args: { keeperConfig?: string; shard?: string; once: boolean; dryRun: boolean }) => {
    const { runKeeper, isUserError } = await import("../keeper/cli");
    try {
      await runKeeper({ config: args.keeperConfig, shard: args.shard, once: args.once, dryRun: args.dryRun });
    } catch (e) {
      if (isUserError(e)) {
        console.error(String((e as Error).message).split("\n")[0]);
        process.exitCode = 2;
        return;
      }
      throw e;
    }
  });
