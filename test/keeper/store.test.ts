import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";

import Database from "better-sqlite3";

import { DuplicateActionError, MIGRATIONS, Store } from "../../keeper/store";

const tmpDb = () => path.join(fs.mkdtempSync(path.join(os.tmpdir(), "keeper-store-")), "keeper.db");
const TX = (nonce: number, hash: string) => ({ nonce, hash, maxFeePerGas: 2n * 10n ** 9n, priorityFee: 10n ** 9n, raw: "0x02", sentAt: 1000 });

describe("keeper store", () => {
  it("migrates once, uses WAL, and keeps everything across reopen", () => {
    const file = tmpDb();
    const s = new Store(file);
    expect(s.schemaVersion()).to.equal(4);
    expect(s.db.pragma("journal_mode", { simple: true })).to.equal("wal");
    s.bindTo(31337, "0xAbC0000000000000000000000000000000000001");
    s.upsertAccount(1n, "0x1111111111111111111111111111111111111111", 10);
    s.setCursor(12, "0xaa");
    s.recordBlock(12, "0xaa");
    s.close();

    const t = new Store(file);
    expect(t.schemaVersion()).to.equal(4);
    expect(t.cursor()).to.deep.equal({ block: 12, hash: "0xaa" });
    expect(t.blockHash(12)).to.equal("0xaa");
    expect(t.account(1n)!.owner).to.equal("0x1111111111111111111111111111111111111111");
    t.bindTo(31337, "0xabc0000000000000000000000000000000000001");
    expect(() => t.bindTo(1, "0xabc0000000000000000000000000000000000001")).to.throw(
      "the keeper DB belongs to 31337:0xabc0000000000000000000000000000000000001, not 1:0xabc0000000000000000000000000000000000001: point dbPath at another file",
    );
    t.close();
  });

  it("tracks positions, policies and each account's round of state", () => {
    const s = new Store(tmpDb());
    s.upsertAccount(2n, "0x2", 5);
    s.upsertAccount(10n, "0x10", 5);
    s.setPosition(2n, 0n, 10n ** 18n, 7);
    s.setPosition(2n, 1n, -(10n ** 18n), 8);
    s.setPolicy(2n, { actions: 3, triggerRatio: 2n * 10n ** 18n, targetRatio: 3n * 10n ** 18n, releaseRatio: 0n, maxFeeUsd: 50n * 10n ** 18n }, 9);
    expect(s.account(2n)).to.deep.equal({
      id: 2n, owner: "0x2", hasPosition: true, owes: false, optedIn: true, triggerRatio: 2n * 10n ** 18n, targetRatio: 3n * 10n ** 18n,
      releaseRatio: 0n, maxFeeUsd: 50n * 10n ** 18n, actions: 3, updatedBlock: 9,
    });
    s.setPosition(2n, 0n, 0n, 11);
    expect(s.account(2n)!.hasPosition).to.equal(true);
    s.setPosition(2n, 1n, 0n, 12);
    expect(s.account(2n)!.hasPosition).to.equal(false);
    expect(s.account(2n)!.updatedBlock).to.equal(12);
    // re-reading an older block (reorg window) never moves the round back
    s.touchAccount(2n, 6);
    expect(s.account(2n)!.updatedBlock).to.equal(12);
    // numeric order, not text order
    expect(s.accounts().map((a) => a.id)).to.deep.equal([2n, 10n]);
    s.setPolicy(2n, { actions: 0, triggerRatio: 0n, targetRatio: 0n, releaseRatio: 0n, maxFeeUsd: 0n }, 13);
    expect(s.account(2n)!.optedIn).to.equal(false);
  });

  it("numbers each change of an account's own state (the health mirror's re-reads): not reserve-only events nor policies; a rewind renumbers", () => {
    const s = new Store(tmpDb());
    expect(s.changedSince(0)).to.deep.equal({ ids: [], seq: 0 });
    s.upsertAccount(1n, "0x1", 5); // created: no state yet
    s.upsertAccount(2n, "0x2", 5);
    expect(s.changedSince(0)).to.deep.equal({ ids: [], seq: 0 });
    s.setPosition(1n, 0n, 10n ** 18n, 6); // 1
    s.setOwes(2n, false, 7); // 2
    s.touchAccount(1n, 8); // 3: margin posted, say
    expect(s.changedSince(0)).to.deep.equal({ ids: [1n, 2n], seq: 3 });
    expect(s.changedSince(2)).to.deep.equal({ ids: [1n], seq: 3 });
    // a reserve deposit, a policy, a log read again: the round advances, the state sequence does not
    s.touchAccount(2n, 9, false);
    s.setPolicy(2n, { actions: 1, triggerRatio: 2n * 10n ** 18n, targetRatio: 3n * 10n ** 18n, releaseRatio: 0n, maxFeeUsd: 0n }, 10);
    s.setPosition(1n, 0n, 10n ** 18n, 6, false);
    expect(s.changedSince(3)).to.deep.equal({ ids: [], seq: 3 });
    expect(s.account(2n)!.updatedBlock).to.equal(10);
    // a reorg to block 8: account 2's events above it are gone, its state is read again
    s.rewindTo(8);
    expect(s.changedSince(3)).to.deep.equal({ ids: [2n], seq: 4 });
  });

  it("keeps pending orders oldest first until settled", () => {
    const s = new Store(tmpDb());
    s.addOrder({ id: 11n, accountId: 1n, marketId: 0n, requestedBlock: 5, deadline: 100n });
    s.addOrder({ id: 9n, accountId: 2n, marketId: 1n, requestedBlock: 4, deadline: 100n });
    expect(s.pendingOrders().map((o) => o.id)).to.deep.equal([9n, 11n]);
    s.settleOrder(9n, 6);
    expect(s.pendingOrders().map((o) => o.id)).to.deep.equal([11n]);
  });

  it("never journals the same action twice while one is pending or mined in the same round", () => {
    const s = new Store(tmpDb());
    s.journalSend([{ key: "rebalance:1", round: "7" }, { key: "rebalance:2", round: "7" }], TX(0, "0xa"));
    expect(() => s.journalSend([{ key: "rebalance:2", round: "7" }], TX(1, "0xb"))).to.throw(DuplicateActionError, "action rebalance:2 is already pending or mined for round 7");
    // the failed insert left nothing behind
    expect(s.journal().map((r) => r.hash)).to.deep.equal(["0xa", "0xa"]);
    expect(s.isLive("rebalance:1", "7")).to.equal(true);
    expect(s.isPending("rebalance:1")).to.equal(true);
    expect(s.pendingTxs().map((t) => [t.hash, t.nonce, t.keys])).to.deep.equal([["0xa", 0, ["rebalance:1", "rebalance:2"]]]);

    // a replacement at the same nonce takes over the action
    s.journalSend([{ key: "rebalance:1", round: "7" }, { key: "rebalance:2", round: "7" }], TX(0, "0xc"), "0xa");
    expect(s.txsAtNonce(0).map((r) => [r.hash, r.status])).to.deep.equal([
      ["0xa", "replaced"], ["0xa", "replaced"], ["0xc", "pending"], ["0xc", "pending"],
    ]);
    // the original was mined after all: it wins, the replacement is dropped
    s.settleNonce(0, "0xa", true, 20);
    expect(s.txsAtNonce(0).map((r) => [r.hash, r.status, r.block])).to.deep.equal([
      ["0xa", "mined", 20], ["0xa", "mined", 20], ["0xc", "dropped", null], ["0xc", "dropped", null],
    ]);
    expect(s.isLive("rebalance:1", "7")).to.equal(true);
    expect(s.isPending("rebalance:1")).to.equal(false);
    expect(() => s.journalSend([{ key: "rebalance:1", round: "7" }], TX(1, "0xd"))).to.throw(DuplicateActionError);
    // a new round of state (the account changed) allows the action again
    s.journalSend([{ key: "rebalance:1", round: "21" }], TX(1, "0xd"));
    // a transaction that reverted on chain does not block a retry
    s.settleNonce(1, "0xd", false, 22, "NothingToRebalance");
    expect(s.journal().at(-1)!.status).to.equal("failed");
    expect(s.journal().at(-1)!.note).to.equal("NothingToRebalance");
    s.journalSend([{ key: "rebalance:1", round: "21" }], TX(2, "0xe"));
    expect(s.pendingTxs().map((t) => t.hash)).to.deep.equal(["0xe"]);
  });
  it("migrates a version-1 DB to the latest (2: the 'reorged' status; 3: owing accounts; 4: the state sequence), keeping the journal", () => {
    const file = tmpDb();
    const v1 = new Database(file);
    v1.exec("CREATE TABLE migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)");
    v1.exec(MIGRATIONS[0]);
    v1.prepare("INSERT INTO migrations (version, applied_at) VALUES (1, 0)").run();
    v1.prepare(
      "INSERT INTO journal (key, round, nonce, hash, status, sent_at, max_fee, priority_fee, raw) VALUES ('rebalance:1', '7', 0, '0xa', 'mined', 1000, '2', '1', '0x02')",
    ).run();
    expect(() => v1.prepare("UPDATE journal SET status = 'reorged'").run()).to.throw(/CHECK constraint/);
    v1.close();
    const s = new Store(file);
    expect(s.schemaVersion()).to.equal(4);
    expect(s.journal().map((j) => [j.id, j.key, j.round, j.hash, j.status])).to.deep.equal([[1, "rebalance:1", "7", "0xa", "mined"]]);
    s.setStatus("0xa", "reorged");
    expect(() => s.journalSend([{ key: "rebalance:1", round: "7" }], TX(1, "0xb"))).to.throw(DuplicateActionError);
    s.journalSend([{ key: "rebalance:2", round: "7" }], TX(1, "0xb"));
    expect(s.journal().map((j) => [j.id, j.status])).to.deep.equal([[1, "reorged"], [2, "pending"]]);
    s.close();
  });

  it("a reorg rewinds to the fork: what was mined above it is reorged (live until re-checked), orders and accounts re-read", () => {
    const s = new Store(tmpDb());
    s.upsertAccount(1n, "0x1111111111111111111111111111111111111111", 5);
    s.setPosition(1n, 1n, 10n, 6);
    s.setPosition(1n, 1n, 0n, 12); // closed in a block the reorg drops
    s.addOrder({ id: 7n, accountId: 1n, marketId: 1n, requestedBlock: 8, deadline: 100n });
    s.settleOrder(7n, 11);
    for (const b of [9, 10, 12]) s.recordBlock(b, `0x${b}`);
    s.setCursor(12, "0x12");
    s.journalSend([{ key: "rebalance:1", round: "5" }], TX(0, "0xa"));
    s.settleNonce(0, "0xa", true, 11);
    s.journalSend([{ key: "liquidate:2", round: "3" }], TX(1, "0xb"));
    s.settleNonce(1, "0xb", true, 9);

    expect(s.rewindTo(10)).to.deep.equal(["0xa"]);
    expect(s.journal().map((j) => [j.key, j.status, j.block, j.note])).to.deep.equal([
      ["rebalance:1", "reorged", null, "mined in block 11, dropped by a reorg"],
      ["liquidate:2", "mined", 9, null],
    ]);
    expect(s.isPending("rebalance:1")).to.equal(true);
    expect(s.isLive("rebalance:1", "5")).to.equal(true);
    expect(s.pendingTxs("reorged").map((t) => [t.hash, t.keys])).to.deep.equal([["0xa", ["rebalance:1"]]]);
    expect(s.pendingTxs()).to.deep.equal([]);
    expect(s.pendingOrders().map((o) => o.id)).to.deep.equal([7n]);
    expect([s.account(1n)!.updatedBlock, s.account(1n)!.hasPosition, s.account(1n)!.owes]).to.deep.equal([10, true, true]);
    expect(s.cursor()).to.deep.equal({ block: 10, hash: "0x10" });
    expect(s.recentBlocks(0).map((b) => b.number)).to.deep.equal([10, 9]);
    // mined again on the new chain
    s.settleNonce(0, "0xa", true, 13);
    expect(s.journal()[0]).to.deep.include({ status: "mined", block: 13 });
  });

  it("a byte-identical transaction sent again after it was dropped: the status lands on the new entry, the old one stays dropped", () => {
    const s = new Store(tmpDb());
    s.journalSend([{ key: "liquidate:5", round: "4" }], TX(0, "0xa"));
    s.setStatus("0xa", "dropped", null, "not in the node's pool");
    s.journalSend([{ key: "liquidate:5", round: "4" }], TX(0, "0xa"));
    s.settleNonce(0, "0xa", true, 20);
    expect(s.journal().map((j) => [j.id, j.status, j.block])).to.deep.equal([[1, "dropped", null], [2, "mined", 20]]);
  });

  it("tracks which accounts owe (the last SettlementChanged) and lists those with no position: the collateral sales' candidates", () => {
    const s = new Store(tmpDb());
    for (const id of [1n, 2n, 3n]) s.upsertAccount(id, "0x1", 1);
    s.setPosition(1n, 1n, 10n, 2);
    s.setOwes(1n, true, 2); // a trade fee with no USDC margin: owes, with a position
    s.setOwes(2n, true, 3);
    s.setPosition(3n, 1n, 10n, 3);
    s.setPosition(3n, 1n, 0n, 4); // liquidated
    s.setOwes(3n, true, 4);
    expect(s.owingAccounts().map((a) => a.id)).to.deep.equal([2n, 3n]);
    s.setOwes(2n, false, 5); // repaid (a collateral sale)
    expect(s.owingAccounts().map((a) => [a.id, a.owes, a.updatedBlock])).to.deep.equal([[3n, true, 4]]);
    expect(s.account(2n)!).to.deep.include({ owes: false, updatedBlock: 5 });
    s.close();
  });
});
