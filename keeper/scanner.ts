/**
 * Reads what the strategy needs at one block. Health: by default from the health mirror (keeper/mirror.ts: each
 * account valued off chain from one BallastLens read of the block's markets and of the accounts events touched), and
 * on chain (`healthBatch`, then `detail`) only for the accounts within `mirrorMarginBps` of 1, of their trigger or of
 * their release ratio; with `scan: "onchain"`, `healthBatch` over every account in chunks. Then, for the accounts that
 * matter, the liquidation fraction and rescue, the rebalance status (accounts outside their policy band), and the
 * readiness of pending orders (a simulated `executeOrder`); plus the base fee, the ETH price (the engine's gas asset,
 * from the oracle) and the engine's fee parameters. With a FlashLiquidator configured or USDC in the keeper's wallet,
 * also the accounts a liquidation left owing with no position: their debt and collateral, a simulated
 * `flashLiquidate` (its profit, or why it would revert) when the collateral is the FlashLiquidator's, and the keeper's
 * USDC balance and allowance to the engine (a direct `buyCollateral`).
 */
import type { DeploymentRecord } from "../lib/deployment";
import type { Ballast } from "../lib/connect";
import { connectBallast } from "../lib/connect";
import { FlashLiquidator__factory, IERC20Metadata__factory, IUniswapV3PoolMinimal__factory } from "../typechain-types";
import { errorName, flashInterface, revertData } from "./abi";
import { HealthMirror, widen, type MirrorStats } from "./mirror";
import type { Logger } from "./log";
import { isRevert, type RpcPool } from "./rpc";
import type { AccountRow, OrderRow, Store } from "./store";
import { inShard, WAD, type AccountSnapshot, type DebtSnapshot, type Inventory, type OrderSnapshot } from "./strategy";

const USDC_SCALE = 10n ** 12n;

export interface ScanResult {
  block: number;
  baseFee: bigint;
  ethUsd: bigint | undefined;
  feeParams: { baseFeeUsd: bigint; gasUnits: bigint };
  accounts: AccountSnapshot[];
  orders: OrderSnapshot[];
  /** owing accounts with no position (only with a FlashLiquidator configured or USDC in the keeper's wallet) */
  debts: DebtSnapshot[];
  /** the keeper's USDC and the engine's terms of a direct buy (gas units left to the caller's config); undefined when
   *  no account of the shard owes */
  inventory: Omit<Inventory, "gas"> | undefined;
}

/** The FlashLiquidator the keeper sells collateral through, and what it buys (resolved once from the pool). */
export interface FlashTarget {
  address: string;
  pool: string;
  collateral: string;
  decimals: number;
}

/** The pool's token that is not the settlement asset, and its decimals. */
export async function resolveFlashTarget(
  provider: Parameters<typeof connectBallast>[1],
  flash: { address: string; pool: string },
  settlementAsset: string,
): Promise<FlashTarget> {
  const pool = IUniswapV3PoolMinimal__factory.connect(flash.pool, provider);
  const [t0, t1] = await Promise.all([pool.token0(), pool.token1()]);
  const usdc = settlementAsset.toLowerCase();
  if (t0.toLowerCase() !== usdc && t1.toLowerCase() !== usdc) {
    throw new Error(`config error: flashPool ${flash.pool} does not trade the settlement asset ${settlementAsset}`);
  }
  const collateral = t0.toLowerCase() === usdc ? t1 : t0;
  const decimals = Number(await IERC20Metadata__factory.connect(collateral, provider).decimals());
  return { address: flash.address, pool: flash.pool, collateral, decimals };
}

/** The revert's error with its arguments ("InsufficientProfit(-1234, 0)"), or its name when they cannot be decoded. */
function errorText(data: string | undefined): string {
  const name = errorName(data);
  try {
    const e = data ? flashInterface().parseError(data) : null;
    if (e) return `${e.name}(${e.args.map(String).join(", ")})`;
  } catch {
    /* not the FlashLiquidator's */
  }
  return name;
}

/** The risk parameters a scan reads (the liquidation reward's terms, the collateral discount). */
type RiskTerms = { keeperReward: bigint; keeperPenaltyShare: bigint; liquidationPenalty: bigint; collateralDiscount: bigint };

interface ScanParts {
  accounts: AccountSnapshot[];
  fp: { baseFeeUsd: bigint; gasUnits: bigint };
  risk: RiskTerms;
  ethUsd: bigint | undefined;
}

/**
 * Whether `health` is outside the account's policy band: below its trigger, or above its release ratio (when it has
 * one). `bps` moves each threshold that far toward the inside of the band (the mirror's margin; 0: exactly).
 */
function outsideBand(a: AccountRow, health: bigint, bps = 0n): boolean {
  return health < widen(a.triggerRatio, bps, true) || (a.releaseRatio > 0n && health > widen(a.releaseRatio, bps, false));
}

export class Scanner {
  private readonly ballasts = new Map<number, Ballast>();
  private readonly mirror?: HealthMirror;
  private readonly decimals = new Map<string, number>();

  constructor(
    private readonly store: Store,
    private readonly pool: RpcPool,
    private readonly rec: DeploymentRecord,
    private readonly opts: {
      chunk: number;
      keeper: string;
      shard: { index: number; count: number };
      ethUsdFallback?: bigint;
      log: Logger;
      flash?: FlashTarget;
      /** scan through the health mirror (keeper/mirror.ts); unset: healthBatch over every account */
      mirror?: { marginBps: bigint; resyncBlocks: number };
    },
  ) {
    if (opts.mirror) this.mirror = new HealthMirror(pool, rec.engine, { chunk: opts.chunk, resyncBlocks: opts.mirror.resyncBlocks });
  }

  /** The mirror's last refresh: lens calls and accounts read (undefined in on-chain mode). */
  get mirrorStats(): MirrorStats | undefined {
    return this.mirror?.stats;
  }

  private b(i: number, provider: Parameters<typeof connectBallast>[1]): Ballast {
    let b = this.ballasts.get(i);
    if (!b) this.ballasts.set(i, (b = connectBallast(this.rec, provider)));
    return b;
  }

  private read<T>(fn: (b: Ballast) => Promise<T>): Promise<T> {
    return this.pool.use((ep, i) => fn(this.b(i, ep.provider)));
  }

  /**
   * Everything the strategy needs at `block`. `reorgTo`: the indexer rewound to that block in this cycle (the health
   * mirror re-reads what it read above it).
   */
  async scan(block: number, opts: { reorgTo?: number } = {}): Promise<ScanResult> {
    const blockTag = block;
    const header = await this.pool.use((ep) => ep.provider.getBlock(block));
    const baseFee = header?.baseFeePerGas ?? 0n;
    // accounts with positions, in this keeper's shard
    const rows = this.store.accounts({ withPosition: true }).filter((a) => inShard(a.id, this.opts.shard));
    const { accounts, fp, risk, ethUsd } = this.mirror ? await this.mirrorScan(rows, block, opts.reorgTo) : await this.chainScan(rows, block);
    // pending orders of this shard's accounts
    const orders: OrderSnapshot[] = [];
    for (const o of this.store.pendingOrders().filter((o) => inShard(o.accountId, this.opts.shard))) {
      const snap = await this.order(o, blockTag);
      if (snap) orders.push(snap);
    }
    // owing accounts, read only when there are some: the keeper's own USDC (a direct buyCollateral needs no
    // FlashLiquidator); their debts when it holds some or a FlashLiquidator is configured
    const owing = this.store.owingAccounts().filter((a) => inShard(a.id, this.opts.shard));
    const debts: DebtSnapshot[] = [];
    let inventory: ScanResult["inventory"];
    if (owing.length > 0) {
      const usdc = this.rec.settlementAsset;
      const [balance, allowance] = await this.pool.use((ep) => {
        const t = IERC20Metadata__factory.connect(usdc, ep.provider);
        return Promise.all([t.balanceOf(this.opts.keeper, { blockTag }), t.allowance(this.opts.keeper, this.rec.engine, { blockTag })]);
      });
      inventory = { balance, allowance, settlementScale: 10n ** BigInt(18 - (await this.decimalsOf(usdc))), collateralDiscount: risk.collateralDiscount };
      if (this.opts.flash || balance > 0n) {
        for (const a of owing) {
          const d = await this.debt(a, blockTag);
          if (d) debts.push(d);
        }
      }
    }
    return { block, baseFee, ethUsd, feeParams: { baseFeeUsd: fp.baseFeeUsd, gasUnits: fp.gasUnits }, accounts, orders, debts, inventory };
  }

  /** Every account's health from `healthBatch`, in chunks of `chunk`; the parameters read one by one. */
  private async chainScan(rows: AccountRow[], blockTag: number): Promise<ScanParts> {
    const [gasAsset, fp, risk] = await Promise.all([
      this.read((b) => b.rebalancer.gasAsset({ blockTag })),
      this.read((b) => b.rebalancer.feeParams({ blockTag })),
      this.read((b) => b.engine.riskParams({ blockTag })),
    ]);
    const [ok, px] = await this.read((b) => b.oracle.tryPrice(gasAsset, { blockTag }));
    return { accounts: await this.confirm(rows, blockTag, risk), fp, risk, ethUsd: ok ? px : this.opts.ethUsdFallback };
  }

  /**
   * Every account's health from the mirror (one BallastLens read, more only for many touched accounts); the accounts
   * within `marginBps` of 1, of their trigger or of their release ratio are asked of the chain (`healthBatch` and the
   * per-account reads of `detail`), the others are reported as the mirror values them.
   */
  private async mirrorScan(rows: AccountRow[], blockTag: number, reorgTo: number | undefined): Promise<ScanParts> {
    const mirror = this.mirror!;
    if (reorgTo !== undefined) mirror.invalidateAbove(reorgTo);
    const v = await mirror.refresh(
      blockTag,
      rows.map((a) => a.id),
      (seq) => this.store.changedSince(seq),
    );
    const bps = this.opts.mirror!.marginBps;
    const snaps = new Map<bigint, AccountSnapshot>();
    const ask: AccountRow[] = [];
    for (const a of rows) {
      const val = mirror.value(a.id, v);
      if (!val) {
        ask.push(a);
        continue;
      }
      const base = { id: a.id, round: String(a.updatedBlock), liquidatable: false, rescueAvailable: false, liquidationRewardUsd: 0n };
      if (!val.priced) {
        snaps.set(a.id, { ...base, health: 0n, priced: false }); // as healthBatch reports it: nothing can be done
        continue;
      }
      const h = val.state!.health;
      const near = h < widen(WAD, bps, true) || (a.optedIn && outsideBand(a, h, bps));
      if (near) ask.push(a);
      else snaps.set(a.id, { ...base, health: h, priced: true });
    }
    for (const s of await this.confirm(ask, blockTag, v.risk)) snaps.set(s.id, s);
    const ethUsd = v.gasAssetOk ? v.gasAssetPrice : this.opts.ethUsdFallback;
    return { accounts: rows.map((a) => snaps.get(a.id)!), fp: v.feeParams, risk: v.risk, ethUsd };
  }

  /** `healthBatch` over `rows` in chunks, then each account's detail. */
  private async confirm(rows: AccountRow[], blockTag: number, risk: RiskTerms): Promise<AccountSnapshot[]> {
    const out: AccountSnapshot[] = [];
    for (let i = 0; i < rows.length; i += this.opts.chunk) {
      const chunk = rows.slice(i, i + this.opts.chunk);
      const [healths, priced] = await this.read((b) => b.engine.healthBatch(chunk.map((a) => a.id), { blockTag }));
      for (let j = 0; j < chunk.length; j++) out.push(await this.detail(chunk[j], healths[j], priced[j], blockTag, risk));
    }
    return out;
  }

  private async decimalsOf(token: string): Promise<number> {
    let d = this.decimals.get(token.toLowerCase());
    if (d === undefined) {
      d = Number(await this.pool.use((ep) => IERC20Metadata__factory.connect(token, ep.provider).decimals()));
      this.decimals.set(token.toLowerCase(), d);
    }
    return d;
  }

  /** The collateral a sale buys: the FlashLiquidator's first, then the record's other assets, as listed. */
  private collaterals(): string[] {
    const usdc = this.rec.settlementAsset.toLowerCase();
    const all = [...(this.opts.flash ? [this.opts.flash.collateral] : []), ...Object.values(this.rec.assets)];
    return all.filter((t, i) => t.toLowerCase() !== usdc && all.findIndex((u) => u.toLowerCase() === t.toLowerCase()) === i);
  }

  /**
   * An owing account's debt, the first collateral it holds, and a simulated flash liquidation when that is the
   * FlashLiquidator's collateral (undefined: it owes nothing or holds none of the collateral).
   */
  private async debt(a: AccountRow, blockTag: number): Promise<DebtSnapshot | undefined> {
    const st = await this.read((b) => b.engine.accountState(a.id, { blockTag }));
    if (st.settlement >= 0n) return undefined;
    let collateral: string | undefined;
    let margin = 0n;
    for (const t of this.collaterals()) {
      margin = await this.read((b) => b.vault.marginOf(a.id, t, { blockTag }));
      if (margin > 0n) {
        collateral = t;
        break;
      }
    }
    if (collateral === undefined) return undefined;
    const [ok, px] = await this.read((b) => b.oracle.tryPrice(collateral, { blockTag }));
    const snap: DebtSnapshot = {
      id: a.id,
      round: String(a.updatedBlock),
      debtUsd: -st.settlement,
      collateral,
      margin,
      collateralPriceUsd: ok ? px : undefined,
      collateralDecimals: await this.decimalsOf(collateral),
    };
    const flash = this.opts.flash;
    if (!flash || flash.collateral.toLowerCase() !== collateral.toLowerCase()) return snap;
    const params = {
      accountId: a.id,
      collateral: flash.collateral,
      pool: flash.pool,
      maxRepay: 0n,
      minProfit: 0n,
      recipient: this.opts.keeper,
      liquidateFirst: false,
    };
    try {
      const profit = await this.pool.use((ep) =>
        FlashLiquidator__factory.connect(flash.address, ep.provider).flashLiquidate.staticCall(params, { from: this.opts.keeper, blockTag }),
      );
      snap.quote = { profit };
    } catch (e) {
      if (!isRevert(e)) throw e;
      snap.quote = { reason: errorText(revertData(e)) };
    }
    return snap;
  }

  private async detail(
    a: AccountRow,
    health: bigint,
    priced: boolean,
    blockTag: number,
    risk: RiskTerms,
  ): Promise<AccountSnapshot> {
    const snap: AccountSnapshot = {
      id: a.id,
      round: String(a.updatedBlock),
      health,
      priced,
      liquidatable: false,
      rescueAvailable: false,
      liquidationRewardUsd: 0n,
    };
    if (!priced) return snap;
    if (health < WAD) {
      const [fraction, rescue] = await Promise.all([
        this.read((b) => b.engine.liquidationFraction(a.id, { blockTag })),
        this.read((b) => b.engine.rescueAvailable(a.id, { blockTag })),
      ]);
      snap.rescueAvailable = rescue;
      if (fraction > 0n && !rescue) {
        snap.liquidatable = true;
        const st = await this.read((b) => b.engine.accountState(a.id, { blockTag }));
        // reward = keeperReward + share × penalty × fraction × notional (rounded down: an estimate never overstates)
        const closed = (fraction * st.notional) / WAD;
        const penalty = (closed * risk.liquidationPenalty) / WAD;
        snap.liquidationRewardUsd = risk.keeperReward + (penalty * risk.keeperPenaltyShare) / WAD;
      }
    }
    if (a.optedIn && (outsideBand(a, health) || snap.rescueAvailable)) {
      const [needed, status] = await this.read((b) => b.rebalancer.needsRebalance(a.id, { blockTag }));
      snap.rebalance = { needed, status: Number(status), maxFeeUsd: a.maxFeeUsd };
    }
    return snap;
  }

  /** An order's readiness: `executeOrder` simulated at the block from the keeper's address. */
  private async order(o: OrderRow, blockTag: number): Promise<OrderSnapshot | undefined> {
    const onchain = await this.read((b) => b.engine.order(o.id, { blockTag }));
    if (onchain.accountId === 0n) return undefined; // settled (the indexer will see the event)
    const feeUsd = onchain.fee * USDC_SCALE;
    try {
      await this.read((b) => b.engine.executeOrder.staticCall(o.id, { from: this.opts.keeper, blockTag }));
      return { id: o.id, accountId: o.accountId, ready: true, feeUsd };
    } catch (e) {
      if (!isRevert(e)) throw e;
      const name = errorName(revertData(e));
      if (name !== "OrderNotReady") this.opts.log.info({ order: o.id, reason: name }, "order not executable");
      return { id: o.id, accountId: o.accountId, ready: false, feeUsd };
    }
  }
}
