/**
 * The keeper's configuration: a JSON file (`--config`), overridden key by key by `KEEPER_*` environment variables,
 * validated with zod. The private key comes only from `KEEPER_PRIVATE_KEY`, never from the file. Every mistake is
 * one line naming the key and where to fix it (ConfigError); amounts are parsed to bigint exactly (no floats).
 */
import fs from "node:fs";
import path from "node:path";
import { z } from "zod";

export class ConfigError extends Error {}

const GWEI = 10n ** 9n;
const WAD = 10n ** 18n;

/** A non-negative decimal string ("1.5") or integer as a fixed-point bigint with `decimals` decimals, exactly. */
export function parseDecimal(text: string, decimals: number): bigint {
  const m = /^(\d+)(?:\.(\d+))?$/.exec(text.trim());
  if (!m) throw new Error(`not a decimal: ${text}`);
  const frac = m[2] ?? "";
  if (frac.length > decimals) throw new Error(`more than ${decimals} decimals: ${text}`);
  return BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt((frac + "0".repeat(decimals)).slice(0, decimals) || "0");
}

/** A decimal amount: a string ("0.5") or a safe integer; never a fractional JS number (no floats for money). */
const decimal = (what: string, decimals: number) =>
  z
    .union([z.string(), z.number()])
    .refine(
      (v) => (typeof v === "number" ? Number.isSafeInteger(v) && v >= 0 : /^\d+(\.\d+)?$/.test(v.trim()) && (v.split(".")[1] ?? "").length <= decimals),
      { message: `must be a non-negative ${what} as a decimal string such as "0.5" (at most ${decimals} decimals)` },
    )
    .transform((v) => parseDecimal(String(v), decimals));

const int = (min: number, what = "an integer") =>
  z.number({ message: `must be a ${what} >= ${min}` }).int({ message: `must be a ${what} >= ${min}` }).min(min, { message: `must be a ${what} >= ${min}` });

const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, { message: "must be a 0x-prefixed 20-byte hex address" });

const shardText = z
  .string()
  .regex(/^\d+\/\d+$/, { message: 'must be "i/N" with 0 <= i < N (e.g. "0/2")' })
  .refine((s) => {
    const [i, n] = s.split("/").map(Number);
    return n >= 1 && i < n;
  }, { message: 'must be "i/N" with 0 <= i < N (e.g. "0/2")' });

export const configSchema = z
  .object({
    /** deployment record name (deployments/<network>.json) */
    network: z.string().min(1, { message: "must be a deployment name such as \"localhost\"" }).optional(),
    /** explicit engine address (instead of a deployment record) */
    engine: address.optional(),
    deploymentsDir: z.string().default("deployments"),
    rpcUrls: z
      .array(z.string().regex(/^https?:\/\/\S+$/, { message: "must be an http(s) URL" }), { message: "must be a list of http(s) URLs" })
      .min(1, { message: "must list at least one http(s) URL" }),
    chainId: int(1, "chain id (an integer)"),
    startBlock: int(0).optional(),
    reorgDepth: int(0).default(12),
    pollIntervalMs: int(50).default(4_000),
    scanChunk: int(1).default(200),
    /** "mirror": health computed off chain from one read per block (keeper/mirror.ts), candidates confirmed on chain;
     *  "onchain": healthBatch over every account each block */
    scan: z.enum(["mirror", "onchain"], { message: 'must be "mirror" or "onchain"' }).default("mirror"),
    /** how close (basis points) to a threshold the mirror's health must be for the chain to be asked */
    mirrorMarginBps: int(0, "basis-point count (an integer)").max(5_000, { message: "must be a basis-point count <= 5000" }).default(100),
    /** every this many blocks the mirror re-reads every account (0 = never) */
    mirrorResyncBlocks: int(0).default(7_200),
    batchSize: int(1).default(10),
    maxLogRange: int(1).default(5_000),
    maxFeePerGasGwei: decimal("gwei amount", 9).prefault("100"),
    priorityFeeGwei: decimal("gwei amount", 9).prefault("1"),
    bumpPercent: int(10, "percentage (an integer)").default(15),
    stuckAfterMs: int(0).default(60_000),
    maxLagBlocks: int(0).default(3),
    healthzStaleSeconds: int(1).default(120),
    metricsPort: int(0, "port (an integer, 0 = off)").max(65_535, { message: "must be a port <= 65535 (0 = off)" }).default(0),
    dbPath: z.string().min(1, { message: "must be a file path" }).default("keeper.db"),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"], {
      message: "must be one of fatal, error, warn, info, debug, trace, silent",
    }).default("info"),
    minProfitUsd: decimal("USD amount", 18).prefault("0"),
    /** USD per ETH when the oracle cannot price the gas asset (else the keeper waits) */
    ethUsdFallback: decimal("USD amount", 18).optional(),
    /** gas units the profitability check charges per action (the executor measures the real figure before sending) */
    gas: z
      .object({
        rebalance: int(21_000).default(700_000),
        rebalanceBatchBase: int(0).default(100_000),
        rebalanceBatchPerAccount: int(21_000).default(600_000),
        liquidate: int(21_000).default(900_000),
        executeOrder: int(21_000).default(400_000),
        flashLiquidate: int(21_000).default(450_000),
        buyCollateral: int(21_000).default(250_000),
        approve: int(21_000).default(60_000),
      })
      .strict()
      .prefault({}),
    /** "i/N": this keeper acts on shard i of N (also --shard) */
    shard: shardText.optional(),
    /**
     * FlashLiquidator address: when set (with flashPool), accounts a liquidation left owing with collateral are
     * bought capital-free through it whenever the keeper's own USDC does not cover the repay (when it does, the keeper
     * calls buyCollateral directly: no pool fee); unset, only the direct purchase remains
     */
    flashLiquidator: address.optional(),
    /** the Uniswap V3 pool of (collateral, USDC) the FlashLiquidator flash-swaps from; its other token is bought */
    flashPool: address.optional(),
    /** least profit (USD) above gas of a flash liquidation */
    flashMinProfitUsd: decimal("USD amount", 18).prefault("0"),
  })
  .strict()
  .refine((c) => c.network !== undefined || c.engine !== undefined, {
    message: "is missing: set \"network\" (a deployment record name) or \"engine\" (an address)",
    path: ["network"],
  })
  .refine((c) => (c.flashLiquidator === undefined) === (c.flashPool === undefined), {
    message: "must be set together with flashLiquidator (the Uniswap V3 pool of the collateral and USDC), or neither",
    path: ["flashPool"],
  });

type Parsed = z.output<typeof configSchema>;

export interface KeeperConfig extends Omit<Parsed, "maxFeePerGasGwei" | "priorityFeeGwei" | "shard"> {
  /** wei */
  maxFeePerGas: bigint;
  /** wei */
  priorityFee: bigint;
  shard: { index: number; count: number };
  /** 0x-hex; only from KEEPER_PRIVATE_KEY */
  privateKey?: string;
  /** where the config came from (messages) */
  source: string;
}

/** Environment overrides: KEEPER_<KEY> for every top-level scalar key; KEEPER_RPC_URLS is comma-separated. */
const ENV_KEYS: Record<string, { key: string; kind: "string" | "int" | "list" | "decimal" }> = {
  KEEPER_NETWORK: { key: "network", kind: "string" },
  KEEPER_ENGINE: { key: "engine", kind: "string" },
  KEEPER_DEPLOYMENTS_DIR: { key: "deploymentsDir", kind: "string" },
  KEEPER_RPC_URLS: { key: "rpcUrls", kind: "list" },
  KEEPER_CHAIN_ID: { key: "chainId", kind: "int" },
  KEEPER_START_BLOCK: { key: "startBlock", kind: "int" },
  KEEPER_REORG_DEPTH: { key: "reorgDepth", kind: "int" },
  KEEPER_POLL_INTERVAL_MS: { key: "pollIntervalMs", kind: "int" },
  KEEPER_SCAN_CHUNK: { key: "scanChunk", kind: "int" },
  KEEPER_SCAN: { key: "scan", kind: "string" },
  KEEPER_MIRROR_MARGIN_BPS: { key: "mirrorMarginBps", kind: "int" },
  KEEPER_MIRROR_RESYNC_BLOCKS: { key: "mirrorResyncBlocks", kind: "int" },
  KEEPER_BATCH_SIZE: { key: "batchSize", kind: "int" },
  KEEPER_MAX_LOG_RANGE: { key: "maxLogRange", kind: "int" },
  KEEPER_MAX_FEE_PER_GAS_GWEI: { key: "maxFeePerGasGwei", kind: "decimal" },
  KEEPER_PRIORITY_FEE_GWEI: { key: "priorityFeeGwei", kind: "decimal" },
  KEEPER_BUMP_PERCENT: { key: "bumpPercent", kind: "int" },
  KEEPER_STUCK_AFTER_MS: { key: "stuckAfterMs", kind: "int" },
  KEEPER_MAX_LAG_BLOCKS: { key: "maxLagBlocks", kind: "int" },
  KEEPER_HEALTHZ_STALE_SECONDS: { key: "healthzStaleSeconds", kind: "int" },
  KEEPER_METRICS_PORT: { key: "metricsPort", kind: "int" },
  KEEPER_DB_PATH: { key: "dbPath", kind: "string" },
  KEEPER_LOG_LEVEL: { key: "logLevel", kind: "string" },
  KEEPER_MIN_PROFIT_USD: { key: "minProfitUsd", kind: "decimal" },
  KEEPER_ETH_USD_FALLBACK: { key: "ethUsdFallback", kind: "decimal" },
  KEEPER_SHARD: { key: "shard", kind: "string" },
  KEEPER_FLASH_LIQUIDATOR: { key: "flashLiquidator", kind: "string" },
  KEEPER_FLASH_POOL: { key: "flashPool", kind: "string" },
  KEEPER_FLASH_MIN_PROFIT_USD: { key: "flashMinProfitUsd", kind: "decimal" },
};

function envValue(kind: string, text: string): unknown {
  if (kind === "list") return text.split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (kind === "int") return /^-?\d+$/.test(text.trim()) ? Number(text.trim()) : text;
  return text;
}

function pathText(p: readonly PropertyKey[]): string {
  let out = "";
  for (const k of p) out += typeof k === "number" ? `[${k}]` : out === "" ? String(k) : `.${String(k)}`;
  return out || "(root)";
}

/**
 * Validates a raw object (the file's content with the environment applied). `origin` names, per top-level key, where
 * its value came from (the file or an env variable), for the "fix it in …" part of a message.
 */
export function parseConfig(raw: unknown, origin: (key: string) => string, env: NodeJS.ProcessEnv = {}): KeeperConfig {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(`config error: the config must be a JSON object — fix it in ${origin("")}`);
  }
  if ("privateKey" in raw) {
    throw new ConfigError(`config error: privateKey must not be in the file — remove it from ${origin("")} and set KEEPER_PRIVATE_KEY in the environment`);
  }
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const key = pathText(issue.path);
    let message = issue.message;
    if (issue.code === "unrecognized_keys") {
      const keys = (issue as { keys: string[] }).keys;
      return fail(`config error: unknown key ${keys.map((k) => (key === "(root)" ? k : `${key}.${k}`)).join(", ")} — remove it from ${origin("")} (see keeper/keeper.example.json)`);
    }
    if (issue.code === "invalid_type" && (issue as { input?: unknown }).input === undefined) message = message.startsWith("must") ? `is missing: it ${message}` : "is missing";
    return fail(`config error: ${key} ${message} — fix it in ${origin(String(issue.path[0] ?? ""))}`);
  }
  const c = r.data;
  const [index, count] = (c.shard ?? "0/1").split("/").map(Number);
  const privateKey = env.KEEPER_PRIVATE_KEY?.trim();
  if (privateKey !== undefined && privateKey !== "" && !/^(0x)?[0-9a-fA-F]{64}$/.test(privateKey)) {
    fail("config error: KEEPER_PRIVATE_KEY must be a 32-byte hex private key — fix it in the environment");
  }
  const { maxFeePerGasGwei, priorityFeeGwei, shard: _shard, ...rest } = c;
  if (priorityFeeGwei > maxFeePerGasGwei) {
    fail(`config error: priorityFeeGwei must not exceed maxFeePerGasGwei — fix it in ${origin("priorityFeeGwei")}`);
  }
  return {
    ...rest,
    maxFeePerGas: maxFeePerGasGwei,
    priorityFee: priorityFeeGwei,
    shard: { index, count },
    privateKey: privateKey ? (privateKey.startsWith("0x") ? privateKey : `0x${privateKey}`) : undefined,
    source: origin(""),
  };
}

function fail(message: string): never {
  throw new ConfigError(message);
}

/**
 * Reads `file` (JSON), applies KEEPER_* overrides from `env`, validates. `overrides` (CLI flags) win over both.
 */
export function loadConfig(file: string | undefined, env: NodeJS.ProcessEnv = process.env, overrides: Record<string, unknown> = {}): KeeperConfig {
  let raw: Record<string, unknown> = {};
  const fileName = file ? path.basename(file) : "the environment";
  if (file) {
    if (!fs.existsSync(file)) fail(`config error: ${file} does not exist — pass an existing file to --config (see keeper/keeper.example.json)`);
    try {
      raw = JSON.parse(fs.readFileSync(file, "utf8"));
    } catch (e) {
      fail(`config error: ${file} is not valid JSON (${(e as Error).message.split("\n")[0]}) — fix it in ${fileName}`);
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) fail(`config error: the config must be a JSON object — fix it in ${fileName}`);
    // documentation keys of the example file
    for (const k of Object.keys(raw)) if (k.startsWith("//") || k.startsWith("$")) delete raw[k];
  }
  const fromEnv = new Map<string, string>();
  for (const [name, { key, kind }] of Object.entries(ENV_KEYS)) {
    const v = env[name];
    if (v === undefined || v === "") continue;
    raw[key] = envValue(kind, v);
    fromEnv.set(key, name);
  }
  const fromFlag = new Set<string>();
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) continue;
    raw[k] = v;
    fromFlag.add(k);
  }
  const origin = (key: string) => (fromFlag.has(key) ? `the --${key} flag` : fromEnv.get(key) ?? fileName);
  return parseConfig(raw, origin, env);
}

/** WAD USD of a decimal string (CLI/tests). */
export const usdWad = (text: string) => parseDecimal(text, 18);
export const gwei = (text: string) => parseDecimal(text, 9);
export { GWEI, WAD };
