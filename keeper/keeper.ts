/**
 * The keeper: one cycle is index → scan → strategy → execute → reconcile, at one block; `run` repeats it on each
 * new block until stopped (SIGINT/SIGTERM stop it gracefully after the cycle in progress).
 */
import { Wallet, getAddress, type Signer } from "ethers";
import type { Server } from "node:http";

import { loadDeployment, type DeploymentRecord } from "../lib/deployment";
import { DEPLOYMENT_SCHEMA } from "../lib/deployment";
import type { KeeperConfig } from "./config";
import { Executor, type ExecResult, type ExecutorHooks } from "./executor";
import { Indexer } from "./indexer";
import { createLogger, type Logger } from "./log";
import { Metrics } from "./metrics";
import { RpcPool, httpProvider, type Endpoint } from "./rpc";
import { resolveFlashTarget, Scanner, type FlashTarget } from "./scanner";
import { Store } from "./store";
import { plan, type Plan } from "./strategy";

export interface KeeperDeps {
  /** RPC endpoints (default: one JSON-RPC provider per config.rpcUrls) */
  endpoints?: Endpoint[];
  /** signs transactions (default: a Wallet of config.privateKey) */
  signer?: Signer;
  /** the deployment (default: loadDeployment(config.network, config.deploymentsDir), or read from config.engine) */
  rec?: DeploymentRecord;
  log?: Logger;
  dryRun?: boolean;
  now?: () => number;
  /** fault injection (tests): hooks around each broadcast */
  hooks?: ExecutorHooks;
}

export interface CycleReport {
  block: number;
  plan: Plan;
  results: ExecResult[];
}

export class Keeper {
  readonly pool: RpcPool;
  readonly store: Store;
  readonly indexer: Indexer;
  readonly scanner: Scanner;
  /** the lowest block a reorg rewound to that no scan has taken in yet */
  private pendingReorg?: number;
  readonly executor: Executor;
  readonly metrics = new Metrics();
  readonly log: Logger;
  readonly from: string;
  private stopping = false;
  private wake: (() => void) | undefined;
  private server: Server | undefined;
  private lastBlock = -1;

  private constructor(
    readonly cfg: KeeperConfig,
    readonly rec: DeploymentRecord,
    deps: KeeperDeps & { endpoints: Endpoint[]; log: Logger; flash?: FlashTarget },
  ) {
    this.log = deps.log;
    const signer = deps.signer ?? (cfg.privateKey ? new Wallet(cfg.privateKey) : undefined);
    const dryRun = deps.dryRun ?? false;
    if (!signer && !dryRun) throw new Error("config error: KEEPER_PRIVATE_KEY is not set — set it in the environment (or run with --dry-run)");
    this.from = signer && "address" in signer ? getAddress((signer as Wallet).address) : "0x000000000000000000000000000000000000dEaD";
    this.pool = new RpcPool(deps.endpoints, { maxLagBlocks: cfg.maxLagBlocks, log: this.log, metrics: this.metrics, now: deps.now });
    this.store = new Store(cfg.dbPath);
    this.store.bindTo(cfg.chainId, rec.engine);
    this.indexer = new Indexer(this.store, this.pool, {
      engine: rec.engine,
      startBlock: cfg.startBlock ?? rec.startBlock,
      reorgDepth: cfg.reorgDepth,
      maxLogRange: cfg.maxLogRange,
      log: this.log,
      metrics: this.metrics,
    });
    this.scanner = new Scanner(this.store, this.pool, rec, {
      chunk: cfg.scanChunk,
      keeper: this.from,
      shard: cfg.shard,
      ethUsdFallback: cfg.ethUsdFallback,
      log: this.log,
      flash: deps.flash,
      mirror: cfg.scan === "mirror" ? { marginBps: BigInt(cfg.mirrorMarginBps), resyncBlocks: cfg.mirrorResyncBlocks } : undefined,
    });
    this.executor = new Executor(this.store, this.pool, {
      engine: rec.engine,
      chainId: cfg.chainId,
      signer,
      from: this.from,
      maxFeePerGas: cfg.maxFeePerGas,
      priorityFee: cfg.priorityFee,
      bumpPercent: cfg.bumpPercent,
      stuckAfterMs: cfg.stuckAfterMs,
      dryRun,
      log: this.log,
      metrics: this.metrics,
      now: deps.now,
      hooks: deps.hooks,
      flash: deps.flash,
      settlementAsset: rec.settlementAsset,
    });
  }

  static async create(cfg: KeeperConfig, deps: KeeperDeps = {}): Promise<Keeper> {
    const log = deps.log ?? createLogger(cfg.logLevel);
    const endpoints = deps.endpoints ?? cfg.rpcUrls.map((url) => ({ name: redact(url), provider: httpProvider(url, cfg.chainId) }));
    const rec = deps.rec ?? (cfg.network ? loadDeployment(cfg.network, cfg.deploymentsDir) : await recordFromEngine(cfg, endpoints[0]));
    if (rec.chainId !== undefined && rec.chainId !== cfg.chainId) {
      throw new Error(`config error: chainId ${cfg.chainId} does not match the deployment's ${rec.chainId} — fix it in ${cfg.source}`);
    }
    // the FlashLiquidator's pool names the collateral it buys (its token that is not the settlement asset)
    const flash =
      cfg.flashLiquidator !== undefined && cfg.flashPool !== undefined
        ? await resolveFlashTarget(endpoints[0].provider, { address: cfg.flashLiquidator, pool: cfg.flashPool }, rec.settlementAsset)
        : undefined;
    return new Keeper(cfg, rec, { ...deps, endpoints, log, flash });
  }

  /** Index and scan at the best head, and plan (nothing is sent). */
  async prepare(): Promise<{ block: number; plan: Plan }> {
    const head = await this.pool.refresh();
    await this.executor.reconcile();
    const synced = await this.indexer.sync(head);
    // a reorg dropped blocks with our transactions: settle them against the new chain before deciding again
    if (synced.reorgTxs.length > 0) await this.executor.reconcile();
    // a reorg is kept until a scan has taken it in (a cycle that fails after the sync must not lose it)
    if (synced.reorgTo !== undefined) this.pendingReorg = Math.min(this.pendingReorg ?? synced.reorgTo, synced.reorgTo);
    const scan = await this.scanner.scan(head, { reorgTo: this.pendingReorg });
    this.pendingReorg = undefined;
    const mirror = this.scanner.mirrorStats;
    if (mirror) {
      this.metrics.mirrorCalls.inc(mirror.calls);
      this.metrics.mirrorReads.inc(mirror.read);
    }
    const busy = new Set<string>();
    for (const a of scan.accounts) {
      for (const key of [`rebalance:${a.id}`, `liquidate:${a.id}`]) if (this.store.isPending(key) || this.store.isLive(key, a.round)) busy.add(key);
    }
    for (const d of scan.debts) {
      for (const key of [`buy:${d.id}`, `approve:${d.id}`]) if (this.store.isPending(key) || this.store.isLive(key, d.round)) busy.add(key);
    }
    for (const o of scan.orders) if (this.store.isPending(`order:${o.id}`) || this.store.isLive(`order:${o.id}`, "0")) busy.add(`order:${o.id}`);
    const p = plan(scan.accounts, scan.orders, {
      baseFee: scan.baseFee,
      ethUsd: scan.ethUsd,
      feeParams: scan.feeParams,
      maxFeePerGas: this.cfg.maxFeePerGas,
      gas: this.cfg.gas,
      minProfitUsd: this.cfg.minProfitUsd,
      batchSize: this.cfg.batchSize,
      shard: this.cfg.shard,
      busy,
      flash: this.cfg.flashLiquidator !== undefined ? { minProfitUsd: this.cfg.flashMinProfitUsd, gas: this.cfg.gas.flashLiquidate } : undefined,
      inventory: scan.inventory && { ...scan.inventory, gas: { buyCollateral: this.cfg.gas.buyCollateral, approve: this.cfg.gas.approve } },
    }, scan.debts);
    for (const w of p.waits) this.log.info({ key: w.key, reason: w.reason }, "waiting");
    this.metrics.accounts.set(this.store.accountCount());
    this.metrics.pendingOrders.set(scan.orders.length);
    this.metrics.waits.set(p.waits.length);
    return { block: head, plan: p };
  }

  /** Sends a plan's actions in order, then settles what was mined. */
  async execute(p: Plan): Promise<ExecResult[]> {
    const results: ExecResult[] = [];
    for (const a of p.actions) {
      if (this.stopping) break;
      results.push(await this.executor.execute(a));
    }
    await this.executor.reconcile();
    return results;
  }

  /** One cycle (`--once`). */
  async cycle(): Promise<CycleReport> {
    const { block, plan: p } = await this.prepare();
    if (p.actions.length > 0) {
      this.log.info({ block, dryRun: this.executor.dryRun, actions: p.actions.map((a) => `${a.kind}:${a.ids.join(",")}`) }, "plan");
    }
    const results = await this.execute(p);
    this.metrics.cycles.inc();
    this.metrics.blockProcessed(block);
    this.lastBlock = block;
    this.log.debug({ block, actions: p.actions.length, waits: p.waits.length }, "cycle done");
    return { block, plan: p, results };
  }

  /**
   * Cycles on every new block until stop() (or `signal` aborts: within one poll interval, after the action in
   * progress); RPC errors back off exponentially (the pool also fails over).
   */
  async run(opts: { signal?: AbortSignal } = {}): Promise<void> {
    const onAbort = () => this.stop();
    if (opts.signal?.aborted) this.stop();
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    if (this.cfg.metricsPort !== 0) {
      this.server = await this.metrics.serve(this.cfg.metricsPort, this.cfg.healthzStaleSeconds);
      this.log.info({ port: this.cfg.metricsPort }, "serving /metrics and /healthz");
    }
    this.log.info({ engine: this.rec.engine, keeper: this.from, shard: `${this.cfg.shard.index}/${this.cfg.shard.count}` }, "keeper started");
    let failures = 0;
    while (!this.stopping) {
      let delay = this.cfg.pollIntervalMs;
      try {
        const head = await this.pool.refresh();
        if (head !== this.lastBlock) await this.cycle();
        failures = 0;
      } catch (e) {
        failures++;
        delay = Math.min(60_000, this.cfg.pollIntervalMs * 2 ** Math.min(failures, 6));
        this.log.error({ error: String((e as Error).message).split("\n")[0], retryInMs: delay }, "cycle failed");
      }
      if (!this.stopping) await new Promise<void>((r) => {
        const t = setTimeout(r, delay);
        this.wake = () => {
          clearTimeout(t);
          r();
        };
      });
    }
    opts.signal?.removeEventListener("abort", onAbort);
    this.log.info("keeper stopped");
  }

  /** Graceful stop: the cycle in progress finishes its current action, then run() returns. */
  stop(): void {
    this.stopping = true;
    this.wake?.();
  }

  /** Stops, closes the metrics server (and its connections) and the DB. */
  async close(): Promise<void> {
    this.stop();
    const server = this.server;
    this.server = undefined;
    if (server) {
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
    }
    this.store.close();
  }
}

/**
 * The CLI's loop: one cycle (`once`) or `run` until SIGINT/SIGTERM (each handled once: a graceful stop after the
 * action in progress), or until `signal` aborts; then the keeper is closed (metrics server, DB) and the signal
 * handlers removed.
 */
export async function runUntilSignal(
  keeper: Keeper,
  opts: { once?: boolean; signal?: AbortSignal; signals?: NodeJS.Signals[] } = {},
): Promise<CycleReport | undefined> {
  const stop = new AbortController();
  const handlers = (opts.signals ?? ["SIGINT", "SIGTERM"]).map((sig) => {
    const h = () => {
      keeper.log.info({ signal: sig }, "stopping");
      stop.abort(sig);
    };
    process.once(sig, h);
    return [sig, h] as const;
  });
  const forward = () => stop.abort(opts.signal?.reason);
  if (opts.signal?.aborted) forward();
  opts.signal?.addEventListener("abort", forward, { once: true });
  stop.signal.addEventListener("abort", () => keeper.stop(), { once: true });
  try {
    if (opts.once) {
      const r = await keeper.cycle();
      keeper.log.info({ block: r.block, results: r.results, waits: r.plan.waits.length }, "once: cycle done");
      return r;
    }
    await keeper.run({ signal: stop.signal });
    return undefined;
  } finally {
    for (const [sig, h] of handlers) process.removeListener(sig, h);
    opts.signal?.removeEventListener("abort", forward);
    await keeper.close();
  }
}

function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}`;
  } catch {
    return "rpc";
  }
}

/** A deployment record read from the engine itself (config.engine without a record). */
async function recordFromEngine(cfg: KeeperConfig, ep: Endpoint): Promise<DeploymentRecord> {
  const { IMarginEngine__factory } = await import("../typechain-types");
  const engine = IMarginEngine__factory.connect(cfg.engine!, ep.provider);
  const [oracle, pool, settlementAsset] = await Promise.all([engine.oracle(), engine.pool(), engine.settlementAsset()]);
  return {
    schema: DEPLOYMENT_SCHEMA,
    network: `chain-${cfg.chainId}`,
    chainId: cfg.chainId,
    startBlock: cfg.startBlock ?? 0,
    deployer: "",
    engine: cfg.engine!,
    oracle,
    pool,
    settlementAsset,
    assets: {},
    markets: {},
    feeds: {},
    parts: {},
  };
}
