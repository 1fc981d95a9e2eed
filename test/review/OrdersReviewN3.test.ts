/**
 * Finding N3 of the second orders review (OrdersReview2.test.ts header), fixed: an LP who also trades could see his
 * order's fill round and then withdraw capital so that the open-interest cap, min(oiCapUsd, oiCapFraction × pool
 * capital), shrank under his own pending increase, which the fill then cancelled with OpenInterestCap — a free option
 * to cancel after seeing the price. The fix (README "Orders"): an order that is not reduce-only reserves |sizeDelta|
 * of open interest on its side at the request, where the cap is checked (the side's open interest + every pending
 * reservation + its own, at the current price rounded up); settling the order releases exactly that; the fill no
 * longer checks the cap. Production MarginEngine (productionFixture): pool capital 1,000,000 USDC, ETH at 2,000,
 * MAJOR_MARKET caps (oiCapUsd 500,000 USD, oiCapFraction 0.5), a 0.5 USDC order fee, no funding.
 */
import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { USDC, E18, E8 } from "../helpers/fixtures";
import { FEE, HOUR, MAX, sel, base, at, ethRound, request, openAt, conserved, floorIm, floorImOf, type F } from "../helpers/orders";
import { DEFAULT_RISK, MAJOR_MARKET } from "../../deploy/params";

type Signer = F["alice"];
const WAD = E18(1);
const USDC_SCALE = 10n ** 12n;

/** `who` opens an account (id returned) with 10,000 USDC margin and a 10 USDC reserve. */
async function trader(f: F, who: Signer): Promise<bigint> {
  const id = (await f.vault.accountCount()) + 1n;
  await f.vault.connect(who).createAccount();
  await f.usdc.mint(who.address, USDC(10_010));
  await f.usdc.connect(who).approve(f.vault, USDC(10_010));
  await f.vault.connect(who).depositMargin(id, f.usdc, USDC(10_000));
  await f.vault.connect(who).deposit(id, f.usdc, USDC(10));
  return id;
}

/** The ETH cap now: min(oiCapUsd, oiCapFraction × pool capital), capital rounded down (WAD USD). */
async function capUsd(f: F): Promise<bigint> {
  const byCapital = ((await f.pool.capital()) * USDC_SCALE * MAJOR_MARKET.oiCapFraction) / WAD;
  return byCapital < MAJOR_MARKET.oiCapUsd ? byCapital : MAJOR_MARKET.oiCapUsd;
}

/** base() plus the LP's own trading account (id 2) and bob's (id 3); past the LP's hold period. */
async function n3() {
  const f = await base();
  await trader(f, f.lp);
  await trader(f, f.bob);
  await time.increase(1_000); // past the LP's hold period: he can withdraw
  return f;
}

describe("Review finding N3: pending orders reserve open interest at the request", () => {
  it("fixed (N3): an LP-trader who sees his fill round and withdraws capital under the cap cannot cancel his increase: it fills at the round", async () => {
    const f = await loadFixture(n3);
    const t = (await time.latest()) + 10;
    const id = await request(f, t, f.ethMarket, E18(10), { who: f.lp, acct: 2n });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(10), 0n]);
    await ethRound(f, 2000, t + 5); // the fill round
    await ethRound(f, 1900, t + 10); // the market moves on: a fill at 2,000 is a 1,000 USD loss for the long
    // He withdraws 970,000 of his 1,000,000 USDC (nothing backs open interest yet): the cap falls to 15,000 USD,
    // below his 10 ETH at 1,900 (19,000 USD) — the check the fill ran before this fix cancelled the order here.
    await f.pool.connect(f.lp).withdraw(USDC(970_000), f.lp.address, f.lp.address);
    expect(await f.pool.capital()).to.equal(USDC(30_000));
    expect(await capUsd(f)).to.equal(E18(15_000));
    await expect(f.engine.connect(f.keeper).executeOrder(id))
      .to.emit(f.engine, "OrderExecuted").withArgs(id, 2n, f.keeper.address, E18(2000), t + 5);
    const p = await f.engine.position(2, f.ethMarket);
    expect([p.size, p.entryPrice]).to.deep.equal([E18(10), E18(2000)]);
    expect((await f.engine.marketState(f.ethMarket)).longOI).to.equal(E18(10));
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    expect(await f.engine.pendingOrders(2)).to.deep.equal([]);
    expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(FEE);
    await conserved(f, [1n, 2n, 3n]);
  });

  it("a request past the cap, pending orders counted, reverts OpenInterestCap(marketId, oiUsd, capUsd) and changes nothing", async () => {
    const f = await loadFixture(n3);
    // margin that backs the large requests below (a request must carry the least IM of what it adds)
    for (const [who, acct, usdc] of [[f.alice, 1n, 40_000n], [f.lp, 2n, 40_000n], [f.bob, 3n, 60_000n]] as const) {
      await f.usdc.mint(who.address, USDC(usdc));
      await f.usdc.connect(who).approve(f.vault, USDC(usdc));
      await f.vault.connect(who).depositMargin(acct, f.usdc, USDC(usdc));
    }
    const t = await openAt(f, f.ethMarket, E18(10), 2000); // alice: long OI 10
    await request(f, t, f.ethMarket, E18(100)); // alice's pending long 100
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(100), 0n]);
    expect(await capUsd(f)).to.equal(E18(500_000)); // oiCapUsd binds: 0.5 × 1,000,010 USDC is more
    const snapshot = async () => [
      await f.engine.lastOrderId(), await f.engine.orderEscrow(), await f.vault.reserveOf(3, f.usdc),
      await f.engine.pendingOpenInterest(f.ethMarket), await f.engine.pendingOrders(3),
      await f.usdc.balanceOf(await f.engine.getAddress()),
    ];
    const before = await snapshot();
    // (10 + 100 + 141) × 2,000 = 502,000 USD > 500,000.
    await at(t + 1);
    await expect(f.engine.connect(f.bob).requestOrder(3, f.ethMarket, E18(141), MAX, t + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OpenInterestCap").withArgs(f.ethMarket, E18(502_000), E18(500_000));
    expect(await snapshot()).to.deep.equal(before);
    // Exactly at the cap: (10 + 100 + 140) × 2,000 = 500,000 USD.
    const id = await request(f, t + 2, f.ethMarket, E18(140), { who: f.bob, acct: 3n });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(240), 0n]);
    expect((await f.engine.order(id)).sizeDelta).to.equal(E18(140));

    // Pool capital binds on the other side: the LP leaves 400,010 USDC (10 USDC of alice's trading fee included),
    // so the cap is 200,005 USD; the short side has nothing open or pending.
    await f.pool.connect(f.lp).withdraw(USDC(600_000), f.lp.address, f.lp.address);
    expect(await f.pool.capital()).to.equal(USDC(400_010));
    expect(await capUsd(f)).to.equal(E18(200_005));
    const after = await snapshot();
    const lp = await f.usdc.balanceOf(f.lp.address);
    const t3 = (await time.latest()) + 1;
    await at(t3);
    await expect(f.engine.connect(f.lp).requestOrder(2, f.ethMarket, -E18(101), 0n, t3 + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OpenInterestCap").withArgs(f.ethMarket, E18(202_000), E18(200_005));
    expect(await snapshot()).to.deep.equal(after);
    expect(await f.vault.reserveOf(2, f.usdc)).to.equal(USDC(10));
    expect(await f.usdc.balanceOf(f.lp.address)).to.equal(lp);
    await request(f, t3 + 1, f.ethMarket, -E18(100), { who: f.lp, acct: 2n }); // 200,000 USD: within it
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(240), E18(100)]);
    await conserved(f, [1n, 2n, 3n]);
  });

  it("reservations are released exactly on fill, on cancel (PriceNotAcceptable) and on expiry", async () => {
    const f = await loadFixture(n3);
    const t = (await time.latest()) + 10;
    const buy = await request(f, t, f.ethMarket, E18(5)); // alice
    const sell = await request(f, t + 1, f.ethMarket, -E18(3), { who: f.bob, acct: 3n, limit: E18(2001) });
    const third = await request(f, t + 2, f.ethMarket, -E18(7), { who: f.lp, acct: 2n });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(5), E18(10)]);
    await ethRound(f, 2000, t + 10); // the fill round of the first two
    await expect(f.engine.connect(f.keeper).executeOrder(buy))
      .to.emit(f.engine, "OrderExecuted").withArgs(buy, 1n, f.keeper.address, E18(2000), t + 10);
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, E18(10)]);
    expect((await f.engine.marketState(f.ethMarket)).longOI).to.equal(E18(5));
    // Bob's sell refuses anything below 2,001: cancelled, his 3 released.
    await expect(f.engine.connect(f.keeper).executeOrder(sell))
      .to.emit(f.engine, "OrderCancelled").withArgs(sell, 3n, f.keeper.address, sel(f.engine, "PriceNotAcceptable"));
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, E18(7)]);
    expect((await f.engine.position(3, f.ethMarket)).size).to.equal(0n);
    // The LP's sell fills at the same round: his 7 move from pending to open interest.
    await expect(f.engine.connect(f.keeper).executeOrder(third))
      .to.emit(f.engine, "OrderExecuted").withArgs(third, 2n, f.keeper.address, E18(2000), t + 10);
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    // An order that gets no round by its deadline expires and releases its reservation.
    const t2 = t + 20;
    const late = await request(f, t2, f.ethMarket, -E18(4), { who: f.bob, acct: 3n, deadline: t2 + 60 });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, E18(4)]);
    await at(t2 + 61); // no ETH round came by the deadline
    await expect(f.engine.connect(f.keeper).executeOrder(late))
      .to.emit(f.engine, "OrderCancelled").withArgs(late, 3n, f.keeper.address, sel(f.engine, "OrderExpired"));
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    const st = await f.engine.marketState(f.ethMarket);
    expect([st.longOI, st.shortOI]).to.deep.equal([E18(5), E18(7)]);
    await conserved(f, [1n, 2n, 3n]);
  });

  it("a reduce-only order reserves nothing, needs no price at the request and releases nothing when settled", async () => {
    const f = await loadFixture(n3);
    const t = await openAt(f, f.ethMarket, E18(10), 2000);
    const id = await request(f, t, f.ethMarket, -E18(4), { reduceOnly: true });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    // The latest ETH round stamped ahead of the chain: no price now. An order that may add risk is refused by name;
    // a reduce-only one is still accepted (and reserves nothing).
    const [rid] = await f.ethFeed.latestRoundData();
    await at(t + 1);
    await f.ethFeed.setRound(rid + 1n, E8(2000), t + 100, t + 100);
    await at(t + 2);
    await expect(f.engine.connect(f.bob).requestOrder(3, f.ethMarket, -E18(1), 0n, t + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(await f.weth.getAddress());
    const second = await request(f, t + 3, f.ethMarket, -E18(2), { reduceOnly: true });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    await ethRound(f, 1990, t + 110);
    // The first fills at the round stamped t + 100 (after its request), the second at the one after (its request
    // recorded the stamped round as the latest).
    await expect(f.engine.connect(f.keeper).executeOrder(id))
      .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(2000), t + 100);
    await expect(f.engine.connect(f.keeper).executeOrder(second))
      .to.emit(f.engine, "OrderExecuted").withArgs(second, 1n, f.keeper.address, E18(1990), t + 110);
    expect((await f.engine.position(1, f.ethMarket)).size).to.equal(E18(4));
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
    const st = await f.engine.marketState(f.ethMarket);
    expect([st.longOI, st.shortOI]).to.deep.equal([E18(4), 0n]);
  });

  it("cap squatting (what N3's fix opened) is closed: a request must be backed by the least IM of what it adds", async () => {
    const f = await loadFixture(n3);
    // bob (account 3, 10,000 USDC of equity, no position) asks for 240 ETH: 480,000 USD, within the 500,000 cap
    const t = (await time.latest()) + 10;
    await at(t);
    const required = floorIm(E18(240 * 2000));
    const equity = (await f.engine.accountState(3)).equity;
    expect(equity).to.equal(E18(10_000));
    const before = [await f.engine.lastOrderId(), await f.engine.pendingOpenInterest(f.ethMarket), await f.vault.reserveOf(3, f.usdc)];
    await expect(f.engine.connect(f.bob).requestOrder(3, f.ethMarket, E18(240), MAX, t + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin")
      .withArgs(3n, equity, required);
    expect([await f.engine.lastOrderId(), await f.engine.pendingOpenInterest(f.ethMarket), await f.vault.reserveOf(3, f.usdc)]).to.deep.equal(before);
    // what his equity backs is accepted: 28 ETH (56,000 USD of notional) is within the bound
    const ok = 28n;
    const okUsd = E18(Number(ok) * 2000);
    expect(floorIm(okUsd)).to.be.lte(equity);
    await request(f, t + 1, f.ethMarket, E18(ok), { who: f.bob, acct: 3n });
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(ok), 0n]);
  });

  describe("the backing check's reviews (M1, M2, M3): the whole account with |Δ| added, at the σ floors", () => {
    /** bob (account 3) holds 28 ETH long, filled at 2,000; returns a time after it. */
    async function holding(f: F): Promise<number> {
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(28), { who: f.bob, acct: 3n });
      await ethRound(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
      return t + 10;
    }

    async function refused(f: F, t: number, market: bigint, size: bigint, required: bigint) {
      const equity = (await f.engine.accountState(3)).equity;
      expect(equity).to.be.lt(required);
      const before = [await f.engine.lastOrderId(), await f.engine.pendingOpenInterest(market), await f.vault.reserveOf(3, f.usdc)];
      await at(t);
      await expect(f.engine.connect(f.bob).requestOrder(3, market, size, size > 0n ? MAX : 0n, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin")
        .withArgs(3n, equity, required);
      expect([await f.engine.lastOrderId(), await f.engine.pendingOpenInterest(market), await f.vault.reserveOf(3, f.usdc)]).to.deep.equal(before);
    }

    it("M1 fixed: a fully used account cannot reserve its position's size again — the existing position's margin counts", async () => {
      const f = await loadFixture(n3);
      const t = await holding(f);
      // The check before this fix backed only what the order adds (28 ETH more: within 10,000 USDC of equity); the
      // account as the fill would leave it, 56 ETH, needs more than it has at any volatility.
      const equity = (await f.engine.accountState(3)).equity;
      expect(floorImOf(E18(28 * 2000)) + DEFAULT_RISK.keeperReward).to.be.lte(equity);
      await refused(f, t, f.ethMarket, E18(28), floorIm(E18(56 * 2000)));
      // on another market too: 1.5 BTC at 30,000 (the fixture's price), with the ETH position's margin counted
      expect(await f.oracle.price(await f.wbtc.getAddress())).to.equal(E18(30_000));
      await refused(f, t + 1, f.btcMarket, E18(3) / 2n, floorIm(E18(28 * 2000), E18(45_000)));
    });

    it("M2, M3 fixed: an order against the position is backed for the position and all of |Δ| it reserves; reduce-only needs nothing", async () => {
      const f = await loadFixture(n3);
      const t = await holding(f);
      // selling 56 ETH reserves 56 ETH of the short side while the 28 ETH long may stay (an order that never fills):
      // backed for 28 + 56 ETH, not for the 28 short it would leave (M2) nor the 56 alone (M3: the long's margin)
      await refused(f, t, f.ethMarket, -E18(56), floorIm(E18(84 * 2000)));
      // a reduction asked for without reduceOnly reserves its 10 ETH of the short side too: backed for 38 ETH
      await refused(f, t + 1, f.ethMarket, -E18(10), floorIm(E18(38 * 2000)));
      // the same sale reduce-only needs no backing and reserves nothing; it fills as a sale
      const close = await request(f, t + 2, f.ethMarket, -E18(10), { who: f.bob, acct: 3n, reduceOnly: true });
      expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, 0n]);
      expect((await f.engine.order(close)).reduceOnly).to.equal(true);
      await ethRound(f, 2000, t + 3);
      await expect(f.engine.connect(f.keeper).executeOrder(close)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(3, f.ethMarket)).size).to.equal(E18(18));
      // what the margin does back is accepted: 18 ETH held + a sale of 10 (28 ETH at the σ floor, within the equity)
      expect(floorIm(E18(28 * 2000))).to.be.lte((await f.engine.accountState(3)).equity);
      const sell = await request(f, t + 10, f.ethMarket, -E18(10), { who: f.bob, acct: 3n });
      expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([0n, E18(10)]);
      expect((await f.engine.order(sell)).reduceOnly).to.equal(false);
    });
  });
});
