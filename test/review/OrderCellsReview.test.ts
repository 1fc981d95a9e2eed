/**
 * Adversarial review of 37fc3ee ("Orders reuse their account's cells"): a pending order's fields live in one of eight
 * cells of its account (`orderCells[acct][cell]`, the cell named at bits 232 + 3·i of the pending list's head), its
 * account in a packed id index (`orderAccounts[id >> 3]`, 32 bits per id); `AccountLogic.pendingOrder` finds an order
 * through the index, then the id among the account's pending entries, then the cell. Attacks as a trader, keeper, LP
 * or attacker would try them, each checked against the pre-commit semantics (orders[id] written on request, deleted
 * at settlement): views and events must match for every sequence. Every attack on the contracts was resisted; the two
 * findings were what the commit left behind, both fixed with it: the gas snapshot (test/gas failed; refreshed) and
 * README "Storage layout" (checked below).
 */
import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";

import { productionFixture, USDC, E18, E8, type ProductionFixture } from "../helpers/fixtures";
import { MAJOR_MARKET } from "../../deploy/params";
import { prng } from "../../sim/population";
import type { IMarginEngine } from "../../typechain-types";

const FEE = USDC(1) / 2n;
const HOUR = 3_600;
const MAX = ethers.MaxUint256;
const U128_MAX = 2n ** 128n - 1n;
const U32 = 2n ** 32n;
const SAFE_CAST = { interface: new ethers.Interface(["error SafeCastOverflowedUintDowncast(uint8 bits, uint256 value)"]) };
const coder = ethers.AbiCoder.defaultAbiCoder();
const sel = (e: IMarginEngine, name: string) => e.interface.getError(name)!.selector;
const milli = (n: number | bigint) => BigInt(n) * 10n ** 15n;
const EMPTY = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, false];

type F = ProductionFixture;
type Signer = F["alice"];
interface R extends F {
  carol: Signer;
  dave: Signer;
  owners: Map<bigint, Signer>;
}

const at = (t: number) => time.setNextBlockTimestamp(t);
const raw = async (f: F, slot: bigint) => BigInt(await ethers.provider.getStorage(f.engine, slot));
const setRaw = async (f: F, slot: bigint, v: bigint) =>
  network.provider.send("hardhat_setStorageAt", [await f.engine.getAddress(), ethers.toQuantity(slot), ethers.zeroPadValue(ethers.toBeHex(v), 32)]);

async function fund(f: F, who: Signer, acct: bigint) {
  await f.usdc.mint(who.address, USDC(20_000));
  await f.usdc.connect(who).approve(f.vault, USDC(20_000));
  await f.vault.connect(who).depositMargin(acct, f.usdc, USDC(10_000));
  await f.vault.connect(who).deposit(acct, f.usdc, USDC(100));
}

/** Production engine, 0.5 USDC order fee, no funding; accounts 1..3 (alice, bob, carol) each 10,000 USDC margin,
 *  100 USDC reserve and a 5 ETH long opened by orders 1..3 at a 2,000 round (all settled). */
async function fixture(): Promise<R> {
  const f = await productionFixture();
  const [, , , , , carol, dave] = await ethers.getSigners();
  await f.engine.setOrderFee(FEE);
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  const owners = new Map<bigint, Signer>([[1n, f.alice], [2n, f.bob], [3n, carol]]);
  for (const [id, who] of owners) {
    await f.vault.connect(who).createAccount();
    await fund(f, who, id);
  }
  let t = (await time.latest()) + 10;
  for (const [id, who] of owners) {
    await at(t++);
    await f.engine.connect(who).requestOrder(id, f.ethMarket, E18(5), MAX, t + HOUR, false);
  }
  await at(t + 5);
  await f.ethFeed.setAnswer(E8(2000));
  for (const id of [1n, 2n, 3n]) {
    await at(t + 6 + Number(id));
    await f.engine.connect(f.keeper).executeOrder(id);
  }
  return { ...f, carol, dave, owners };
}

/** What order(id) returns for an order as requested (the limit clamped to 128 bits as stored). */
interface MOrder { id: bigint; acct: bigint; size: bigint; limit: bigint; requestedAt: bigint; afterRound: bigint; deadline: bigint; reduceOnly: boolean }
const view = (o: MOrder, market: bigint) => [o.acct, market, o.size, o.limit > U128_MAX ? U128_MAX : o.limit, o.requestedAt, o.afterRound, o.deadline, FEE, o.reduceOnly];
const asArray = async (f: F, id: bigint) => {
  const o = await f.engine.order(id);
  return [o.accountId, o.marketId, o.sizeDelta, o.acceptablePrice, o.requestedAt, o.afterRound, o.deadline, o.fee, o.reduceOnly];
};
const latestRound = async (f: F) => (await f.ethFeed.latestRoundData())[0];

/** `who` requests an ETH order for `acct` at `t`; returns the model order (id from lastOrderId). */
async function req(f: F, who: Signer, acct: bigint, t: number, size: bigint, o: { reduceOnly?: boolean; limit?: bigint; deadline?: number } = {}): Promise<MOrder> {
  const id = (await f.engine.lastOrderId()) + 1n;
  const afterRound = await latestRound(f);
  const limit = o.limit ?? (size > 0n ? MAX : 0n);
  const deadline = o.deadline ?? t + HOUR;
  await at(t);
  await expect(f.engine.connect(who).requestOrder(acct, f.ethMarket, size, limit, deadline, o.reduceOnly ?? false))
    .to.emit(f.engine, "OrderRequested")
    .withArgs(id, acct, f.ethMarket, size, limit, deadline, o.reduceOnly ?? false, afterRound, FEE);
  return { id, acct, size, limit, requestedAt: BigInt(t), afterRound, deadline: BigInt(deadline), reduceOnly: o.reduceOnly ?? false };
}

async function ethRound(f: F, usd: number, t: number) {
  await at(t);
  await f.ethFeed.setAnswer(E8(usd));
}

const keySlot = (key: bigint, n: bigint) => BigInt(ethers.keccak256(coder.encode(["uint256", "uint256"], [key, n])));
/** The mapping N whose key `key` holds `value` (value must be distinctive), found by scanning N. */
async function mappingN(f: F, key: bigint, value: bigint): Promise<bigint> {
  for (let n = 0n; n < 400n; n++) if ((await raw(f, keySlot(key, n))) === value) return n;
  throw new Error("mapping slot not found");
}
const indexWord = (entries: [bigint, bigint][]) => entries.reduce((w, [id, acct]) => w | (acct << (32n * (id & 7n))), 0n);

describe("Review of 37fc3ee: per-account order cells and the packed order-account index", () => {
  // ------------------------------------------------------------------------------------------ randomized model
  // Each seed's exact path counts and the longest pending list it reached (seed 7 fills a list to 8: both words).
  const runs: [number, number, Record<string, number>, number][] = [
    [11, 0.45, { requested: 25, filled: 12, expired: 6, notFound: 5, notReady: 10, orderPending: 3, tooMany: 0 }, 5],
    [2026, 0.45, { requested: 26, filled: 4, expired: 7, notFound: 7, notReady: 8, orderPending: 9, tooMany: 0 }, 7],
    [7, 0.62, { requested: 32, filled: 6, expired: 3, notFound: 4, notReady: 2, orderPending: 8, tooMany: 5 }, 8],
  ];
  for (const [seed, pReq, expectCounts, expectMax] of runs) {
    it(`resisted: seeded run ${seed} (P(request) ${pReq}): requests, fills, expiries, stray executions over 3 accounts match a model of pendingOrders(), order(id) of every id, escrow, pending OI, positions and keeper rewards after each step`, async () => {
      const f = await loadFixture(fixture);
      const rnd = prng(seed);
      const pick = <T>(xs: T[]) => xs[Math.floor(rnd() * xs.length)];
      const accts = [1n, 2n, 3n];
      const pending = new Map<bigint, MOrder[]>(accts.map((a) => [a, []]));
      const byId = new Map<bigint, MOrder>();
      const size = new Map<bigint, bigint>(accts.map((a) => [a, E18(5)]));
      const rounds: { id: bigint; px: bigint; t: number }[] = [];
      let rewards = 3n * FEE;
      let t = (await time.latest()) + 10;
      let last = 3n;
      let maxLen = 0;
      const counts = { requested: 0, filled: 0, expired: 0, notFound: 0, notReady: 0, orderPending: 0, tooMany: 0 };

      const check = async () => {
        for (const a of accts) expect(await f.engine.pendingOrders(a)).to.deep.equal(pending.get(a)!.map((o) => o.id));
        expect(await f.engine.lastOrderId()).to.equal(last);
        for (let id = 0n; id <= last + 9n; id++) {
          const o = byId.get(id);
          expect(await asArray(f, id), `order(${id})`).to.deep.equal(o ? view(o, f.ethMarket) : EMPTY);
        }
        const all = [...pending.values()].flat();
        expect(await f.engine.orderEscrow()).to.equal(BigInt(all.length) * FEE);
        const risk = all.filter((o) => !o.reduceOnly);
        const sum = (xs: MOrder[]) => xs.reduce((s, o) => s + (o.size < 0n ? -o.size : o.size), 0n);
        expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([sum(risk.filter((o) => o.size > 0n)), sum(risk.filter((o) => o.size < 0n))]);
        for (const a of accts) expect((await f.engine.position(a, f.ethMarket)).size).to.equal(size.get(a));
        expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(rewards);
      };
      const remove = (o: MOrder) => {
        const list = pending.get(o.acct)!;
        const i = list.indexOf(o);
        list[i] = list[list.length - 1];
        list.pop();
        byId.delete(o.id);
      };

      for (let step = 0; step < 70; step++) {
        t += 1 + Math.floor(rnd() * 15);
        const r = rnd();
        if (r < pReq) {
          const a = pick(accts);
          const who = f.owners.get(a)!;
          const list = pending.get(a)!;
          const reduceOnly = rnd() < 0.65;
          const sz = reduceOnly ? -milli(1 + Math.floor(rnd() * 9)) : (rnd() < 0.5 ? 1n : -1n) * milli(1 + Math.floor(rnd() * 9));
          const deadline = t + 10 + Math.floor(rnd() * 120);
          if (list.length === 8 || (!reduceOnly && list.some((o) => !o.reduceOnly))) {
            await at(t);
            const tx = f.engine.connect(who).requestOrder(a, f.ethMarket, sz, sz > 0n ? MAX : 0n, deadline, reduceOnly);
            if (list.length === 8) {
              await expect(tx).to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders").withArgs(a, 8);
              counts.tooMany++;
            } else {
              await expect(tx).to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(a, list.find((o) => !o.reduceOnly)!.id);
              counts.orderPending++;
            }
          } else {
            const o = await req(f, who, a, t, sz, { reduceOnly, deadline });
            expect(o.id).to.equal(++last);
            list.push(o);
            byId.set(o.id, o);
            counts.requested++;
          }
        } else if (r < pReq + 0.15) {
          const px = 1997 + Math.floor(rnd() * 7);
          await ethRound(f, px, t);
          rounds.push({ id: await latestRound(f), px: E18(px), t });
        } else {
          const live = [...byId.keys()];
          const q = rnd();
          const id = q < 0.65 && live.length > 0 ? pick(live) : q < 0.9 ? BigInt(1 + Math.floor(rnd() * Number(last))) : pick([0n, last + 1n, last + 8n, 2n ** 56n - 1n, MAX]);
          const o = byId.get(id);
          await at(t);
          const tx = f.engine.connect(f.keeper).executeOrder(id);
          if (!o) {
            await expect(tx).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
            counts.notFound++;
          } else {
            const fillRound = rounds.find((x) => x.id > o.afterRound);
            if (!fillRound && BigInt(t) <= o.deadline) {
              await expect(tx).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(id, o.afterRound);
              counts.notReady++;
            } else if (!fillRound || BigInt(fillRound.t) > o.deadline) {
              await expect(tx).to.emit(f.engine, "OrderCancelled").withArgs(id, o.acct, f.keeper.address, sel(f.engine, "OrderExpired"));
              remove(o);
              rewards += FEE;
              counts.expired++;
            } else {
              await expect(tx)
                .to.emit(f.engine, "OrderExecuted").withArgs(id, o.acct, f.keeper.address, fillRound.px, fillRound.t)
                .and.to.emit(f.engine, "PositionModified").withArgs(o.acct, f.ethMarket, o.size, size.get(o.acct)! + o.size, fillRound.px, anyValue, anyValue);
              size.set(o.acct, size.get(o.acct)! + o.size);
              remove(o);
              rewards += FEE;
              counts.filled++;
            }
          }
        }
        await check();
        maxLen = Math.max(maxLen, ...[...pending.values()].map((l) => l.length));
      }
      // The run's paths, exactly as this seed draws them.
      expect(counts).to.deep.equal(expectCounts);
      expect(maxLen).to.equal(expectMax);
    });
  }

  // ------------------------------------------------------------------------------------------ stale cells
  it("resisted: a settled risk order's stale cell (reduceOnly = false) never blocks a request or margin release, is never executed, and the orders reusing or moving cells keep their own fields", async () => {
    const f = await loadFixture(fixture);
    let t = (await time.latest()) + 10;
    const a = await req(f, f.alice, 1n, t, E18(1)); // cell 0, risk
    const b = await req(f, f.alice, 1n, t + 1, -E18(1), { reduceOnly: true }); // cell 1
    const c = await req(f, f.alice, 1n, t + 2, -E18(2), { reduceOnly: true }); // cell 2
    await ethRound(f, 2000, t + 5);
    await at(t + 6);
    await expect(f.engine.connect(f.keeper).executeOrder(a.id)).to.emit(f.engine, "OrderExecuted").withArgs(a.id, 1n, f.keeper.address, E18(2000), t + 5);
    expect(await f.engine.pendingOrders(1n)).to.deep.equal([c.id, b.id]); // c (cell 2) moved into entry 0
    expect(await asArray(f, a.id)).to.deep.equal(EMPTY);
    // Cell 0 holds a's fields, reduceOnly = false: only pending entries are read, so nothing waits.
    await at(t + 7);
    await expect(f.vault.connect(f.alice).releaseMargin(1n, f.usdc, 1n)).to.emit(f.vault, "MarginReleased");
    const d = await req(f, f.alice, 1n, t + 8, -E18(3), { reduceOnly: true }); // takes cell 0
    const e = await req(f, f.alice, 1n, t + 9, E18(2)); // risk, cell 3: no OrderPending from the stale cell
    expect(await f.engine.pendingOrders(1n)).to.deep.equal([c.id, b.id, d.id, e.id]);
    for (const o of [b, c, d, e]) expect(await asArray(f, o.id)).to.deep.equal(view(o, f.ethMarket));
    await at(t + 10);
    await expect(f.engine.connect(f.alice).requestOrder(1n, f.ethMarket, E18(1), MAX, t + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, e.id);
    await expect(f.vault.connect(f.alice).releaseMargin(1n, f.usdc, 1n)).to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, e.id);
    await expect(f.engine.connect(f.keeper).executeOrder(a.id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(a.id);
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(2), 0n]);
    // Each fills with its own size at its own fill round (b, c: the 2,000 round; d, e: the next): 6 − 3 + 2 − 1 − 2 = 2 ETH.
    await ethRound(f, 2010, t + 20);
    let s = E18(6);
    for (const [i, o] of [d, e, b, c].entries()) {
      const [px, when] = i < 2 ? [E18(2010), t + 20] : [E18(2000), t + 5];
      await at(t + 21 + i);
      await expect(f.engine.connect(f.keeper).executeOrder(o.id))
        .to.emit(f.engine, "OrderExecuted").withArgs(o.id, 1n, f.keeper.address, px, when)
        .and.to.emit(f.engine, "PositionModified").withArgs(1n, f.ethMarket, o.size, s + o.size, px, anyValue, anyValue);
      s += o.size;
    }
    expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(2));
    expect(await f.engine.pendingOrders(1n)).to.deep.equal([]);
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    expect(await f.engine.orderEscrow()).to.equal(0n);
    for (const o of [a, b, c, d, e]) expect(await asArray(f, o.id)).to.deep.equal(EMPTY);
  });

  it("resisted: a refused fill (PriceNotAcceptable) and an expiry settle the right entry; the moved last entry keeps its cell and a new order takes the lowest free one", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    const v = await req(f, f.bob, 2n, t, -E18(1), { reduceOnly: true, deadline: t + 3 }); // expires before any round
    const x = await req(f, f.bob, 2n, t + 1, -E18(1), { reduceOnly: true });
    const y = await req(f, f.bob, 2n, t + 2, -E18(1), { reduceOnly: true, limit: E18(3000) }); // sell at >= 3,000
    const z = await req(f, f.bob, 2n, t + 3, -E18(3), { reduceOnly: true });
    await at(t + 4);
    await expect(f.engine.connect(f.keeper).executeOrder(v.id)).to.emit(f.engine, "OrderCancelled").withArgs(v.id, 2n, f.keeper.address, sel(f.engine, "OrderExpired"));
    expect(await f.engine.pendingOrders(2n)).to.deep.equal([z.id, x.id, y.id]); // z (cell 3) in entry 0
    await ethRound(f, 2000, t + 5);
    await at(t + 6);
    await expect(f.engine.connect(f.keeper).executeOrder(x.id)).to.emit(f.engine, "OrderExecuted").withArgs(x.id, 2n, f.keeper.address, E18(2000), t + 5);
    expect(await f.engine.pendingOrders(2n)).to.deep.equal([z.id, y.id]);
    await at(t + 7);
    await expect(f.engine.connect(f.keeper).executeOrder(y.id)).to.emit(f.engine, "OrderCancelled").withArgs(y.id, 2n, f.keeper.address, sel(f.engine, "PriceNotAcceptable"));
    expect(await f.engine.pendingOrders(2n)).to.deep.equal([z.id]);
    const w = await req(f, f.bob, 2n, t + 8, -E18(1) / 2n, { reduceOnly: true }); // cell 0 (v's, stale)
    expect(await f.engine.pendingOrders(2n)).to.deep.equal([z.id, w.id]);
    // The raw head: count 2, ids z, w, then stale y, z; cells: z 3, w 0, then stale 2 (y's), 3 (z's).
    const head = 2n | (z.id << 8n) | (w.id << 64n) | (y.id << 120n) | (z.id << 176n) | (3n << 232n) | (0n << 235n) | (2n << 238n) | (3n << 241n);
    const hn = await mappingN(f, 2n, head); // pendingOrders: found by the head word, whose cell bits are as modelled
    expect(await raw(f, keySlot(2n, hn))).to.equal(head);
    expect(await asArray(f, z.id)).to.deep.equal(view(z, f.ethMarket));
    expect(await asArray(f, w.id)).to.deep.equal(view(w, f.ethMarket));
    await at(t + 9);
    await expect(f.engine.connect(f.keeper).executeOrder(z.id)).to.emit(f.engine, "PositionModified").withArgs(2n, f.ethMarket, -E18(3), E18(1), E18(2000), anyValue, anyValue);
    await ethRound(f, 2004, t + 10);
    await at(t + 11);
    await expect(f.engine.connect(f.keeper).executeOrder(w.id)).to.emit(f.engine, "OrderExecuted").withArgs(w.id, 2n, f.keeper.address, E18(2004), t + 10);
    expect((await f.engine.position(2n, f.ethMarket)).size).to.equal(E18(1) / 2n);
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(8n * FEE);
  });

  // ------------------------------------------------------------------------------------------ the index's bounds
  it("resisted: account 2^32 − 1 shares an index word with accounts 1..3 (its id at bits 224..255) without bleeding; account 2^32 is refused by SafeCast(32, 2^32)", async () => {
    const f = await loadFixture(fixture);
    // accountCount: the one slot that holds 3 now and 4 after a fourth account.
    const cands: bigint[] = [];
    for (let n = 0n; n < 400n; n++) if ((await raw(f, n)) === 3n) cands.push(n);
    await f.vault.connect(f.dave).createAccount();
    const countSlot = (await Promise.all(cands.map(async (n) => ((await raw(f, n)) === 4n ? n : -1n)))).filter((n) => n >= 0n);
    expect(countSlot.length).to.equal(1);
    await setRaw(f, countSlot[0], U32 - 2n);
    await f.vault.connect(f.dave).createAccount();
    const BIG = U32 - 1n;
    expect(await f.vault.accountCount()).to.equal(BIG);
    await fund(f, f.dave, BIG);
    let t = (await time.latest()) + 10;
    const o4 = await req(f, f.dave, BIG, t, E18(1));
    await ethRound(f, 2000, t + 1);
    await at(t + 2);
    await expect(f.engine.connect(f.keeper).executeOrder(o4.id)).to.emit(f.engine, "OrderExecuted").withArgs(4n, BIG, f.keeper.address, E18(2000), t + 1);
    t += 3;
    const os = [
      await req(f, f.alice, 1n, t, -E18(1), { reduceOnly: true }), // 5
      await req(f, f.dave, BIG, t + 1, -milli(100), { reduceOnly: true }), // 6
      await req(f, f.dave, BIG, t + 2, -milli(200), { reduceOnly: true }), // 7: bits 224..255
      await req(f, f.alice, 1n, t + 3, -E18(2), { reduceOnly: true }), // 8: next word
      await req(f, f.dave, BIG, t + 4, -milli(300), { reduceOnly: true }), // 9
    ];
    expect(os.map((o) => o.id)).to.deep.equal([5n, 6n, 7n, 8n, 9n]);
    const w0 = indexWord([[1n, 1n], [2n, 2n], [3n, 3n], [4n, BIG], [5n, 1n], [6n, BIG], [7n, BIG]]);
    expect(w0 >> 224n).to.equal(BIG);
    const n = await mappingN(f, 0n, w0); // orderAccounts: ids 0..7 at key 0, 8..15 at key 1
    expect(await raw(f, keySlot(1n, n))).to.equal(indexWord([[8n, 1n], [9n, BIG]]));
    for (const o of os) expect(await asArray(f, o.id)).to.deep.equal(view(o, f.ethMarket));
    expect(await f.engine.pendingOrders(BIG)).to.deep.equal([6n, 7n, 9n]);
    await ethRound(f, 2001, t + 5);
    let i = 6;
    for (const o of [os[2], os[1], os[4], os[0], os[3]]) {
      await at(t + i++);
      await expect(f.engine.connect(f.keeper).executeOrder(o.id)).to.emit(f.engine, "OrderExecuted").withArgs(o.id, o.acct, f.keeper.address, E18(2001), t + 5);
    }
    expect((await f.engine.position(BIG, f.ethMarket)).size).to.equal(E18(1) - milli(600));
    expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(2));
    await f.vault.connect(f.dave).createAccount();
    expect(await f.vault.accountCount()).to.equal(U32);
    t = (await time.latest()) + 5;
    await at(t);
    await expect(f.engine.connect(f.dave).requestOrder(U32, f.ethMarket, E18(1), MAX, t + HOUR, false))
      .to.be.revertedWithCustomError(SAFE_CAST, "SafeCastOverflowedUintDowncast").withArgs(32, U32);
    expect(await f.engine.lastOrderId()).to.equal(9n);
  });

  it("resisted: ids 2^56 − 8 … 2^56 − 1 (one whole index word) over three accounts; 2^56 refused by SafeCast(56, 2^56); id 0, unissued ids below lastOrderId and ids past 2^56 / 2^64 / 2^256 − 1 read empty and are OrderNotFound", async () => {
    const f = await loadFixture(fixture);
    let bookSlot = -1n;
    const book = 3n | (FEE << 64n);
    for (let n = 0n; n < 400n && bookSlot < 0n; n++) if ((await raw(f, n)) === book) bookSlot = n;
    expect(bookSlot).to.not.equal(-1n);
    const base = 2n ** 56n - 9n;
    await setRaw(f, bookSlot, base | (FEE << 64n));
    const t = (await time.latest()) + 10;
    const os: MOrder[] = [];
    for (let i = 0; i < 8; i++) {
      const a = BigInt(1 + (i % 3));
      os.push(await req(f, f.owners.get(a)!, a, t + i, -milli(10 + i), { reduceOnly: true }));
    }
    expect(os.map((o) => o.id)).to.deep.equal([...Array(8).keys()].map((i) => base + 1n + BigInt(i)));
    const w = indexWord(os.map((o) => [o.id, o.acct]));
    const n = await mappingN(f, (2n ** 56n - 1n) >> 3n, w);
    expect(await raw(f, keySlot((2n ** 56n - 1n) >> 3n, n))).to.equal(w);
    await at(t + 8);
    await expect(f.engine.connect(f.alice).requestOrder(1n, f.ethMarket, -E18(1), 0n, t + HOUR, true))
      .to.be.revertedWithCustomError(SAFE_CAST, "SafeCastOverflowedUintDowncast").withArgs(56, 2n ** 56n);
    for (const o of os) expect(await asArray(f, o.id)).to.deep.equal(view(o, f.ethMarket));
    const ghosts = [0n, 4n, 5n, 7n, 8n, 2n ** 56n - 9n, 2n ** 56n, 2n ** 56n + 1n, 2n ** 56n + (2n ** 56n - 1n), 2n ** 59n + 2n ** 56n - 8n, 2n ** 64n - 1n, 2n ** 64n + 2n ** 56n - 1n, MAX, MAX - 7n];
    for (const id of ghosts) {
      expect(await asArray(f, id), `order(${id})`).to.deep.equal(EMPTY);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
    }
    const t2 = (await time.latest()) + 5;
    await ethRound(f, 2002, t2);
    for (const [i, o] of [...os].reverse().entries()) {
      await at(t2 + 1 + i);
      await expect(f.engine.connect(f.keeper).executeOrder(o.id)).to.emit(f.engine, "OrderExecuted").withArgs(o.id, o.acct, f.keeper.address, E18(2002), t2);
    }
    for (const a of [1n, 2n, 3n]) expect(await f.engine.pendingOrders(a)).to.deep.equal([]);
    // Σ per account: 1: 10+13+16, 2: 11+14+17, 3: 12+15 milli-ETH sold.
    expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(5) - milli(39));
    expect((await f.engine.position(2n, f.ethMarket)).size).to.equal(E18(5) - milli(42));
    expect((await f.engine.position(3n, f.ethMarket)).size).to.equal(E18(5) - milli(27));
    for (const o of os) expect(await asArray(f, o.id)).to.deep.equal(EMPTY);
  });

  // ------------------------------------------------------------------------------------------ double execution, self-call
  it("resisted: two executions of one order in the same block: the first settles, the second reverts (status 0), the fee is paid once; a later one is OrderNotFound; fillOrder is the engine's own", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    const o = await req(f, f.alice, 1n, t, -E18(1), { reduceOnly: true });
    const o2 = await req(f, f.alice, 1n, t + 1, -E18(1), { reduceOnly: true });
    await ethRound(f, 2000, t + 2);
    await network.provider.send("evm_setAutomine", [false]);
    try {
      const e = f.engine.connect(f.keeper);
      const tx1 = await e.executeOrder(o.id, { gasLimit: 2_000_000 });
      const tx2 = await e.executeOrder(o.id, { gasLimit: 2_000_000 });
      await at(t + 3);
      await network.provider.send("evm_mine", []);
      const r1 = await ethers.provider.getTransactionReceipt(tx1.hash);
      const r2 = await ethers.provider.getTransactionReceipt(tx2.hash);
      expect([r1!.status, r2!.status, r1!.blockNumber === r2!.blockNumber]).to.deep.equal([1, 0, true]);
    } finally {
      await network.provider.send("evm_setAutomine", [true]);
    }
    expect(await f.engine.pendingOrders(1n)).to.deep.equal([o2.id]);
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(4n * FEE);
    expect(await f.engine.orderEscrow()).to.equal(FEE);
    expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(4));
    await expect(f.engine.connect(f.keeper).executeOrder(o.id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(o.id);
    expect(await asArray(f, o2.id)).to.deep.equal(view(o2, f.ethMarket));
    const fill = new ethers.Interface(["function fillOrder(uint256,uint256,int256,uint256,uint256,bool)"]);
    await expect(f.alice.sendTransaction({ to: await f.engine.getAddress(), data: fill.encodeFunctionData("fillOrder", [1n, f.ethMarket, E18(1), MAX, E18(1), false]) }))
      .to.be.revertedWithCustomError(f.engine, "NotAuthorized").withArgs(1n, f.alice.address);
  });

  // ------------------------------------------------------------------------------------------ what the commit left behind
  it("fixed: README \"Storage layout\", which AccountLogic cites for the cells, describes the order cells, the cell bits 232 + 3·i of the pending list's head and the account index (it described an OrderSlot per order id and a head of count + four ids)", async () => {
    const readme = fs.readFileSync(path.resolve(__dirname, "..", "..", "README.md"), "utf8");
    const layout = readme.slice(readme.indexOf("### Storage layout"));
    const row = (prefix: string) => layout.split("\n").find((l) => l.startsWith(prefix))!;
    expect(row("| engine · `OrderSlot`").split("|")[1].trim()).to.equal("engine · `OrderSlot` per account × cell (8 cells of 2)");
    expect(row("| engine · `PendingList`").split("|")[2].trim()).to.equal("`count`, ids 0..3, cells of entries 0..7 · ids 4..7");
    expect(row("| engine · `PendingList`").includes("bits 232 + 3·i of the head")).to.equal(true);
    expect(row("| engine · order index").split("|")[3].trim()).to.equal("8 × 32");
    const lib = fs.readFileSync(path.resolve(__dirname, "..", "..", "contracts", "libraries", "logic", "AccountLogic.sol"), "utf8");
    expect(lib.includes('cells are reused, so a request writes two nonzero slots (README "Storage layout")')).to.equal(true);
  });
});
