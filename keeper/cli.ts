/**
 * `npm run keeper -- --config keeper/keeper.example.json [--once] [--dry-run] [--shard 0/2]`
 * Exit codes: 0 done, 2 a user error (config, flags, deployment: one line, no stack trace), 1 anything else.
 */
import { ConfigError, loadConfig } from "./config";

export interface KeeperOptions {
  config?: string;
  once: boolean;
  dryRun: boolean;
  shard?: string;
}

export class UsageError extends Error {}

const USAGE = "usage: keeper --config <file> [--once] [--dry-run] [--shard i/N]";

export function parseArgs(argv: string[]): KeeperOptions {
  const o: KeeperOptions = { once: false, dryRun: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith("--")) throw new UsageError(`flag ${a} needs a value — ${USAGE}`);
      return v;
    };
    if (a === "--config") o.config = value();
    else if (a.startsWith("--config=")) o.config = a.slice(9);
    else if (a === "--once") o.once = true;
    else if (a === "--dry-run") o.dryRun = true;
    else if (a === "--shard") o.shard = value();
    else if (a.startsWith("--shard=")) o.shard = a.slice(8);
    else throw new UsageError(`unknown flag ${a} — ${USAGE}`);
  }
  return o;
}

/** Runs the keeper: one cycle (`once`) or until SIGINT/SIGTERM. Heavy modules are loaded here (TypeChain at run time). */
export async function runKeeper(opts: KeeperOptions): Promise<void> {
  const cfg = loadConfig(opts.config, process.env, { shard: opts.shard });
  const { Keeper, runUntilSignal } = await import("./keeper");
  const keeper = await Keeper.create(cfg, { dryRun: opts.dryRun });
  await runUntilSignal(keeper, { once: opts.once });
}

/** A user's mistake: one line. */
export function isUserError(e: unknown): boolean {
  const name = (e as Error)?.constructor?.name;
  return e instanceof ConfigError || e instanceof UsageError || name === "DeploymentError" || /^config error:/.test(String((e as Error)?.message));
}

if (require.main === module) {
  (async () => {
    try {
      await runKeeper(parseArgs(process.argv.slice(2)));
      process.exit(0);
    } catch (e) {
      if (isUserError(e)) {
        console.error(String((e as Error).message).split("\n")[0]);
        process.exit(2);
      }
      console.error(`keeper failed: ${String((e as Error)?.message ?? e).split("\n")[0]}`);
      process.exit(1);
    }
  })();
}
