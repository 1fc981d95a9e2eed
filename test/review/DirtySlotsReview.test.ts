/**
 * Adversarial review of d4b005c ("Orders and positions keep their slots dirty"):
 *   1. AccountLogic.PendingList: an account's pending order ids packed in two words (head = count + ids 0..3 + the
 *      order cell of each entry, tail = ids 4..7), removal swaps the last entry (id and cell) in, stale entries beyond
 *      the count stay (the head never returns to 0);
 *   2. a fully closed position writes size = 0 and keeps its stale entryNet / entryPrice; position() shows zeros.
 * Attacks as a trader, keeper, LP and liquidator would try them; every one was resisted. (The review's two findings
 * were of what the commit left behind: the gas snapshot and the README's layout row, both updated with it.)
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { anyValue } from "@nomicfoundation/hardhat-chai-matchers/withArgs";

import { productionFixture, systemFixture, USDC, E18, E8, type ProductionFixture, type SystemFixture } from "../helpers/fixtures";
import { MAJOR_MARKET } from "../../deploy/params";
import { prng } from "../../sim/population";
import { openLong } from "../helpers/rebalance";
import { mulDivFloorSigned, mulDivUp, wDivUp, WAD } from "../helpers/marginMath";
import { decodeLens, lensCallData, valueAccount } from "../../keeper/mirror";
import type { IMarginEngine } from "../../typechain-types";

/** Execution fee of the tests: 0.5 USDC. */
const FEE = USDC(1) / 2n;
const HOUR = 3_600;
const MAX_PENDING = 8;
const UINT128_MAX = 2n ** 128n - 1n;
const ID_MASK = 2n ** 56n - 1n;
const FEE_RATE = MAJOR_MARKET.feeRate;
const coder = ethers.AbiCoder.defaultAbiCoder();
const sel = (engine: IMarginEngine, name: string) => engine.interface.getError(name)!.selector;
/** Trading fee of a fill as the engine charges it: |Δ| × price × feeRate, rounded up twice (WAD). */
const tradeFee = (size: bigint, px: bigint) => mulDivUp(mulDivUp(size < 0n ? -size : size, px, WAD), FEE_RATE, WAD);
const anyPrice = (size: bigint) => (size > 0n ? ethers.MaxUint256 : 0n);

// ================================================================================================ fixtures, helpers

type Signer = ProductionFixture["alice"];

/** Mines the next block at `t`. */
async function at(t: number) {
  await time.setNextBlockTimestamp(t);
}

/** A new ETH round at `usd` (8-decimal answer), published at block time `t`. */
async function round(f: ProductionFixture, usd: bigint | number, t: number) {
  await at(t);
  await f.ethFeed.setAnswer(E8(usd));
}

/** `who` requests an ETH order for `acct` at block time `t`; returns its id. */
async function request(
  f: ProductionFixture,
  who: Signer,
  acct: bigint,
  t: number,
  size: bigint,
  opts: { deadline?: number; reduceOnly?: boolean } = {},
): Promise<bigint> {
  const id = (await f.engine.lastOrderId()) + 1n;
  await at(t);
  await f.engine.connect(who).requestOrder(acct, f.ethMarket, size, anyPrice(size), opts.deadline ?? t + HOUR, opts.reduceOnly ?? false);
  return id;
}

interface Review extends ProductionFixture {
  /** alice's account 1 and bob's account 2 */
  owners: Map<bigint, Signer>;
}

/**
 * The production engine (deploy/), a 0.5 USDC order fee; alice (account 1) and bob (account 2) each with 10,000 USDC of
 * margin, 100 USDC of reserve (200 order fees) and a 5 ETH long opened through orders 1 and 2 at a 2,000 round.
 */
async function reviewFixture(): Promise<Review> {
  const f = await productionFixture();
  await f.engine.setOrderFee(FEE);
  const owners = new Map<bigint, Signer>([[1n, f.alice], [2n, f.bob]]);
  for (const [id, who] of owners) {
    await f.vault.connect(who).createAccount();
    await f.usdc.mint(who.address, USDC(20_000));
    await f.usdc.connect(who).approve(f.vault, USDC(20_000));
    await f.vault.connect(who).depositMargin(id, f.usdc, USDC(10_000));
    await f.vault.connect(who).deposit(id, f.usdc, USDC(100));
  }
  const t = (await time.latest()) + 10;
  await request(f, f.alice, 1n, t, E18(5));
  await request(f, f.bob, 2n, t + 1, E18(5));
  await round(f, 2000, t + 5);
  await at(t + 6);
  await f.engine.connect(f.keeper).executeOrder(1n);
  await at(t + 7);
  await f.engine.connect(f.keeper).executeOrder(2n);
  return { ...f, owners };
}

/**
 * TS model of an account's pending list: the ids in the engine's order (append; a removal moves the last id, with its
 * order cell, into the removed place), the cell of each (a request takes the lowest cell no pending id holds) and,
 * independently, the last value written at each of the eight entries and cells (stale ones included), from which the
 * two raw words must follow (head: count, ids 0..3 at 8 + 56·i, cells of entries 0..7 at 232 + 3·i).
 */
class PendingModel {
  ids: bigint[] = [];
  cells: number[] = [];
  written: bigint[] = new Array(MAX_PENDING).fill(0n);
  writtenCell: number[] = new Array(MAX_PENDING).fill(0);
  push(id: bigint) {
    let cell = 0;
    while (this.cells.includes(cell)) cell++;
    this.written[this.ids.length] = id;
    this.writtenCell[this.ids.length] = cell;
    this.ids.push(id);
    this.cells.push(cell);
  }
  remove(id: bigint) {
    const i = this.ids.indexOf(id);
    if (i < 0) throw new Error(`model: ${id} not pending`);
    const last = this.ids.length - 1;
    if (i !== last) {
      this.ids[i] = this.ids[last];
      this.cells[i] = this.cells[last];
      this.written[i] = this.ids[last];
      this.writtenCell[i] = this.cells[last];
    }
    this.ids.pop();
    this.cells.pop();
  }
  head(): bigint {
    let w = BigInt(this.ids.length);
    for (let i = 0; i < 4; i++) w |= this.written[i] << BigInt(8 + 56 * i);
    for (let i = 0; i < 8; i++) w |= BigInt(this.writtenCell[i]) << BigInt(232 + 3 * i);
    return w;
  }
  tail(): bigint {
    let w = 0n;
    for (let i = 4; i < 8; i++) w |= this.written[i] << BigInt(56 * (i - 4));
    return w;
  }
}

const raw = async (f: ProductionFixture | SystemFixture, slot: bigint) => BigInt(await ethers.provider.getStorage(f.engine, slot));

/** The slot of `pendingOrders[acct].head`: keccak(acct, N) for the mapping's slot N, found by the raw value it holds. */
async function pendingHeadSlot(f: ProductionFixture, acct: bigint, expectRaw: bigint): Promise<bigint> {
  for (let n = 0n; n < 400n; n++) {
    const slot = BigInt(ethers.keccak256(coder.encode(["uint256", "uint256"], [acct, n])));
    if ((await raw(f, slot)) === expectRaw) return slot;
  }
  throw new Error("pending list slot not found");
}

/** The first slot of `positions[acct][market]` ({size, entryNet}; entryPrice is the next), found by its raw value. */
async function positionSlot(f: ProductionFixture | SystemFixture, acct: bigint, market: bigint, expectRaw: bigint): Promise<bigint> {
  for (let n = 0n; n < 400n; n++) {
    const inner = ethers.keccak256(coder.encode(["uint256", "uint256"], [acct, n]));
    const slot = BigInt(ethers.keccak256(coder.encode(["uint256", "bytes32"], [market, inner])));
    if ((await raw(f, slot)) === expectRaw) return slot;
  }
  throw new Error("position slot not found");
}
/** The raw {size, entryNet} word of a position. */
const packPosition = (size: bigint, entryNet: bigint) => (BigInt.asUintN(128, entryNet) << 128n) | BigInt.asUintN(128, size);

// ================================================================================================ the tests

describe("Review of d4b005c: dirty pending-list and position slots", () => {
  // ---------------------------------------------------------------------------------------------- pending list
  describe("the packed pending list", () => {
    for (const seed of [1, 7, 2026, 31337]) {
      it(`resisted: a random run (seed ${seed}) of requests, fills, cancellations, expiries and re-executions on two accounts matches the TS model after every step: ids in order, both raw words (stale entries included), escrow, reserved OI, refusals by name`, async () => {
        const f = await loadFixture(reviewFixture);
        const rand = prng(seed);
        const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
        const accts = [1n, 2n];
        const models = new Map<bigint, PendingModel>(accts.map((a) => [a, new PendingModel()]));
        // the fixture's orders 1 and 2 left one stale id each in entry 0
        models.get(1n)!.written[0] = 1n;
        models.get(2n)!.written[0] = 2n;
        const headSlots = new Map<bigint, bigint>();
        for (const a of accts) headSlots.set(a, await pendingHeadSlot(f, a, models.get(a)!.head()));
        interface MOrder { id: bigint; acct: bigint; size: bigint; reduceOnly: boolean; requestedAt: number; deadline: number; afterRound: bigint }
        const orders = new Map<bigint, MOrder>();
        const settled: bigint[] = [];
        const rounds: { t: number; px: bigint }[] = [];
        const sizes = new Map<bigint, bigint>(accts.map((a) => [a, E18(5)]));
        const rewards = new Map<string, bigint>([[f.keeper.address, 2n * FEE]]); // the fixture's two executions
        const executors = [f.keeper, f.lp, f.alice];
        let lastId = 2n;
        let t = (await time.latest()) + 10;
        let lastRound = Number((await f.ethFeed.latestRoundData())[3]);
        const counts = { requests: 0, refusedFull: 0, refusedRisk: 0, filled: 0, expired: 0, notReady: 0, notFound: 0, tailHits: 0 };

        const check = async (what: string) => {
          let escrow = 0n;
          let long = 0n;
          let short = 0n;
          for (const a of accts) {
            const m = models.get(a)!;
            expect(await f.engine.pendingOrders(a), `${what}: list of ${a}`).to.deep.equal(m.ids);
            const hs = headSlots.get(a)!;
            expect(await raw(f, hs), `${what}: head of ${a}`).to.equal(m.head());
            expect(await raw(f, hs + 1n), `${what}: tail of ${a}`).to.equal(m.tail());
            for (const id of m.ids) {
              const o = orders.get(id)!;
              escrow += FEE;
              if (!o.reduceOnly) {
                if (o.size > 0n) long += o.size;
                else short -= o.size;
              }
            }
          }
          expect(await f.engine.orderEscrow(), `${what}: escrow`).to.equal(escrow);
          expect(await f.engine.pendingOpenInterest(f.ethMarket), `${what}: reserved OI`).to.deep.equal([long, short]);
        };

        const settle = async (o: MOrder) => {
          const exec = pick(executors);
          const fill = rounds.find((r) => r.t > o.requestedAt);
          if (!fill && Math.abs(t - o.deadline) <= 2) t = o.deadline + 3; // never judged on the deadline's edge
          await at(t);
          const call = f.engine.connect(exec).executeOrder(o.id);
          if (fill && fill.t <= o.deadline) {
            await expect(call).to.emit(f.engine, "OrderExecuted").withArgs(o.id, o.acct, exec.address, fill.px, fill.t);
            sizes.set(o.acct, sizes.get(o.acct)! + o.size);
            counts.filled++;
          } else if (fill || t > o.deadline) {
            await expect(call).to.emit(f.engine, "OrderCancelled").withArgs(o.id, o.acct, exec.address, sel(f.engine, "OrderExpired"));
            counts.expired++;
          } else {
            await expect(call).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(o.id, o.afterRound);
            counts.notReady++;
            return;
          }
          const m = models.get(o.acct)!;
          if (m.ids.indexOf(o.id) >= 4) counts.tailHits++;
          m.remove(o.id);
          orders.delete(o.id);
          settled.push(o.id);
          rewards.set(exec.address, (rewards.get(exec.address) ?? 0n) + FEE);
        };

        for (let step = 0; step < 180; step++) {
          t += 1 + Math.floor(rand() * 20);
          const r = rand();
          const what = `step ${step}`;
          if (t - lastRound > 3_000 || (r >= 0.5 && r < 0.62)) {
            // a new round (prices within 1 %: no breaker), at least every 50 min: the price never goes stale
            const usd = 2000 + Math.floor(rand() * 41) - 20;
            await round(f, usd, t);
            rounds.push({ t, px: E18(usd) });
            lastRound = t;
          } else if (r < 0.5) {
            const acct = pick(accts);
            const m = models.get(acct)!;
            const reduceOnly = rand() < 0.6;
            const size = reduceOnly ? -E18(1) / 100n : rand() < 0.5 ? E18(1) / 100n : -E18(1) / 100n;
            const deadline = t + 20 + Math.floor(rand() * 900);
            await at(t);
            const call = f.engine.connect(f.owners.get(acct)!).requestOrder(acct, f.ethMarket, size, anyPrice(size), deadline, reduceOnly);
            const risk = m.ids.find((id) => !orders.get(id)!.reduceOnly);
            if (m.ids.length >= MAX_PENDING) {
              await expect(call).to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders").withArgs(acct, MAX_PENDING);
              counts.refusedFull++;
            } else if (!reduceOnly && risk !== undefined) {
              await expect(call).to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(acct, risk);
              counts.refusedRisk++;
            } else {
              await expect(call).to.emit(f.engine, "OrderRequested");
              const id = ++lastId;
              expect(await f.engine.lastOrderId()).to.equal(id);
              const afterRound = (await f.engine.order(id)).afterRound;
              orders.set(id, { id, acct, size, reduceOnly, requestedAt: t, deadline, afterRound });
              m.push(id);
              counts.requests++;
            }
          } else if (r < 0.9) {
            const pending = [...orders.values()];
            if (pending.length === 0 || (settled.length > 0 && rand() < 0.2)) {
              if (settled.length === 0) continue;
              // a settled order again (its id may still sit in a stale entry): nothing to execute
              const id = pick(settled);
              await at(t);
              await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
              counts.notFound++;
            } else {
              await settle(pick(pending));
            }
          } else {
            t += 200 + Math.floor(rand() * 800); // time passes: deadlines go by
            continue;
          }
          await check(what);
        }
        // Wind down: a last round, past every deadline, everything settles.
        t += 10;
        await round(f, 2000, t);
        rounds.push({ t, px: E18(2000) });
        t += 1_000;
        for (const o of [...orders.values()]) {
          t += 2;
          await settle(o);
          await check(`wind-down ${o.id}`);
        }
        expect(models.get(1n)!.ids).to.deep.equal([]);
        expect(models.get(2n)!.ids).to.deep.equal([]);
        expect(await f.engine.orderEscrow()).to.equal(0n);
        for (const e of executors) expect(await f.engine.keeperRewardsOf(e.address)).to.equal(rewards.get(e.address) ?? 0n);
        for (const a of accts) expect((await f.engine.position(a, f.ethMarket)).size).to.equal(sizes.get(a)!);
        // The run reached what it is meant to: full lists, refusals of both kinds, fills, expiries, tail removals.
        expect(counts.refusedFull, "refused at 8").to.be.greaterThan(0);
        expect(counts.refusedRisk, "refused: a risk order waits").to.be.greaterThan(0);
        expect(counts.filled, "fills").to.be.greaterThan(0);
        expect(counts.expired, "expiries").to.be.greaterThan(0);
        expect(counts.tailHits, "removals from the tail").to.be.greaterThan(0);
        expect(counts.notFound, "re-executions").to.be.greaterThan(0);
      });
    }

    it("resisted: the order that may add risk is found at every entry, head (0..3) and tail (4..7), and wherever the swaps move it: a second one and releaseMargin are refused OrderPending(account, id) until it settles", async () => {
      for (let k = 0; k < MAX_PENDING; k++) {
        const f = await loadFixture(reviewFixture);
        const m = new PendingModel();
        const t0 = (await time.latest()) + 10;
        let risk = 0n;
        for (let i = 0; i < MAX_PENDING; i++) {
          const isRisk = i === k;
          const id = await request(f, f.alice, 1n, t0 + i, isRisk ? E18(1) / 10n : -E18(1) / 10n, {
            reduceOnly: !isRisk,
            deadline: isRisk ? t0 + 3_000 : t0 + 100,
          });
          m.push(id);
          if (isRisk) risk = id;
        }
        expect(await f.engine.pendingOrders(1n), `k ${k}`).to.deep.equal(m.ids);
        expect(m.ids.indexOf(risk)).to.equal(k);
        let t = t0 + 8;
        // Full: the count is judged first.
        await at(++t);
        await expect(f.engine.connect(f.alice).requestOrder(1n, f.ethMarket, E18(1) / 10n, ethers.MaxUint256, t + HOUR, false))
          .to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders").withArgs(1n, MAX_PENDING);
        await at(++t);
        await expect(f.vault.connect(f.alice).releaseMargin(1n, f.usdc, 1n))
          .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, risk);
        // The reduce-only ones expire in a scrambled order; after each the risk order is still found, wherever it is.
        t = t0 + 200;
        const others = m.ids.filter((id) => id !== risk);
        const order = [others[3], others[0], others[6], others[1], others[5], others[2], others[4]];
        const seenAt = new Set<number>();
        for (const id of order) {
          await at(++t);
          await expect(f.engine.connect(f.keeper).executeOrder(id))
            .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
          m.remove(id);
          expect(await f.engine.pendingOrders(1n), `k ${k} after ${id}`).to.deep.equal(m.ids);
          seenAt.add(m.ids.indexOf(risk));
          await at(++t);
          await expect(f.engine.connect(f.alice).requestOrder(1n, f.ethMarket, -E18(1) / 10n, 0n, t + HOUR, false))
            .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, risk);
          await at(++t);
          await expect(f.vault.connect(f.alice).releaseMargin(1n, f.usdc, 1n))
            .to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, risk);
        }
        expect(m.ids).to.deep.equal([risk]);
        if (k >= 4) expect([...seenAt].some((i) => i < 4), `k ${k}: moved into the head`).to.equal(true);
        // It settles (its fill round): the margin is free again, a new risk order is accepted.
        await round(f, 2010, ++t);
        await at(++t);
        await expect(f.engine.connect(f.keeper).executeOrder(risk))
          .to.emit(f.engine, "OrderExecuted").withArgs(risk, 1n, f.keeper.address, E18(2010), t - 1);
        expect(await f.engine.pendingOrders(1n)).to.deep.equal([]);
        await at(++t);
        await expect(f.vault.connect(f.alice).releaseMargin(1n, f.usdc, 1n)).to.emit(f.vault, "MarginReleased").withArgs(1n, await f.usdc.getAddress(), 1n);
        const next = await request(f, f.alice, 1n, ++t, E18(1) / 10n);
        expect(await f.engine.pendingOrders(1n)).to.deep.equal([next]);
        expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(5) + E18(1) / 10n);
      }
    });

    it("resisted: TooManyPendingOrders(account, 8) exactly at the ninth, reduce-only or not; one settlement frees exactly one place; another account's list is its own", async () => {
      const f = await loadFixture(reviewFixture);
      const t0 = (await time.latest()) + 10;
      const m = new PendingModel();
      for (let i = 0; i < 7; i++) m.push(await request(f, f.alice, 1n, t0 + i, -E18(1) / 100n, { reduceOnly: true, deadline: t0 + 50 }));
      expect((await f.engine.pendingOrders(1n)).length).to.equal(7);
      // the eighth is accepted (no off-by-one at 7)
      m.push(await request(f, f.alice, 1n, t0 + 7, -E18(1) / 100n, { reduceOnly: true, deadline: t0 + 3_000 }));
      expect(await f.engine.pendingOrders(1n)).to.deep.equal([3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]);
      let t = t0 + 8;
      for (const [size, reduceOnly] of [[-E18(1) / 100n, true], [E18(1) / 100n, false], [-E18(1) / 100n, false]] as const) {
        await at(++t);
        await expect(f.engine.connect(f.alice).requestOrder(1n, f.ethMarket, size, anyPrice(size), t + HOUR, reduceOnly))
          .to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders").withArgs(1n, MAX_PENDING);
      }
      expect(await f.engine.lastOrderId()).to.equal(10n);
      // bob is not alice: his list is empty, his request is his
      const b = await request(f, f.bob, 2n, ++t, -E18(1) / 100n, { reduceOnly: true });
      expect(await f.engine.pendingOrders(2n)).to.deep.equal([b]);
      expect(await f.engine.pendingOrders(1n)).to.deep.equal(m.ids);
      // one expiry from the tail (entry 5: id 8): one place, the last (10) takes entry 5
      t = t0 + 100;
      await at(t);
      await expect(f.engine.connect(f.keeper).executeOrder(8n))
        .to.emit(f.engine, "OrderCancelled").withArgs(8n, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      m.remove(8n);
      expect(await f.engine.pendingOrders(1n)).to.deep.equal([3n, 4n, 5n, 6n, 7n, 10n, 9n]);
      const n9 = await request(f, f.alice, 1n, ++t, -E18(1) / 100n, { reduceOnly: true });
      m.push(n9);
      expect(n9).to.equal(12n);
      expect(await f.engine.pendingOrders(1n)).to.deep.equal([3n, 4n, 5n, 6n, 7n, 10n, 9n, 12n]);
      await at(++t);
      await expect(f.engine.connect(f.alice).requestOrder(1n, f.ethMarket, -E18(1) / 100n, 0n, t + HOUR, true))
        .to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders").withArgs(1n, MAX_PENDING);
      expect(await f.engine.orderEscrow()).to.equal(9n * FEE);
    });

    it("resisted: a settled order cannot be executed twice, though its id stays in a stale entry of the head or the tail; the next requests overwrite the stale entries from entry 0", async () => {
      const f = await loadFixture(reviewFixture);
      const m = new PendingModel();
      m.written[0] = 1n; // the fixture's open
      const headSlot = await pendingHeadSlot(f, 1n, m.head());
      const t0 = (await time.latest()) + 10;
      for (let i = 0; i < MAX_PENDING; i++) m.push(await request(f, f.alice, 1n, t0 + i, -E18(1) / 100n, { reduceOnly: true }));
      expect(m.ids).to.deep.equal([3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]);
      await round(f, 1990, t0 + 20);
      let t = t0 + 20;
      for (const id of [4n, 10n, 3n, 8n, 6n, 9n, 5n, 7n]) {
        await at(++t);
        await expect(f.engine.connect(f.keeper).executeOrder(id))
          .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(1990), t0 + 20);
        m.remove(id);
        expect(await f.engine.pendingOrders(1n)).to.deep.equal(m.ids);
        expect(await raw(f, headSlot)).to.equal(m.head());
        expect(await raw(f, headSlot + 1n)).to.equal(m.tail());
      }
      // Empty list, yet every entry still holds a settled id.
      expect(m.written).to.deep.equal([7n, 5n, 5n, 6n, 7n, 8n, 9n, 10n]);
      // Each entry's order cell moved with its id: 3..10 took cells 0..7; the last settled, 7, sat in entry 0, cell 4.
      expect(m.writtenCell).to.deep.equal([4, 2, 2, 3, 4, 5, 6, 7]);
      const cellBits = (cs: number[]) => cs.reduce((w, c, i) => w | (BigInt(c) << BigInt(232 + 3 * i)), 0n);
      expect(await raw(f, headSlot)).to.equal(0n | (7n << 8n) | (5n << 64n) | (5n << 120n) | (6n << 176n) | cellBits([4, 2, 2, 3, 4, 5, 6, 7]));
      expect(await raw(f, headSlot + 1n)).to.equal(7n | (8n << 56n) | (9n << 112n) | (10n << 168n));
      for (const id of [3n, 4n, 5n, 6n, 7n, 8n, 9n, 10n]) {
        await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
        await expect(f.engine.connect(f.alice).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
      }
      expect((await f.engine.position(1n, f.ethMarket)).size).to.equal(E18(5) - (8n * E18(1)) / 100n);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(10n * FEE); // the fixture's 2 + these 8, each once
      expect(await f.engine.orderEscrow()).to.equal(0n);
      // A risk order now: the stale ids are all reduce-only ones, none is taken for a pending risk order.
      t = (await time.latest()) + 10;
      const r = await request(f, f.alice, 1n, ++t, E18(1) / 100n);
      m.push(r);
      expect(await f.engine.pendingOrders(1n)).to.deep.equal([11n]);
      // The lowest free cell, 0 (order 3's, stale), now holds order 11.
      expect(await raw(f, headSlot)).to.equal(1n | (11n << 8n) | (5n << 64n) | (5n << 120n) | (6n << 176n) | cellBits([0, 2, 2, 3, 4, 5, 6, 7]));
      expect((await f.engine.order(11n)).sizeDelta).to.equal(E18(1) / 100n);
      expect((await f.engine.order(3n)).accountId).to.equal(0n);
      await at(++t);
      await expect(f.vault.connect(f.alice).releaseMargin(1n, f.usdc, 1n)).to.be.revertedWithCustomError(f.engine, "OrderPending").withArgs(1n, 11n);
    });

    it("resisted: ids up to 2^56 − 1 round-trip through every entry of both words (no bit of one id bleeds into the count or a neighbour)", async () => {
      const f = await loadFixture(reviewFixture);
      // lastOrderId (low 64 bits of the order book's slot) to 2^56 − 10, fee and escrow kept: the next eight ids are
      // 2^56 − 9 … 2^56 − 2, all bits set in the high part of each 56-bit field.
      const book = 2n | (FEE << 64n);
      let bookSlot = -1n;
      for (let n = 0n; n < 400n && bookSlot < 0n; n++) if ((await raw(f, n)) === book) bookSlot = n;
      expect(bookSlot).to.not.equal(-1n);
      const base = 2n ** 56n - 10n;
      await ethers.provider.send("hardhat_setStorageAt", [
        await f.engine.getAddress(), ethers.toQuantity(bookSlot), ethers.zeroPadValue(ethers.toBeHex(base | (FEE << 64n)), 32),
      ]);
      const t0 = (await time.latest()) + 10;
      const m = new PendingModel();
      m.written[0] = 1n;
      const headSlot = await pendingHeadSlot(f, 1n, m.head());
      for (let i = 0; i < MAX_PENDING; i++) m.push(await request(f, f.alice, 1n, t0 + i, -E18(1) / 100n, { reduceOnly: true, deadline: t0 + 40 }));
      expect(m.ids).to.deep.equal([...Array(8).keys()].map((i) => base + 1n + BigInt(i)));
      expect(await f.engine.pendingOrders(1n)).to.deep.equal(m.ids);
      expect(await raw(f, headSlot)).to.equal(m.head());
      expect(await raw(f, headSlot + 1n)).to.equal(m.tail());
      expect(m.ids.every((id) => id <= ID_MASK)).to.equal(true);
      let t = t0 + 50;
      for (const id of [m.ids[7], m.ids[0], m.ids[4], m.ids[3], m.ids[5], m.ids[1], m.ids[2], m.ids[6]]) {
        await at(++t);
        await expect(f.engine.connect(f.keeper).executeOrder(id))
          .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
        m.remove(id);
        expect(await f.engine.pendingOrders(1n)).to.deep.equal(m.ids);
        expect(await raw(f, headSlot)).to.equal(m.head());
        expect(await raw(f, headSlot + 1n)).to.equal(m.tail());
      }
      expect(Number((await raw(f, headSlot)) & 0xffn)).to.equal(0);
    });
  });

  // ---------------------------------------------------------------------------------------------- closed positions
  describe("a closed position's stale entry fields", () => {
    const account = (f: SystemFixture, who: Signer, margin: bigint) => openLong(f, who, margin, 0n); // no position
    async function setPrice(f: SystemFixture, which: "eth" | "btc", usd: bigint) {
      await (which === "eth" ? f.ethFeed : f.btcFeed).setAnswer(E8(usd));
      await f.oracle.poke(which === "eth" ? f.weth : f.wbtc);
    }
    /** Funding frozen (setMarketParams accrues to now first, then the rate is 0): every later view uses the stored index. */
    async function freezeFunding(f: SystemFixture) {
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
      await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
    }
    const index = async (f: SystemFixture, m: bigint) => (await f.engine.marketState(m)).fundingIndex;

    it("resisted: close, reopen on the other side, close, reopen on the first side, after price and funding moved: no stale entry is realised, valued, summed into the side aggregates or poolExposure; position() and accountState are the fresh entry's, to the wei", async () => {
      const f = await loadFixture(systemFixture);
      const alice = await account(f, f.alice, USDC(100_000));
      const bob = await account(f, f.bob, USDC(100_000));
      await f.engine.connect(f.bob).modifyPosition(bob, f.ethMarket, -E18(30), 0n); // skew: funding moves
      await time.increase(7_200);
      await setPrice(f, "eth", 2_010n);
      await f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, E18(10), UINT128_MAX);
      const f1 = await index(f, f.ethMarket);
      expect(f1).to.not.equal(0n);
      const net1 = E18(2_010) - f1;
      const slot = await positionSlot(f, alice, f.ethMarket, packPosition(E18(10), net1));
      expect(await raw(f, slot + 1n)).to.equal(E18(2_010));

      // Close at 2,100: realised = 10·(2,100 − F2) − 10·net1, the last time the old entry is read.
      await time.increase(7_200);
      await setPrice(f, "eth", 2_100n);
      const bobBefore = await f.engine.position(bob, f.ethMarket);
      const closeTx = f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, -E18(10), 0n);
      await closeTx;
      const f2 = await index(f, f.ethMarket);
      const realised = mulDivFloorSigned(E18(10) * (E18(2_100) - f2) - E18(10) * net1, 1n, WAD);
      await expect(closeTx).to.emit(f.engine, "PositionModified")
        .withArgs(alice, f.ethMarket, -E18(10), 0n, E18(2_100), realised, tradeFee(E18(10), E18(2_100)));
      // Dirty: size 0 with the old entryNet, the old price in its slot; everything reads zero.
      expect(await raw(f, slot)).to.equal(packPosition(0n, net1));
      expect(await raw(f, slot + 1n)).to.equal(E18(2_010));
      expect(await f.engine.position(alice, f.ethMarket)).to.deep.equal([0n, 0n, 0n]);
      expect(await f.engine.positionMask(alice)).to.equal(0n);
      let st = await f.engine.accountState(alice);
      expect([st.unrealisedPnl, st.notional, st.maintenanceMargin, st.initialMargin, st.health]).to.deep.equal([0n, 0n, 0n, 0n, ethers.MaxUint256]);
      let ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.longEntryNetSum]).to.deep.equal([0n, 0n]);
      expect([ms.shortOI, ms.shortEntryNetSum]).to.deep.equal([E18(30), -E18(30) * (bobBefore.entryPrice - bobBefore.entryFunding)]);
      expect(await f.engine.liquidationFraction(alice)).to.equal(0n);

      // Reopen short at 1,950: nothing realised (no old size), entered at the new price and index.
      await time.increase(7_200);
      await setPrice(f, "eth", 1_950n);
      const shortTx = f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, -E18(4), 0n);
      await expect(shortTx).to.emit(f.engine, "PositionModified")
        .withArgs(alice, f.ethMarket, -E18(4), -E18(4), E18(1_950), 0n, tradeFee(E18(4), E18(1_950)));
      const f3 = await index(f, f.ethMarket);
      expect(await f.engine.position(alice, f.ethMarket)).to.deep.equal([-E18(4), E18(1_950), f3]);
      expect(await raw(f, slot)).to.equal(packPosition(-E18(4), E18(1_950) - f3));
      ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.longEntryNetSum]).to.deep.equal([0n, 0n]);
      expect([ms.shortOI, ms.shortEntryNetSum]).to.deep.equal([
        E18(34), -E18(30) * (bobBefore.entryPrice - bobBefore.entryFunding) - E18(4) * (E18(1_950) - f3),
      ]);

      // Close it at 2,000 (dirty again, now with the short's entry), reopen long 3 at 2,050.
      await time.increase(7_200);
      await setPrice(f, "eth", 2_000n);
      await f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, E18(4), UINT128_MAX);
      expect(await raw(f, slot)).to.equal(packPosition(0n, E18(1_950) - f3));
      expect(await raw(f, slot + 1n)).to.equal(E18(1_950));
      await time.increase(7_200);
      await setPrice(f, "eth", 2_050n);
      await expect(f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, E18(3), UINT128_MAX)).to.emit(f.engine, "PositionModified")
        .withArgs(alice, f.ethMarket, E18(3), E18(3), E18(2_050), 0n, tradeFee(E18(3), E18(2_050)));
      const f5 = await index(f, f.ethMarket);
      expect(await f.engine.position(alice, f.ethMarket)).to.deep.equal([E18(3), E18(2_050), f5]);
      ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.longEntryNetSum]).to.deep.equal([E18(3), E18(3) * (E18(2_050) - f5)]);

      // Valued at 2,120 with funding frozen: PnL, notional and poolExposure from the fresh entries only.
      await setPrice(f, "btc", 30_000n);
      await freezeFunding(f);
      await setPrice(f, "eth", 2_120n);
      const px = E18(2_120);
      const fx = await index(f, f.ethMarket);
      const pa = await f.engine.position(alice, f.ethMarket);
      const pb = await f.engine.position(bob, f.ethMarket);
      const pnl2 = (p: typeof pa) => p.size * (px - p.entryPrice) - p.size * (fx - p.entryFunding);
      st = await f.engine.accountState(alice);
      expect(st.unrealisedPnl).to.equal(mulDivFloorSigned(E18(3) * (px - E18(2_050)) - E18(3) * (fx - f5), 1n, WAD));
      expect(st.notional).to.equal(mulDivUp(E18(3), px, WAD));
      const ceilDivAbs = (x: bigint) => (x + WAD - 1n) / WAD;
      const [longPnl, shortPnl] = [pnl2(pa), pnl2(pb)];
      let profit = 0n;
      let loss = 0n;
      for (const s of [longPnl, shortPnl]) {
        if (s > 0n) profit += ceilDivAbs(s);
        else if (s < 0n) loss += ceilDivAbs(-s);
      }
      const backing = mulDivUp(wDivUp(mulDivUp(E18(30), px, WAD), MAJOR_MARKET.oiCapFraction), 1n, 10n ** 12n);
      const [ok, p, l, b] = await f.engine.poolExposure();
      expect(ok).to.equal(true);
      expect([p, l, b]).to.deep.equal([profit, loss, backing]);
    });

    it("resisted: after a full liquidation the closed slot stays dirty; a reopen in the same market is entered, valued and judged for liquidation on its own entry alone", async () => {
      const f = await loadFixture(systemFixture);
      const alice = await account(f, f.alice, USDC(10_000));
      await f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, E18(25), E18(2_100));
      const f1 = await index(f, f.ethMarket);
      const slot = await positionSlot(f, alice, f.ethMarket, packPosition(E18(25), E18(2_000) - f1));
      await setPrice(f, "eth", 1_500n); // −25 %: the loss (12,500) exceeds the equity
      expect(await f.engine.liquidationFraction(alice)).to.equal(WAD);
      await expect(f.engine.connect(f.keeper).liquidate(alice)).to.emit(f.engine, "Liquidated").withArgs(alice, f.keeper.address, WAD, anyValue, anyValue, anyValue, anyValue, anyValue);
      expect(await raw(f, slot)).to.equal(packPosition(0n, E18(2_000) - f1));
      expect(await raw(f, slot + 1n)).to.equal(E18(2_000));
      expect(await f.engine.position(alice, f.ethMarket)).to.deep.equal([0n, 0n, 0n]);
      expect(await f.engine.positionMask(alice)).to.equal(0n);
      expect(await f.engine.liquidationFraction(alice)).to.equal(0n);
      let ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.longEntryNetSum, ms.shortOI, ms.shortEntryNetSum]).to.deep.equal([0n, 0n, 0n, 0n]);
      // Fresh margin, a reopen at 1,500 (two hours on, the price refreshed): its own entry only.
      await f.usdc.mint(f.alice.address, USDC(10_000));
      await f.usdc.connect(f.alice).approve(f.vault, USDC(10_000));
      await f.vault.connect(f.alice).depositMargin(alice, f.usdc, USDC(10_000));
      await time.increase(7_200);
      await setPrice(f, "eth", 1_500n);
      await expect(f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, E18(2), UINT128_MAX)).to.emit(f.engine, "PositionModified")
        .withArgs(alice, f.ethMarket, E18(2), E18(2), E18(1_500), 0n, tradeFee(E18(2), E18(1_500)));
      const f3 = await index(f, f.ethMarket);
      expect(await f.engine.position(alice, f.ethMarket)).to.deep.equal([E18(2), E18(1_500), f3]);
      ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.longEntryNetSum]).to.deep.equal([E18(2), E18(2) * (E18(1_500) - f3)]);
      await setPrice(f, "btc", 30_000n);
      await freezeFunding(f);
      const fx = await index(f, f.ethMarket);
      const st = await f.engine.accountState(alice);
      expect(st.unrealisedPnl).to.equal(mulDivFloorSigned(E18(2) * (E18(1_500) - E18(1_500)) - E18(2) * (fx - f3), 1n, WAD));
      expect(await f.engine.liquidationFraction(alice)).to.equal(0n);
      // Had the stale long of 25 @ 2,000 been read, the account would show −1,000 of PnL on these 2 ETH. It does not.
      expect(st.unrealisedPnl > -E18(1)).to.equal(true);
    });

    it("resisted: a reduce-only order that reaches a position already closed (dirty zero) is cancelled NothingToReduce(account, market): nothing realised from the stale entry, the account's state unchanged", async () => {
      const f = await loadFixture(reviewFixture);
      const t0 = (await time.latest()) + 10;
      const a = await request(f, f.alice, 1n, t0, -E18(5), { reduceOnly: true });
      const b = await request(f, f.alice, 1n, t0 + 1, -E18(5), { reduceOnly: true });
      await round(f, 2_100, t0 + 5);
      await at(t0 + 6);
      await expect(f.engine.connect(f.keeper).executeOrder(a)).to.emit(f.engine, "OrderExecuted").withArgs(a, 1n, f.keeper.address, E18(2_100), t0 + 5);
      expect(await f.engine.position(1n, f.ethMarket)).to.deep.equal([0n, 0n, 0n]);
      const before = await f.engine.accountState(1n);
      const msBefore = await f.engine.marketState(f.ethMarket);
      await at(t0 + 7);
      await expect(f.engine.connect(f.keeper).executeOrder(b))
        .to.emit(f.engine, "OrderCancelled").withArgs(b, 1n, f.keeper.address, sel(f.engine, "NothingToReduce"))
        .and.not.to.emit(f.engine, "PositionModified");
      expect(await f.engine.accountState(1n)).to.deep.equal(before);
      const ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.longEntryNetSum]).to.deep.equal([msBefore.longOI, msBefore.longEntryNetSum]);
      expect(await f.engine.pendingOrders(1n)).to.deep.equal([]);
      // And a plain (not reduce-only) sell now opens a short at its own fill, not a "reduction" of the stale long.
      const c = await request(f, f.alice, 1n, t0 + 8, -E18(2));
      await round(f, 2_080, t0 + 12);
      await at(t0 + 13);
      await expect(f.engine.connect(f.keeper).executeOrder(c))
        .to.emit(f.engine, "PositionModified").withArgs(1n, f.ethMarket, -E18(2), -E18(2), E18(2_080), 0n, tradeFee(E18(2), E18(2_080)));
      const p = await f.engine.position(1n, f.ethMarket);
      expect([p.size, p.entryPrice, p.entryFunding]).to.deep.equal([-E18(2), E18(2_080), (await f.engine.marketState(f.ethMarket)).fundingIndex]);
    });

    it("resisted: the lens and the keeper's mirror see only open positions (a dirty ETH slot beside an open BTC one) and value the account as accountState does, at the same block, to the wei", async () => {
      const f = await loadFixture(systemFixture);
      const alice = await account(f, f.alice, USDC(100_000));
      const bob = await account(f, f.bob, USDC(100_000));
      await f.engine.connect(f.bob).modifyPosition(bob, f.ethMarket, E18(7), UINT128_MAX);
      await f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, -E18(12), 0n);
      await f.engine.connect(f.alice).modifyPosition(alice, f.btcMarket, E18(1), UINT128_MAX);
      await time.increase(3_000);
      await setPrice(f, "eth", 1_960n);
      await setPrice(f, "btc", 30_400n);
      await f.engine.connect(f.alice).modifyPosition(alice, f.ethMarket, E18(12), UINT128_MAX); // ETH closed: dirty
      await time.increase(600);
      await setPrice(f, "eth", 1_990n);
      await setPrice(f, "btc", 30_100n);
      expect(await f.engine.positionMask(alice)).to.equal(1n << f.btcMarket);
      const block = await ethers.provider.getBlockNumber();
      let data: string | undefined;
      try {
        await ethers.provider.call({ data: lensCallData(await f.engine.getAddress(), [alice, bob]), blockTag: block });
      } catch (e) {
        data = (e as { data?: string }).data;
      }
      const v = decodeLens(data);
      expect(v.blockNumber).to.equal(BigInt(block));
      const [va, vb] = v.accounts;
      expect(va.positionMask).to.equal(1n << f.btcMarket);
      const pbtc = await f.engine.position(alice, f.btcMarket, { blockTag: block });
      expect(va.positions).to.deep.equal([{ size: pbtc.size, entryPrice: pbtc.entryPrice, entryFunding: pbtc.entryFunding }]);
      expect(vb.positions.length).to.equal(1);
      for (const [a, id] of [[va, alice], [vb, bob]] as const) {
        const mirrored = valueAccount(a, v);
        expect(mirrored.priced).to.equal(true);
        const chain = await f.engine.accountState(id, { blockTag: block });
        const { mmNow: _mmNow, ...state } = mirrored.state!;
        expect(state).to.deep.equal({
          collateral: chain.collateral, settlement: chain.settlement, unrealisedPnl: chain.unrealisedPnl, equity: chain.equity,
          notional: chain.notional, maintenanceMargin: chain.maintenanceMargin, initialMargin: chain.initialMargin, health: chain.health,
        });
      }
      expect((await f.engine.accountState(alice, { blockTag: block })).notional).to.equal(mulDivUp(E18(1), E18(30_100), WAD));
    });
  });
});
