/**
 * Sends the strategy's actions: simulates each (eth_call) before sending, prices it EIP-1559 under the fee cap,
 * signs it with its own nonce manager, journals it before broadcasting (a restart never sends twice), and later
 * reconciles the journal with receipts: mined, failed, dropped (the nonce went to another transaction, or the node
 * lost the transaction: the nonce manager resyncs from the chain and the strategy decides again), reorged (mined in
 * a block a reorg dropped: re-mined, back in the pool, or dropped and decided again), or stuck — replaced at the
 * same nonce with fees bumped by `bumpPercent`, never above the cap. A revert that means "someone else got there
 * first" is a benign no-op, logged. `dryRun` simulates and logs, and sends nothing.
 */
import { Transaction, type Signer } from "ethers";
import { ERC20__factory } from "../typechain-types";
import { BENIGN, engineInterface, errorName, flashInterface, revertData } from "./abi";
import type { Logger } from "./log";
import type { Metrics } from "./metrics";
import { isRevert, isTxRejection, type RpcPool } from "./rpc";
import { DuplicateActionError, type Store } from "./store";
import type { Action } from "./strategy";

export type Outcome = "sent" | "dry-run" | "benign" | "reverted" | "duplicate" | "skipped";

export interface ExecResult {
  kind: Action["kind"];
  ids: bigint[];
  outcome: Outcome;
  reason?: string;
  hash?: string;
  nonce?: number;
}

export interface ExecutorOptions {
  engine: string;
  chainId: number;
  /** signs transactions (a Wallet); absent: dry-run only */
  signer?: Signer;
  /** the keeper's address (simulations run from it) */
  from: string;
  maxFeePerGas: bigint;
  priorityFee: bigint;
  bumpPercent: number;
  stuckAfterMs: number;
  dryRun: boolean;
  log: Logger;
  metrics?: Metrics;
  now?: () => number;
  /** fault injection (tests): called around each broadcast of a new transaction; a throw aborts the cycle there */
  hooks?: ExecutorHooks;
  /** the FlashLiquidator, its pool and the collateral it buys (flashLiquidate actions; the profit goes to `from`) */
  flash?: { address: string; pool: string; collateral: string };
  /** the engine's settlement asset (USDC): approve actions go to it */
  settlementAsset?: string;
}

export interface ExecutorHooks {
  /** after the transaction is journaled as pending, before it is broadcast */
  beforeBroadcast?: (tx: { hash: string; nonce: number }) => void | Promise<void>;
  /** after the broadcast, before the journal learns the transaction's fate */
  afterBroadcast?: (tx: { hash: string; nonce: number }) => void | Promise<void>;
}

const BROADCAST_FAILED = "broadcast failed on every endpoint";
const erc20Interface = ERC20__factory.createInterface();

export class Executor {
  private nonce: number | undefined;

  constructor(
    private readonly store: Store,
    private readonly pool: RpcPool,
    private readonly o: ExecutorOptions,
  ) {}

  private now() {
    return this.o.now?.() ?? Date.now();
  }

  /** Simulates and logs only: nothing is signed or sent. */
  get dryRun(): boolean {
    return this.o.dryRun || !this.o.signer;
  }

  /** Calldata of an engine action (a flashLiquidate goes to the FlashLiquidator, an approve to the USDC: `call`). */
  static calldata(a: Action): string {
    const i = engineInterface();
    switch (a.kind) {
      case "flashLiquidate":
        throw new Error("flashLiquidate is sent to the FlashLiquidator, not the engine");
      case "approve":
        throw new Error("approve is sent to the settlement token, not the engine");
      case "buyCollateral":
        if (a.collateral === undefined || a.repay === undefined) throw new Error("buyCollateral without collateral and repay");
        return i.encodeFunctionData("buyCollateral", [a.ids[0], a.collateral, a.repay, a.minAmountOut ?? 0n]);
      case "liquidate":
        return i.encodeFunctionData("liquidate", [a.ids[0]]);
      case "rescue":
      case "rebalance":
        return i.encodeFunctionData("rebalance", [a.ids[0]]);
      case "rebalanceBatch":
        return i.encodeFunctionData("rebalanceBatch", [a.ids]);
      case "executeOrder":
        return i.encodeFunctionData("executeOrder", [a.ids[0]]);
    }
  }

  /** Where an action is sent and its calldata. */
  call(a: Action): { to: string; data: string } {
    if (a.kind === "approve") {
      // exactly the repay of the buy that follows: the engine's allowance is used up by it
      if (!this.o.settlementAsset || a.repay === undefined) throw new Error("approve without the settlement asset or the repay");
      return { to: this.o.settlementAsset, data: erc20Interface.encodeFunctionData("approve", [this.o.engine, a.repay]) };
    }
    if (a.kind !== "flashLiquidate") return { to: this.o.engine, data: Executor.calldata(a) };
    const f = this.o.flash;
    if (!f) throw new Error("flashLiquidate without a FlashLiquidator configured (flashLiquidator, flashPool)");
    const params = {
      accountId: a.ids[0],
      collateral: f.collateral,
      pool: f.pool,
      maxRepay: 0n,
      minProfit: a.minProfit ?? 0n,
      recipient: this.o.from,
      liquidateFirst: false,
    };
    return { to: f.address, data: flashInterface().encodeFunctionData("flashLiquidate", [params]) };
  }

  /**
   * The next nonce: after a (re)sync, the chain's pending nonce, stepping over the nonces of the journal's pending
   * transactions (a pending transaction the node does not count yet keeps its nonce; a gap left by a dropped one is
   * filled first); then one more per send.
   */
  private async nextNonce(): Promise<number> {
    if (this.nonce === undefined) this.nonce = await this.pool.use((ep) => ep.provider.getTransactionCount(this.o.from, "pending"));
    let n = this.nonce;
    const held = new Set(this.store.pendingTxs().map((t) => t.nonce));
    while (held.has(n)) n++;
    return n;
  }

  /** The nonce manager forgets its count: the next send resyncs from the chain. */
  resyncNonce(): void {
    this.nonce = undefined;
  }

  /** EIP-1559 fees for the next block: maxFee = min(cap, 2 × baseFee + tip); undefined when the base fee is above the cap. */
  private async fees(): Promise<{ maxFeePerGas: bigint; maxPriorityFeePerGas: bigint; baseFee: bigint } | undefined> {
    const block = await this.pool.use((ep) => ep.provider.getBlock("latest"));
    const baseFee = block?.baseFeePerGas ?? 0n;
    if (baseFee > this.o.maxFeePerGas) return undefined;
    let maxFeePerGas = 2n * baseFee + this.o.priorityFee;
    if (maxFeePerGas > this.o.maxFeePerGas) maxFeePerGas = this.o.maxFeePerGas;
    const tip = this.o.priorityFee < maxFeePerGas - baseFee ? this.o.priorityFee : maxFeePerGas - baseFee;
    return { maxFeePerGas, maxPriorityFeePerGas: tip, baseFee };
  }

  async execute(a: Action): Promise<ExecResult> {
    const base = { kind: a.kind, ids: a.ids };
    const log = this.o.log.child({ action: a.kind, ids: a.ids.map(String) });
    const { to, data } = this.call(a);
    const tx = { from: this.o.from, to, data };
    // 1. simulate
    let gasLimit: bigint;
    try {
      const ret = await this.pool.use((ep) => ep.provider.call({ ...tx, blockTag: "latest" }));
      if (a.kind === "rebalanceBatch" && BigInt(ret) === 0n) {
        // rebalanceBatch skips instead of reverting: a batch that would rebalance nothing is the same benign no-op
        const reason = "NothingToRebalance (the batch would rebalance no account)";
        log.info({ reason }, "simulation: someone else got there first or nothing to do (benign no-op)");
        this.o.metrics?.actions.inc({ kind: a.kind, outcome: "benign" });
        return { ...base, outcome: "benign", reason };
      }
      gasLimit = await this.pool.use((ep) => ep.provider.estimateGas(tx));
    } catch (e) {
      if (!isRevert(e)) throw e;
      const reason = errorName(revertData(e));
      const benign = BENIGN.has(reason);
      if (benign) log.info({ reason }, "simulation reverted: someone else got there first or nothing to do (benign no-op)");
      else log.warn({ reason }, "simulation reverted: not sent");
      this.o.metrics?.actions.inc({ kind: a.kind, outcome: benign ? "benign" : "reverted" });
      return { ...base, outcome: benign ? "benign" : "reverted", reason };
    }
    gasLimit = (gasLimit * 12n) / 10n;
    // 2. price
    const fees = await this.fees();
    if (!fees) {
      log.info({ cap: this.o.maxFeePerGas }, "base fee above the cap: waiting");
      return { ...base, outcome: "skipped", reason: "base fee above maxFeePerGas" };
    }
    if (this.o.dryRun || !this.o.signer) {
      log.info({ gasLimit, maxFeePerGas: fees.maxFeePerGas, valueUsd: a.valueUsd, costUsd: a.costUsd }, "dry run: would send");
      this.o.metrics?.actions.inc({ kind: a.kind, outcome: "dry-run" });
      return { ...base, outcome: "dry-run" };
    }
    // 3. sign, journal, broadcast
    const nonce = await this.nextNonce();
    const signed = await this.o.signer.signTransaction({
      type: 2,
      chainId: this.o.chainId,
      nonce,
      to,
      data,
      value: 0n,
      gasLimit,
      maxFeePerGas: fees.maxFeePerGas,
      maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
    });
    const hash = Transaction.from(signed).hash!;
    try {
      this.store.journalSend(a.targets, { nonce, hash, maxFeePerGas: fees.maxFeePerGas, priorityFee: fees.maxPriorityFeePerGas, raw: signed, sentAt: this.now() });
    } catch (e) {
      if (e instanceof DuplicateActionError) {
        log.info({ reason: e.message }, "already sent: not sending twice");
        return { ...base, outcome: "duplicate", reason: e.message };
      }
      throw e;
    }
    this.nonce = nonce + 1;
    await this.o.hooks?.beforeBroadcast?.({ hash, nonce });
    try {
      await this.pool.use((ep) => ep.provider.broadcastTransaction(signed));
    } catch (e) {
      if (isTxRejection(e) || isRevert(e)) {
        const reason = String((e as Error).message).split("\n")[0].slice(0, 200);
        this.store.setStatus(hash, "dropped", null, reason);
        this.nonce = undefined; // resync from the chain
        log.warn({ hash, nonce, reason }, "transaction rejected by the node");
        return { ...base, outcome: "skipped", reason, hash, nonce };
      }
      // no endpoint answered: the transaction may be out; the journal keeps it pending and reconcile() rebroadcasts it
      this.store.setNote(hash, BROADCAST_FAILED);
      log.warn({ hash, nonce, error: String((e as Error).message).split("\n")[0] }, "broadcast failed on every endpoint: will rebroadcast");
    }
    await this.o.hooks?.afterBroadcast?.({ hash, nonce });
    log.info({ hash, nonce, gasLimit, maxFeePerGas: fees.maxFeePerGas, valueUsd: a.valueUsd, costUsd: a.costUsd }, "sent");
    this.o.metrics?.actions.inc({ kind: a.kind, outcome: "sent" });
    return { ...base, outcome: "sent", hash, nonce };
  }

  /** A receipt of `t` or of another transaction of the journal at its nonce (a replacement), if one was mined. */
  private async minedAtNonce(t: { hash: string; nonce: number }) {
    for (const h of [...new Set([t.hash, ...this.store.txsAtNonce(t.nonce).map((r) => r.hash)])]) {
      const r = await this.pool.use((ep) => ep.provider.getTransactionReceipt(h));
      if (r) return { hash: h, receipt: r };
    }
    return undefined;
  }

  private settleMined(t: { nonce: number; keys: string[] }, m: NonNullable<Awaited<ReturnType<Executor["minedAtNonce"]>>>, what: string) {
    const ok = m.receipt.status === 1;
    this.store.settleNonce(t.nonce, m.hash, ok, m.receipt.blockNumber, ok ? null : "reverted on chain (a competitor may have got there first)");
    this.o.log[ok ? "info" : "warn"](
      { hash: m.hash, nonce: t.nonce, block: m.receipt.blockNumber, gasUsed: m.receipt.gasUsed, keys: t.keys },
      ok ? what : `${what} but reverted`,
    );
    this.o.metrics?.actions.inc({ kind: t.keys[0].split(":")[0], outcome: ok ? "mined" : "failed" });
  }

  /**
   * Settles the journal's pending (and reorged) transactions against the chain: mined, dropped (nonce used by
   * another transaction, or unknown to the node: the nonce manager resyncs and the action is decided again), back in
   * the pool after a reorg, stuck (replaced), or never broadcast (rebroadcast).
   */
  async reconcile(): Promise<void> {
    const reorged = this.store.pendingTxs("reorged");
    const pending = this.store.pendingTxs();
    if (pending.length === 0 && reorged.length === 0) return;
    const latestNonce = await this.pool.use((ep) => ep.provider.getTransactionCount(this.o.from, "latest"));
    for (const t of reorged) {
      const m = await this.minedAtNonce(t);
      if (m) this.settleMined(t, m, "mined again on the new chain after a reorg");
      else if (latestNonce > t.nonce) {
        this.store.settleNonce(t.nonce, null, false, null);
        this.o.log.warn({ hash: t.hash, nonce: t.nonce, keys: t.keys }, "reorged out: the nonce was used by another transaction on the new chain");
        this.nonce = undefined;
      } else if (await this.pool.use((ep) => ep.provider.getTransaction(t.hash))) {
        this.store.setStatus(t.hash, "pending", null, "back in the pool after a reorg");
        this.o.log.info({ hash: t.hash, nonce: t.nonce, keys: t.keys }, "reorged out, back in the node's pool: pending again");
      } else {
        this.store.setStatus(t.hash, "dropped", null, "reorged out and not in the node's pool");
        this.o.log.warn({ hash: t.hash, nonce: t.nonce, keys: t.keys }, "reorged out and gone: the nonce is resynced and the action checked again");
        this.o.metrics?.actions.inc({ kind: t.keys[0].split(":")[0], outcome: "reorged" });
        this.nonce = undefined;
      }
    }
    for (const t of pending) {
      // did any transaction at this nonce (the original or a replacement) get mined?
      const m = await this.minedAtNonce(t);
      if (m) {
        this.settleMined(t, m, "mined");
        continue;
      }
      if (latestNonce > t.nonce) {
        this.store.settleNonce(t.nonce, null, false, null);
        this.o.log.warn({ hash: t.hash, nonce: t.nonce }, "dropped: the nonce was used by another transaction");
        this.nonce = undefined;
        continue;
      }
      const known = await this.pool.use((ep) => ep.provider.getTransaction(t.hash));
      if (!known) {
        if (t.note === BROADCAST_FAILED && this.o.signer) {
          // never reached a node: send the signed bytes again
          this.o.log.info({ hash: t.hash, nonce: t.nonce }, "never broadcast: rebroadcasting");
          await this.pool
            .use((ep) => ep.provider.broadcastTransaction(t.raw))
            .then(() => this.store.setNote(t.hash, null))
            .catch((e) => this.o.log.warn({ error: String(e.message).split("\n")[0] }, "rebroadcast failed"));
        } else {
          // the node lost it (dropped from its pool, or a crash before the broadcast): the nonce is free again
          this.store.setStatus(t.hash, "dropped", null, "not in the node's pool");
          this.o.log.warn({ hash: t.hash, nonce: t.nonce, keys: t.keys }, "dropped from the node's pool: the nonce is resynced and the action checked again");
          this.nonce = undefined;
        }
        continue;
      }
      if (this.now() - t.sentAt >= this.o.stuckAfterMs) await this.replace(t);
    }
  }

  private async replace(t: ReturnType<Store["pendingTxs"]>[number]): Promise<void> {
    if (!this.o.signer || this.o.dryRun) return;
    const cap = this.o.maxFeePerGas;
    if (t.maxFeePerGas >= cap) {
      this.o.log.warn({ hash: t.hash, nonce: t.nonce, maxFeePerGas: t.maxFeePerGas }, "stuck at the fee cap: waiting");
      return;
    }
    const bump = (v: bigint) => (v * BigInt(100 + this.o.bumpPercent) + 99n) / 100n;
    const maxFeePerGas = bump(t.maxFeePerGas) < cap ? bump(t.maxFeePerGas) : cap;
    let tip = bump(t.priorityFee);
    if (tip > maxFeePerGas) tip = maxFeePerGas;
    const old = Transaction.from(t.raw);
    const signed = await this.o.signer.signTransaction({
      type: 2,
      chainId: this.o.chainId,
      nonce: t.nonce,
      to: old.to,
      data: old.data,
      value: 0n,
      gasLimit: old.gasLimit,
      maxFeePerGas,
      maxPriorityFeePerGas: tip,
    });
    const hash = Transaction.from(signed).hash!;
    this.store.journalSend(t.targets, { nonce: t.nonce, hash, maxFeePerGas, priorityFee: tip, raw: signed, sentAt: this.now() }, t.hash);
    try {
      await this.pool.use((ep) => ep.provider.broadcastTransaction(signed));
      this.o.log.info({ old: t.hash, hash, nonce: t.nonce, maxFeePerGas, priorityFee: tip }, "stuck: replaced at the same nonce with a bumped fee");
    } catch (e) {
      this.o.log.warn({ old: t.hash, hash, nonce: t.nonce, error: String((e as Error).message).split("\n")[0] }, "replacement not accepted");
      if (isTxRejection(e)) {
        // the original stays the live one
        this.store.tx(() => {
          this.store.setStatus(hash, "dropped", null, "replacement rejected");
          this.store.db.prepare("UPDATE journal SET status = 'pending' WHERE hash = ? AND status = 'replaced'").run(t.hash);
        });
      }
    }
  }
}
