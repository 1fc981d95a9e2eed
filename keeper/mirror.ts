/**
 * The keeper's health mirror: every registered account's own state (settlement balance, positions, margins) kept off
 * chain, and its health computed each block from one read of the markets (lib/margin.ts `valuation`, to the wei and
 * with the engine's rounding), so a full scan of N accounts costs one `eth_call` instead of N / chunk `healthBatch`
 * calls.
 *
 * Reads go through BallastLens (contracts/periphery/BallastLens.sol), never deployed: an `eth_call` carries its creation
 * code and it answers by reverting `Snapshot(view)`. One call returns the block's markets (parameters, state, price,
 * volatilities), listed assets (haircut, price), fee and risk parameters, and the own state of up to `chunk` accounts.
 *
 * An account's own state changes only in a transaction, and every such transaction emits an engine event naming it
 * (the indexer gives the account the registry's next state sequence number; reserve-only events do not count, and a
 * log read again is not new). So at each scan the mirror re-reads the accounts whose state changed since its last
 * read, the accounts it does not know yet (the first scan reads all of them), and the ones whose last read could not
 * value them (a position's oracle was invalid); everything else moves only with prices, volatilities and funding,
 * which the market read carries. After a reorg to block F, accounts last read above F are read again, and so are
 * those with events above F (the registry's rewind gives them new sequence numbers). The indexer reads its last 2
 * blocks again at each sync (LATE_LOG_BLOCKS), so a log an endpoint returned late still counts. Every `resyncBlocks`
 * blocks (0: never) everything is read again anyway — a guard against a missed event, not a part of the design.
 *
 * The mirror picks candidates; the chain decides: the scanner confirms every account near a threshold with
 * `healthBatch` at the same block, and the executor simulates every transaction before sending it.
 */
import type { Result } from "ethers";
import { BallastLens__factory } from "../typechain-types";
import { fundingIndexNow, mulDivDown, valuation, type AccountIn, type PositionIn, type StateOut } from "../lib/margin";
import type { MarketConfig, RiskConfig } from "../deploy/params";
import { revertData } from "./abi";
import { isRevert, type RpcPool } from "./rpc";

export interface MarketView {
  params: MarketConfig & { asset: string };
  state: { fundingIndex: bigint; lastFundingTime: bigint; longOI: bigint; shortOI: bigint };
  ok: boolean;
  price: bigint;
  volTarget: bigint;
  volMaint: bigint;
}

export interface AssetView {
  token: string;
  decimals: number;
  haircut: bigint;
  ok: boolean;
  price: bigint;
}

export interface AccountView {
  id: bigint;
  /** false: `accountState` reverted at the read (a position's market oracle was invalid), settlement unknown */
  priced: boolean;
  settlement: bigint;
  positionMask: bigint;
  marginMask: bigint;
  /** by set bit of positionMask, lowest first */
  positions: { size: bigint; entryPrice: bigint; entryFunding: bigint }[];
  /** by set bit of marginMask, lowest first */
  margins: bigint[];
}

/** What one BallastLens call returns (its `View`). */
export interface LensView {
  blockNumber: number;
  timestamp: bigint;
  settlementAsset: string;
  gasAsset: string;
  gasAssetOk: boolean;
  gasAssetPrice: bigint;
  feeParams: { baseFeeUsd: bigint; gasUnits: bigint };
  /** the engine's RiskParams (deploy/params.ts RiskConfig, volHorizon as read: a bigint) */
  risk: Omit<RiskConfig, "volHorizon"> & { volHorizon: bigint };
  markets: MarketView[];
  assets: AssetView[];
  accounts: AccountView[];
}

const big = (x: unknown) => BigInt(x as bigint);

function decodeView(r: Result): LensView {
  const fp = r.feeParams as Result;
  const rk = r.risk as Result;
  return {
    blockNumber: Number(r.blockNumber),
    timestamp: big(r.timestamp),
    settlementAsset: String(r.settlementAsset),
    gasAsset: String(r.gasAsset),
    gasAssetOk: Boolean(r.gasAssetOk),
    gasAssetPrice: big(r.gasAssetPrice),
    feeParams: { baseFeeUsd: big(fp.baseFeeUsd), gasUnits: big(fp.gasUnits) },
    risk: {
      liquidationTargetRatio: big(rk.liquidationTargetRatio),
      fullLiquidationHealth: big(rk.fullLiquidationHealth),
      liquidationPenalty: big(rk.liquidationPenalty),
      keeperPenaltyShare: big(rk.keeperPenaltyShare),
      keeperReward: big(rk.keeperReward),
      dustNotional: big(rk.dustNotional),
      collateralDiscount: big(rk.collateralDiscount),
      volHorizon: big(rk.volHorizon),
    },
    markets: (r.markets as Result[]).map((m) => {
      const p = m.params as Result;
      const s = m.state as Result;
      return {
        params: {
          asset: String(p.asset),
          baseMMR: big(p.baseMMR),
          volK: big(p.volK),
          sizeK: big(p.sizeK),
          maxMMR: big(p.maxMMR),
          imFactor: big(p.imFactor),
          feeRate: big(p.feeRate),
          oiCapFraction: big(p.oiCapFraction),
          maxFundingRate: big(p.maxFundingRate),
          imVolFloor: big(p.imVolFloor),
          skewScale: big(p.skewScale),
          oiCapUsd: big(p.oiCapUsd),
        },
        state: { fundingIndex: big(s.fundingIndex), lastFundingTime: big(s.lastFundingTime), longOI: big(s.longOI), shortOI: big(s.shortOI) },
        ok: Boolean(m.ok),
        price: big(m.price),
        volTarget: big(m.volTarget),
        volMaint: big(m.volMaint),
      };
    }),
    assets: (r.assets as Result[]).map((a) => ({
      token: String(a.token),
      decimals: Number(a.decimals),
      haircut: big(a.haircut),
      ok: Boolean(a.ok),
      price: big(a.price),
    })),
    accounts: (r.accounts as Result[]).map((a) => ({
      id: big(a.id),
      priced: Boolean(a.priced),
      settlement: big(a.settlement),
      positionMask: big(a.positionMask),
      marginMask: big(a.marginMask),
      positions: (a.positions as Result[]).map((p) => ({ size: big(p.size), entryPrice: big(p.entryPrice), entryFunding: big(p.entryFunding) })),
      margins: (a.margins as Result).map(big),
    })),
  };
}

/** A BallastLens call that answered with something other than its Snapshot (a revert of its own, out of gas). */
export class LensError extends Error {}

/** The creation code of a BallastLens read of `accountIds` on `engine`: the `data` of the `eth_call`. */
export function lensCallData(engine: string, accountIds: readonly bigint[]): string {
  return new BallastLens__factory().interface.encodeDeploy([engine, [...accountIds]]).replace(/^0x/, BallastLens__factory.bytecode);
}

/** Decodes BallastLens's answer (the revert data of its call); throws when it is anything else. */
export function decodeLens(data: string | undefined): LensView {
  const iface = BallastLens__factory.createInterface();
  let err: ReturnType<typeof iface.parseError> = null;
  try {
    err = data ? iface.parseError(data) : null;
  } catch {
    /* not decodable as any of the lens's errors */
  }
  if (!err || err.name !== "Snapshot") {
    throw new LensError(`lens read failed: ${data && data !== "0x" ? data.slice(0, 10) : "no revert data"} is not its Snapshot`);
  }
  return decodeView(err.args[0] as Result);
}

/** Sets bits of a mask, lowest first. */
function bits(mask: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; mask > 0n; i++, mask >>= 1n) if (mask & 1n) out.push(i);
  return out;
}

/**
 * The account's valuation at the view's block, exactly as `accountState` computes it; `priced` false (and no state)
 * when a position's market price is invalid (as `healthBatch` reports it) or the read could not value the account.
 */
export function valueAccount(a: AccountView, v: LensView): { priced: boolean; state?: StateOut } {
  if (!a.priced) return { priced: false };
  const positions: PositionIn[] = [];
  const markets = bits(a.positionMask);
  for (let j = 0; j < markets.length; j++) {
    const m = v.markets[markets[j]];
    if (!m || !m.ok) return { priced: false };
    const p = a.positions[j];
    const index = fundingIndexNow(m.state.fundingIndex, m.state.lastFundingTime, v.timestamp, m.params, m.state.longOI, m.state.shortOI, m.price);
    positions.push({ ...p, index, price: m.price, market: m.params, vol: m.volTarget, mmVol: m.volMaint });
  }
  const collateral: AccountIn["collateral"] = bits(a.marginMask).map((i, j) => {
    const asset = v.assets[i];
    return { amount: a.margins[j], price: asset.ok ? asset.price : 0n, decimals: asset.decimals, haircut: asset.haircut };
  });
  return { priced: true, state: valuation({ collateral, settlement: a.settlement, positions }, v.risk) };
}

interface Entry {
  view: AccountView;
  /** block of the read */
  block: number;
}

export interface MirrorStats {
  /** lens eth_calls of the last refresh */
  calls: number;
  /** accounts read by the last refresh */
  read: number;
}

export class HealthMirror {
  private readonly entries = new Map<bigint, Entry>();
  /** the registry's state sequence number the mirror has read up to */
  private seq = 0;
  private lastFull = -1;
  stats: MirrorStats = { calls: 0, read: 0 };

  constructor(
    private readonly pool: RpcPool,
    private readonly engine: string,
    /** callGas: the gas of each lens eth_call (default: the node's own cap) */
    private readonly opts: { chunk: number; resyncBlocks: number; callGas?: bigint },
  ) {}

  /** One BallastLens read at `blockTag`. */
  private async read(ids: readonly bigint[], blockTag: number): Promise<LensView> {
    const data = lensCallData(this.engine, ids);
    // the answer is a revert (pool.use rethrows reverts at once); decoded outside, so a bad answer is not an RPC fault
    const answer = await this.pool.use(async (ep) => {
      try {
        await ep.provider.call({ data, blockTag, gasLimit: this.opts.callGas });
      } catch (e) {
        if (!isRevert(e)) throw e;
        return { data: revertData(e) };
      }
      return { data: undefined };
    });
    return decodeLens(answer.data);
  }

  /** After a reorg to `fork`: what was read above it may come from dropped blocks. */
  invalidateAbove(fork: number): void {
    for (const [id, e] of this.entries) if (e.block > fork) this.entries.delete(id);
  }

  /**
   * Brings the mirror to `block` for `ids` (the accounts to value): re-reads those whose own state changed since its
   * last refresh (`changedSince(seq)`: the registry's state sequence), the unknown and the unvalued ones, in chunks;
   * returns the block's view (markets, assets, parameters).
   */
  async refresh(
    block: number,
    ids: readonly bigint[],
    changedSince: (seq: number) => { ids: Iterable<bigint>; seq: number },
  ): Promise<LensView> {
    const full = this.opts.resyncBlocks > 0 && this.lastFull >= 0 && block - this.lastFull >= this.opts.resyncBlocks;
    const changed = changedSince(this.seq);
    const want = new Set<bigint>();
    if (full) for (const id of ids) want.add(id);
    else {
      for (const id of ids) {
        const e = this.entries.get(id);
        if (!e || !e.view.priced) want.add(id);
      }
      const scanned = new Set(ids);
      for (const id of changed.ids) if (scanned.has(id)) want.add(id);
    }
    const list = [...want];
    let v: LensView | undefined;
    let calls = 0;
    // chunks of `chunk` accounts; a read that fails without its Snapshot (out of gas under the node's eth_call cap:
    // accounts with many positions and assets cost more) is split in halves and retried, down to one account
    const pending: bigint[][] = [];
    for (let i = 0; i < list.length; i += this.opts.chunk) pending.push(list.slice(i, i + this.opts.chunk));
    if (pending.length === 0) pending.push([]);
    while (pending.length > 0) {
      const ids = pending.shift()!;
      calls++;
      try {
        v = await this.read(ids, block);
      } catch (e) {
        if (!(e instanceof LensError) || ids.length <= 1) throw e;
        const half = Math.ceil(ids.length / 2);
        pending.unshift(ids.slice(0, half), ids.slice(half));
        continue;
      }
      for (const a of v.accounts) this.entries.set(a.id, { view: a, block });
    }
    if (full || this.lastFull < 0) this.lastFull = block;
    this.seq = changed.seq;
    this.stats = { calls, read: list.length };
    return v!;
  }

  /** The account's valuation in `v` (undefined when the mirror has never read it). */
  value(id: bigint, v: LensView): { priced: boolean; state?: StateOut } | undefined {
    const e = this.entries.get(id);
    return e ? valueAccount(e.view, v) : undefined;
  }
}

/** A WAD threshold widened by `bps` (up: × (1 + bps), down: × (1 − bps)), for the mirror's candidate test. */
export function widen(threshold: bigint, bps: bigint, up: boolean): bigint {
  return mulDivDown(threshold, up ? 10_000n + bps : 10_000n - bps, 10_000n);
}
