/**
 * The keeper's state in SQLite (better-sqlite3, WAL): the account registry the indexer builds from engine events, its
 * cursor and the recent block hashes it checks for reorgs, the pending orders, and the journal of every transaction
 * sent. The journal is written before a transaction is broadcast, and a unique index refuses a second live
 * (pending or mined) entry for the same action in the same round of state: a restart never sends anything twice.
 */
import fs from "node:fs";
import path from "node:path";
import Database from "better-sqlite3";

export interface AccountRow {
  id: bigint;
  owner: string;
  hasPosition: boolean;
  /** its settlement balance is negative (last SettlementChanged): it owes the pool */
  owes: boolean;
  optedIn: boolean;
  /** policy (WAD), 0 when not opted in */
  triggerRatio: bigint;
  targetRatio: bigint;
  releaseRatio: bigint;
  maxFeeUsd: bigint;
  actions: number;
  /** last block an event touched the account: the account's round of state */
  updatedBlock: number;
}

export interface OrderRow {
  id: bigint;
  accountId: bigint;
  marketId: bigint;
  requestedBlock: number;
  deadline: bigint;
}

/**
 * pending: sent, not mined; mined / failed: mined (failed = reverted on chain); replaced: superseded at its nonce by a
 * bumped copy; dropped: will never be mined (its nonce went to another transaction, or the node lost it); reorged:
 * was mined (or failed) in a block a reorg dropped — live until the executor re-checks it against the new chain
 * (re-mined, back in the pool, or dropped, and then the strategy decides again whether the action is still needed).
 */
export type JournalStatus = "pending" | "mined" | "failed" | "replaced" | "dropped" | "reorged";

export interface JournalRow {
  id: number;
  /** the action, e.g. "rebalance:12", "liquidate:3", "order:7" */
  key: string;
  /** the round of state the action was decided on (the account's updatedBlock; "0" for orders) */
  round: string;
  nonce: number;
  hash: string;
  status: JournalStatus;
  sentAt: number;
  block: number | null;
  maxFeePerGas: bigint;
  priorityFee: bigint;
  /** raw signed transaction: rebroadcast after a restart */
  raw: string;
  note: string | null;
}

export class DuplicateActionError extends Error {
  constructor(readonly key: string, readonly round: string) {
    super(`action ${key} is already pending or mined for round ${round}`);
  }
}

export const MIGRATIONS: string[] = [
  `CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
   CREATE TABLE accounts (
     id TEXT PRIMARY KEY, idnum INTEGER NOT NULL, owner TEXT NOT NULL, has_position INTEGER NOT NULL DEFAULT 0,
     opted_in INTEGER NOT NULL DEFAULT 0, trigger_ratio TEXT NOT NULL DEFAULT '0', target_ratio TEXT NOT NULL DEFAULT '0',
     release_ratio TEXT NOT NULL DEFAULT '0', max_fee_usd TEXT NOT NULL DEFAULT '0', actions INTEGER NOT NULL DEFAULT 0,
     updated_block INTEGER NOT NULL);
   CREATE INDEX accounts_num ON accounts(idnum);
   CREATE TABLE positions (account_id TEXT NOT NULL, market_id TEXT NOT NULL, size TEXT NOT NULL, PRIMARY KEY (account_id, market_id));
   CREATE TABLE orders (id TEXT PRIMARY KEY, idnum INTEGER NOT NULL, account_id TEXT NOT NULL, market_id TEXT NOT NULL,
     requested_block INTEGER NOT NULL, deadline TEXT NOT NULL, settled_block INTEGER);
   CREATE TABLE cursor (id INTEGER PRIMARY KEY CHECK (id = 1), block INTEGER NOT NULL, hash TEXT NOT NULL);
   CREATE TABLE blocks (number INTEGER PRIMARY KEY, hash TEXT NOT NULL);
   CREATE TABLE journal (
     id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, round TEXT NOT NULL, nonce INTEGER NOT NULL,
     hash TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending','mined','failed','replaced','dropped')),
     sent_at INTEGER NOT NULL, block INTEGER, max_fee TEXT NOT NULL, priority_fee TEXT NOT NULL, raw TEXT NOT NULL, note TEXT);
   CREATE UNIQUE INDEX journal_live ON journal(key, round) WHERE status IN ('pending','mined');
   CREATE INDEX journal_hash ON journal(hash);
   CREATE INDEX journal_nonce ON journal(nonce);`,
  // 2: the 'reorged' status (SQLite cannot alter a CHECK: the table is rebuilt); a reorged entry stays live
  `CREATE TABLE journal_v2 (
     id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, round TEXT NOT NULL, nonce INTEGER NOT NULL,
     hash TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('pending','mined','failed','replaced','dropped','reorged')),
     sent_at INTEGER NOT NULL, block INTEGER, max_fee TEXT NOT NULL, priority_fee TEXT NOT NULL, raw TEXT NOT NULL, note TEXT);
   INSERT INTO journal_v2 (id, key, round, nonce, hash, status, sent_at, block, max_fee, priority_fee, raw, note)
     SELECT id, key, round, nonce, hash, status, sent_at, block, max_fee, priority_fee, raw, note FROM journal;
   DROP TABLE journal;
   ALTER TABLE journal_v2 RENAME TO journal;
   CREATE UNIQUE INDEX journal_live ON journal(key, round) WHERE status IN ('pending','mined','reorged');
   CREATE INDEX journal_hash ON journal(hash);
   CREATE INDEX journal_nonce ON journal(nonce);`,
  // 3: accounts that owe the pool (negative settlement balance): the collateral sales' candidates
  `ALTER TABLE accounts ADD COLUMN owes INTEGER NOT NULL DEFAULT 0;`,
  // 4: the order in which accounts' own state changed (the health mirror re-reads what changed since its last read)
  `ALTER TABLE accounts ADD COLUMN state_seq INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX accounts_state_seq ON accounts(state_seq);`,
];

const num = (id: bigint) => (id <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(id) : Number.MAX_SAFE_INTEGER);

export class Store {
  readonly db: Database.Database;

  constructor(file: string) {
    if (file !== ":memory:") fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    this.db = new Database(file);
    this.db.pragma("journal_mode = WAL");
    this.db.pragma("synchronous = NORMAL");
    this.db.pragma("foreign_keys = ON");
    this.migrate();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }

  private migrate(): void {
    this.db.exec("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    const done = new Set((this.db.prepare("SELECT version FROM migrations").all() as { version: number }[]).map((r) => r.version));
    MIGRATIONS.forEach((sql, i) => {
      const version = i + 1;
      if (done.has(version)) return;
      this.db.transaction(() => {
        this.db.exec(sql);
        this.db.prepare("INSERT INTO migrations (version, applied_at) VALUES (?, ?)").run(version, Date.now());
      })();
    });
  }

  schemaVersion(): number {
    return (this.db.prepare("SELECT MAX(version) AS v FROM migrations").get() as { v: number }).v;
  }

  // ------------------------------------------------------------------ meta

  getMeta(key: string): string | undefined {
    return (this.db.prepare("SELECT value FROM meta WHERE key = ?").get(key) as { value: string } | undefined)?.value;
  }

  setMeta(key: string, value: string): void {
    this.db.prepare("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value").run(key, value);
  }

  /** Binds the DB to one engine on one chain: a DB of another deployment is refused (one line). */
  bindTo(chainId: number, engine: string): void {
    const want = `${chainId}:${engine.toLowerCase()}`;
    const have = this.getMeta("deployment");
    if (have === undefined) this.setMeta("deployment", want);
    else if (have !== want) {
      throw new Error(`the keeper DB belongs to ${have}, not ${want}: point dbPath at another file`);
    }
  }

  // ------------------------------------------------------------------ cursor and block hashes

  cursor(): { block: number; hash: string } | undefined {
    return this.db.prepare("SELECT block, hash FROM cursor WHERE id = 1").get() as { block: number; hash: string } | undefined;
  }

  setCursor(block: number, hash: string): void {
    this.db
      .prepare("INSERT INTO cursor (id, block, hash) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET block = excluded.block, hash = excluded.hash")
      .run(block, hash);
  }

  recordBlock(number: number, hash: string): void {
    this.db.prepare("INSERT INTO blocks (number, hash) VALUES (?, ?) ON CONFLICT(number) DO UPDATE SET hash = excluded.hash").run(number, hash);
  }

  blockHash(number: number): string | undefined {
    return (this.db.prepare("SELECT hash FROM blocks WHERE number = ?").get(number) as { hash: string } | undefined)?.hash;
  }

  /** Recorded block hashes from `from` up, newest first. */
  recentBlocks(from: number): { number: number; hash: string }[] {
    return this.db.prepare("SELECT number, hash FROM blocks WHERE number >= ? ORDER BY number DESC").all(from) as { number: number; hash: string }[];
  }

  pruneBlocks(below: number): void {
    this.db.prepare("DELETE FROM blocks WHERE number < ?").run(below);
  }

  /** Forgets recorded hashes above `block` (a reorg rewinds the cursor to it). */
  dropBlocksAbove(block: number): void {
    this.db.prepare("DELETE FROM blocks WHERE number > ?").run(block);
  }

  /**
   * A reorg back to block `fork` (the newest block still on the chain): forgets the hashes above it; every journal
   * entry mined (or failed) above it becomes 'reorged' (the executor re-checks it); the orders settled above it are
   * pending again; the accounts touched above it get `fork` as their round and count as having a position until an
   * event says otherwise (re-reading the new chain re-applies its own events; scanning an account without a position
   * costs nothing). Returns the hashes of the reorged transactions.
   */
  rewindTo(fork: number): string[] {
    return this.tx(() => {
      const hashes = (
        this.db.prepare("SELECT DISTINCT hash FROM journal WHERE status IN ('mined','failed') AND block > ? ORDER BY nonce").all(fork) as { hash: string }[]
      ).map((r) => r.hash);
      this.db
        .prepare("UPDATE journal SET status = 'reorged', block = NULL, note = 'mined in block ' || block || ', dropped by a reorg' WHERE status IN ('mined','failed') AND block > ?")
        .run(fork);
      this.db.prepare("UPDATE orders SET settled_block = NULL WHERE settled_block > ?").run(fork);
      // the dropped blocks' state is unknown: scanned again (positions, and a debt the dropped blocks may have repaid)
      // ... and their own state too (the health mirror reads them again)
      const next = (this.db.prepare("SELECT COALESCE(MAX(state_seq), 0) + 1 AS s FROM accounts").get() as { s: number }).s;
      this.db.prepare("UPDATE accounts SET updated_block = ?, has_position = 1, owes = 1, state_seq = ? WHERE updated_block > ?").run(fork, next, fork);
      this.dropBlocksAbove(fork);
      const c = this.cursor();
      if (c && c.block > fork) this.db.prepare("UPDATE cursor SET block = ?, hash = ? WHERE id = 1").run(fork, this.blockHash(fork) ?? "");
      return hashes;
    });
  }

  /** Runs `fn` in one SQLite transaction. */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  // ------------------------------------------------------------------ accounts

  upsertAccount(id: bigint, owner: string, block: number): void {
    this.db
      .prepare(
        `INSERT INTO accounts (id, idnum, owner, updated_block) VALUES (?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET owner = excluded.owner, updated_block = MAX(updated_block, excluded.updated_block)`,
      )
      .run(id.toString(), num(id), owner, block);
  }

  /**
   * Marks an event on the account at `block` (its round of state advances). Creates the row if unknown. `ownState`
   * (default): the event may have moved the account's own valuation state (settlement, positions, margins), so it gets
   * the next state sequence number (`changedSince`); false for events that move only its reserve.
   */
  touchAccount(id: bigint, block: number, ownState = true): void {
    this.db
      .prepare(
        `INSERT INTO accounts (id, idnum, owner, updated_block) VALUES (?, ?, '', ?)
         ON CONFLICT(id) DO UPDATE SET updated_block = MAX(updated_block, excluded.updated_block)`,
      )
      .run(id.toString(), num(id), block);
    if (ownState) this.db.prepare(`UPDATE accounts SET state_seq = (SELECT MAX(state_seq) FROM accounts) + 1 WHERE id = ?`).run(id.toString());
  }

  /** Ids of the accounts whose own state changed after sequence number `seq`, and the latest sequence number. */
  changedSince(seq: number): { ids: bigint[]; seq: number } {
    const ids = (this.db.prepare("SELECT id FROM accounts WHERE state_seq > ? ORDER BY idnum, id").all(seq) as { id: string }[]).map((r) => BigInt(r.id));
    const last = (this.db.prepare("SELECT COALESCE(MAX(state_seq), 0) AS s FROM accounts").get() as { s: number }).s;
    return { ids, seq: last };
  }

  setPosition(accountId: bigint, marketId: bigint, size: bigint, block: number, ownState = true): void {
    this.touchAccount(accountId, block, ownState);
    if (size === 0n) this.db.prepare("DELETE FROM positions WHERE account_id = ? AND market_id = ?").run(accountId.toString(), marketId.toString());
    else
      this.db
        .prepare("INSERT INTO positions (account_id, market_id, size) VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET size = excluded.size")
        .run(accountId.toString(), marketId.toString(), size.toString());
    const open = (this.db.prepare("SELECT COUNT(*) AS n FROM positions WHERE account_id = ?").get(accountId.toString()) as { n: number }).n;
    this.db.prepare("UPDATE accounts SET has_position = ? WHERE id = ?").run(open > 0 ? 1 : 0, accountId.toString());
  }

  /** The account's settlement balance is now negative (`owes`) or not (an absolute state: SettlementChanged). */
  setOwes(accountId: bigint, owes: boolean, block: number, ownState = true): void {
    this.touchAccount(accountId, block, ownState);
    this.db.prepare("UPDATE accounts SET owes = ? WHERE id = ?").run(owes ? 1 : 0, accountId.toString());
  }

  setPolicy(
    accountId: bigint,
    p: { actions: number; triggerRatio: bigint; targetRatio: bigint; releaseRatio: bigint; maxFeeUsd: bigint },
    block: number,
  ): void {
    this.touchAccount(accountId, block, false); // thresholds, not valuation state
    this.db
      .prepare(
        `UPDATE accounts SET opted_in = ?, actions = ?, trigger_ratio = ?, target_ratio = ?, release_ratio = ?, max_fee_usd = ? WHERE id = ?`,
      )
      .run(
        p.actions !== 0 ? 1 : 0,
        p.actions,
        p.triggerRatio.toString(),
        p.targetRatio.toString(),
        p.releaseRatio.toString(),
        p.maxFeeUsd.toString(),
        accountId.toString(),
      );
  }

  account(id: bigint): AccountRow | undefined {
    const r = this.db.prepare("SELECT * FROM accounts WHERE id = ?").get(id.toString());
    return r ? toAccount(r as RawAccount) : undefined;
  }

  /** Every account, by id. */
  accounts(opts: { withPosition?: boolean } = {}): AccountRow[] {
    const sql = `SELECT * FROM accounts ${opts.withPosition ? "WHERE has_position = 1" : ""} ORDER BY idnum, id`;
    return (this.db.prepare(sql).all() as RawAccount[]).map(toAccount);
  }

  /** Accounts that owe the pool and hold no position (a liquidation closed them): what a collateral sale repays. */
  owingAccounts(): AccountRow[] {
    return (this.db.prepare("SELECT * FROM accounts WHERE owes = 1 AND has_position = 0 ORDER BY idnum, id").all() as RawAccount[]).map(toAccount);
  }

  accountCount(): number {
    return (this.db.prepare("SELECT COUNT(*) AS n FROM accounts").get() as { n: number }).n;
  }

  // ------------------------------------------------------------------ orders

  addOrder(o: OrderRow): void {
    this.db
      .prepare(
        `INSERT INTO orders (id, idnum, account_id, market_id, requested_block, deadline) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT(id) DO UPDATE SET account_id = excluded.account_id, market_id = excluded.market_id,
           requested_block = excluded.requested_block, deadline = excluded.deadline`,
      )
      .run(o.id.toString(), num(o.id), o.accountId.toString(), o.marketId.toString(), o.requestedBlock, o.deadline.toString());
  }

  settleOrder(id: bigint, block: number): void {
    this.db.prepare("UPDATE orders SET settled_block = ? WHERE id = ?").run(block, id.toString());
  }

  /** Orders requested and not settled, oldest first. */
  pendingOrders(): OrderRow[] {
    return (this.db.prepare("SELECT * FROM orders WHERE settled_block IS NULL ORDER BY idnum, id").all() as RawOrder[]).map((r) => ({
      id: BigInt(r.id),
      accountId: BigInt(r.account_id),
      marketId: BigInt(r.market_id),
      requestedBlock: r.requested_block,
      deadline: BigInt(r.deadline),
    }));
  }

  // ------------------------------------------------------------------ journal

  /**
   * Records transaction `hash` (nonce, fees, raw bytes) as pending for each action of `actions`, atomically, before it
   * is broadcast. Throws DuplicateActionError when one of them is already pending or mined in the same round.
   */
  journalSend(
    actions: { key: string; round: string }[],
    tx: { nonce: number; hash: string; maxFeePerGas: bigint; priorityFee: bigint; raw: string; sentAt?: number },
    replacing?: string,
  ): void {
    const insert = this.db.prepare(
      `INSERT INTO journal (key, round, nonce, hash, status, sent_at, max_fee, priority_fee, raw) VALUES (?, ?, ?, ?, 'pending', ?, ?, ?, ?)`,
    );
    this.tx(() => {
      if (replacing) this.db.prepare("UPDATE journal SET status = 'replaced' WHERE hash = ? AND status = 'pending'").run(replacing);
      for (const a of actions) {
        try {
          insert.run(a.key, a.round, tx.nonce, tx.hash, tx.sentAt ?? Date.now(), tx.maxFeePerGas.toString(), tx.priorityFee.toString(), tx.raw);
        } catch (e) {
          if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") throw new DuplicateActionError(a.key, a.round);
          throw e;
        }
      }
    });
  }

  /** True when `key` has a pending, mined or reorged entry for `round`. */
  isLive(key: string, round: string): boolean {
    return this.db.prepare("SELECT 1 FROM journal WHERE key = ? AND round = ? AND status IN ('pending','mined','reorged')").get(key, round) !== undefined;
  }

  /**
   * True when `key` has a pending entry, whatever the round (an action in flight is never doubled), or a reorged one
   * (not re-checked against the new chain yet).
   */
  isPending(key: string): boolean {
    return this.db.prepare("SELECT 1 FROM journal WHERE key = ? AND status IN ('pending','reorged')").get(key) !== undefined;
  }

  /** Sets (or clears) the note of transaction `hash`. */
  setNote(hash: string, note: string | null): void {
    this.db.prepare("UPDATE journal SET note = ? WHERE id IN (SELECT MAX(id) FROM journal WHERE hash = ? GROUP BY key)").run(note, hash);
  }

  /**
   * Sets the status of transaction `hash`: of its latest entry per action (a byte-identical transaction sent again
   * after it was dropped — same nonce, fees and calldata — has the same hash: the earlier entries stay history).
   */
  setStatus(hash: string, status: JournalStatus, block: number | null = null, note: string | null = null): void {
    this.db
      .prepare(
        `UPDATE journal SET status = ?, block = COALESCE(?, block), note = COALESCE(?, note)
         WHERE id IN (SELECT MAX(id) FROM journal WHERE hash = ? GROUP BY key)`,
      )
      .run(status, block, note, hash);
  }

  /**
   * Nonce `nonce` was consumed by `minedHash`: that transaction is mined (or failed: `ok` false), every other pending,
   * replaced or reorged transaction at that nonce is dropped.
   */
  settleNonce(nonce: number, minedHash: string | null, ok: boolean, block: number | null, note: string | null = null): void {
    this.tx(() => {
      this.db
        .prepare("UPDATE journal SET status = 'dropped' WHERE nonce = ? AND status IN ('pending','replaced','reorged') AND hash != ?")
        .run(nonce, minedHash ?? "");
      if (minedHash) this.setStatus(minedHash, ok ? "mined" : "failed", block, note);
    });
  }

  /** Live transactions: pending rows grouped by hash (one row per transaction, its action keys listed). */
  pendingTxs(status: "pending" | "reorged" = "pending"): (JournalRow & { keys: string[]; targets: { key: string; round: string }[] })[] {
    const rows = (this.db.prepare("SELECT * FROM journal WHERE status = ? ORDER BY nonce, id").all(status) as RawJournal[]).map(toJournal);
    const byHash = new Map<string, JournalRow & { keys: string[]; targets: { key: string; round: string }[] }>();
    for (const r of rows) {
      const t = byHash.get(r.hash);
      if (t) {
        t.keys.push(r.key);
        t.targets.push({ key: r.key, round: r.round });
      } else byHash.set(r.hash, { ...r, keys: [r.key], targets: [{ key: r.key, round: r.round }] });
    }
    return [...byHash.values()];
  }

  /** Every row with transaction `hash` or at `nonce` (replaced ones included). */
  txsAtNonce(nonce: number): JournalRow[] {
    return (this.db.prepare("SELECT * FROM journal WHERE nonce = ? ORDER BY id").all(nonce) as RawJournal[]).map(toJournal);
  }

  journal(): JournalRow[] {
    return (this.db.prepare("SELECT * FROM journal ORDER BY id").all() as RawJournal[]).map(toJournal);
  }
}

interface RawAccount {
  id: string;
  owner: string;
  has_position: number;
  owes: number;
  opted_in: number;
  trigger_ratio: string;
  target_ratio: string;
  release_ratio: string;
  max_fee_usd: string;
  actions: number;
  updated_block: number;
}
interface RawOrder {
  id: string;
  account_id: string;
  market_id: string;
  requested_block: number;
  deadline: string;
}
interface RawJournal {
  id: number;
  key: string;
  round: string;
  nonce: number;
  hash: string;
  status: JournalStatus;
  sent_at: number;
  block: number | null;
  max_fee: string;
  priority_fee: string;
  raw: string;
  note: string | null;
}

function toAccount(r: RawAccount): AccountRow {
  return {
    id: BigInt(r.id),
    owner: r.owner,
    hasPosition: r.has_position === 1,
    owes: r.owes === 1,
    optedIn: r.opted_in === 1,
    triggerRatio: BigInt(r.trigger_ratio),
    targetRatio: BigInt(r.target_ratio),
    releaseRatio: BigInt(r.release_ratio),
    maxFeeUsd: BigInt(r.max_fee_usd),
    actions: r.actions,
    updatedBlock: r.updated_block,
  };
}

function toJournal(r: RawJournal): JournalRow {
  return {
    id: r.id,
    key: r.key,
    round: r.round,
    nonce: r.nonce,
    hash: r.hash,
    status: r.status,
    sentAt: r.sent_at,
    block: r.block,
    maxFeePerGas: BigInt(r.max_fee),
    priorityFee: BigInt(r.priority_fee),
    raw: r.raw,
    note: r.note,
  };
}
