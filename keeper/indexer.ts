/**
 * Builds the account registry from the engine's events, from a start block, with a persisted cursor. Each sync
 * first checks that the block under the cursor is still the chain's (by hash); after a reorg it walks back the
 * recorded hashes (at most `reorgDepth` blocks) to the fork, rewinds the store to it (Store.rewindTo: the journal's
 * transactions mined above the fork become 'reorged') and re-reads from there. Every event is applied as an
 * absolute state (owner, newSize, policy), so re-reading a block is harmless.
 */
import type { Log } from "ethers";
import { engineInterface } from "./abi";
import type { Logger } from "./log";
import type { Metrics } from "./metrics";
import type { RpcPool } from "./rpc";
import type { Store } from "./store";

/** Indexed blocks read again at each sync for logs an endpoint returned late (a backend one block behind). */
export const LATE_LOG_BLOCKS = 2;

const EVENTS = [
  "AccountCreated",
  "PositionModified",
  "RebalancePolicySet",
  "Rebalanced",
  "Liquidated",
  "OrderRequested",
  "OrderExecuted",
  "OrderCancelled",
  "Deposited",
  "Withdrawn",
  "MarginPosted",
  "MarginReleased",
  "SettlementChanged",
  // the rest of what moves an account's own state (margin settled against the pool, collateral sold, debt written
  // off): the registry's touch is what makes the health mirror re-read an account
  "MarginDebited",
  "MarginCredited",
  "CollateralBought",
  "BadDebt",
] as const;

export interface SyncResult {
  from: number;
  to: number;
  events: number;
  /** the block the cursor was rewound to after a reorg */
  reorgTo?: number;
  /** transactions of the journal mined in the blocks the reorg dropped (now 'reorged': the executor re-checks them) */
  reorgTxs: string[];
}

export class Indexer {
  constructor(
    private readonly store: Store,
    private readonly pool: RpcPool,
    private readonly opts: { engine: string; startBlock: number; reorgDepth: number; maxLogRange: number; log: Logger; metrics?: Metrics },
  ) {}

  private async hashOf(block: number): Promise<string | undefined> {
    const b = await this.pool.use((ep) => ep.provider.getBlock(block));
    return b?.hash ?? undefined;
  }

  /** Indexes up to `head`. */
  async sync(head: number): Promise<SyncResult> {
    const { store, opts } = this;
    let cursor = store.cursor();
    let reorgTo: number | undefined;
    let reorgTxs: string[] = [];
    if (cursor && cursor.block <= head) {
      const chainHash = await this.hashOf(cursor.block);
      if (chainHash !== cursor.hash) {
        // reorg: the newest recorded block still on the chain is the fork point
        let fork = Math.max(opts.startBlock - 1, cursor.block - opts.reorgDepth);
        for (const b of store.recentBlocks(cursor.block - opts.reorgDepth)) {
          if (b.number >= cursor.block) continue;
          if ((await this.hashOf(b.number)) === b.hash) {
            fork = b.number;
            break;
          }
        }
        const reorged = store.rewindTo(fork);
        opts.log.warn({ cursor: cursor.block, fork, reorgedTxs: reorged }, "reorg detected: re-reading from the fork");
        opts.metrics?.reorgs.inc();
        reorgTxs = reorged;
        reorgTo = fork;
        cursor = { block: fork, hash: "" };
      }
    } else if (cursor && cursor.block > head) {
      // the chain is shorter than our cursor (a reorg to a shorter chain, or a lagging endpoint): re-read the window
      reorgTo = Math.max(opts.startBlock - 1, head - opts.reorgDepth);
      reorgTxs = store.rewindTo(reorgTo);
      cursor = { block: reorgTo, hash: "" };
    }
    const first = (cursor ? cursor.block : opts.startBlock - 1) + 1;
    let events = 0;
    const iface = engineInterface();
    const topics = EVENTS.map((n) => iface.getEvent(n)!.topicHash);
    // The last LATE_LOG_BLOCKS indexed blocks are read again with the new ones (one getLogs all the same): a log an
    // endpoint did not return yet for its newest block (a load-balanced backend behind) is picked up late. Logs seen
    // before are skipped; when a late one turns up, the whole window is applied again in order (a suffix of the log
    // re-applied in order is harmless: every event is an absolute state), and only the late log marks its account's
    // own state as changed (the health mirror re-reads it).
    const refetch = first > head ? first : Math.max(opts.startBlock, first - LATE_LOG_BLOCKS);
    for (let from = refetch; from <= head; from += opts.maxLogRange) {
      const to = Math.min(head, from + opts.maxLogRange - 1);
      const logs = await this.pool.use((ep) => ep.provider.getLogs({ address: opts.engine, fromBlock: from, toBlock: to, topics: [topics] }));
      const block = await this.pool.use((ep) => ep.provider.getBlock(to));
      if (!block?.hash) throw new Error(`block ${to} not available`);
      logs.sort((a, b) => a.blockNumber - b.blockNumber || a.index - b.index);
      // new: not seen, and in a block this instance read before (below that, a previous run applied it)
      const fresh = logs.map((l) => !this.seen.has(`${l.blockHash}:${l.index}`) && (l.blockNumber >= first || l.blockNumber >= this.readFrom));
      const late = logs.some((l, i) => fresh[i] && l.blockNumber < first);
      store.tx(() => {
        logs.forEach((l, i) => {
          if (!fresh[i] && !late) return; // applied before, and nothing late to re-order around
          if (fresh[i]) {
            this.seen.set(`${l.blockHash}:${l.index}`, l.blockNumber);
            if (l.blockNumber < first) opts.log.warn({ block: l.blockNumber, index: l.index }, "a log of an indexed block arrived late");
            events++;
          }
          this.apply(l, fresh[i]);
        });
        store.setCursor(to, block.hash!);
        store.recordBlock(to, block.hash!);
        store.pruneBlocks(to - Math.max(opts.reorgDepth * 4, 64));
      });
    }
    if (first <= head) this.readFrom = Math.min(this.readFrom, first);
    const keep = Math.max(opts.reorgDepth, LATE_LOG_BLOCKS) + 1; // the next sync's window, whatever reorgDepth
    for (const [key, b] of this.seen) if (b < head - keep) this.seen.delete(key);
    if (reorgTo !== undefined && first > head) {
      // rewound to the head itself: nothing to re-read, but the cursor needs the head's hash
      const block = await this.pool.use((ep) => ep.provider.getBlock(head));
      if (block?.hash) store.tx(() => (store.setCursor(head, block.hash!), store.recordBlock(head, block.hash!)));
    }
    if (events > 0 || reorgTo !== undefined) opts.log.debug({ from: first, to: head, events, reorgTo }, "indexed");
    return { from: first, to: head, events, reorgTo, reorgTxs };
  }

  /** Logs of the re-read window already applied (blockHash:index → block), so a re-read marks no state change. */
  private readonly seen = new Map<string, number>();
  /** The first block this instance read as new (a log below it was applied by a previous run). */
  private readFrom = Number.POSITIVE_INFINITY;

  /** Applies one log; `fresh`: never applied before (its account's own state may have changed). */
  private apply(l: Log, fresh: boolean): void {
    const p = engineInterface().parseLog({ topics: [...l.topics], data: l.data });
    if (!p) return;
    const s = this.store;
    const b = l.blockNumber;
    const a = p.args;
    switch (p.name) {
      case "AccountCreated":
        s.upsertAccount(a.accountId as bigint, a.owner as string, b);
        break;
      case "PositionModified":
        s.setPosition(a.accountId as bigint, a.marketId as bigint, a.newSize as bigint, b, fresh);
        break;
      case "RebalancePolicySet": {
        const pol = a.policy;
        s.setPolicy(
          a.accountId as bigint,
          {
            actions: Number(pol.actions),
            triggerRatio: pol.triggerRatio as bigint,
            targetRatio: pol.targetRatio as bigint,
            releaseRatio: pol.releaseRatio as bigint,
            maxFeeUsd: pol.maxFeeUsd as bigint,
          },
          b,
        );
        break;
      }
      case "OrderRequested":
        s.addOrder({ id: a.orderId as bigint, accountId: a.accountId as bigint, marketId: a.marketId as bigint, requestedBlock: b, deadline: a.deadline as bigint });
        break;
      case "SettlementChanged":
        s.setOwes(a.accountId as bigint, (a.settlement as bigint) < 0n, b, fresh);
        break;
      case "OrderExecuted":
      case "OrderCancelled":
        s.settleOrder(a.orderId as bigint, b);
        s.touchAccount(a.accountId as bigint, b, fresh);
        break;
      case "Deposited":
      case "Withdrawn":
        // the reserve only (a margin deposit also emits MarginPosted): the account's round advances, its valuation not
        s.touchAccount(a.accountId as bigint, b, false);
        break;
      default:
        // Rebalanced, Liquidated, MarginPosted, MarginReleased, MarginDebited, MarginCredited, CollateralBought,
        // BadDebt: the account's state moved
        s.touchAccount(a.accountId as bigint, b, fresh);
    }
  }
}
