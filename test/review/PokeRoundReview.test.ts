/**
 * Adversarial review of 2ae6d62 + a5090d4 ("OracleRouter.pokeRound", "TradeLogic.requestOrder under 50 lines"): a
 * risk order's `afterRound` now comes from `pokeRound` (the same feed read as its price; from `_latestRound` when the
 * price is served from the router's transient cache), and the backing check takes that price instead of poking again.
 * Goal of the attacks: an `afterRound` older than the feed's latest round at the request (a fill at a round the
 * trader had seen), or a backing price other than the router's in the same transaction. Before the change
 * (8749f30~2) the request called `poke` then `latestRound(asset)`, and the backing `poke` again (served from cache).
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { E18, E8, USDC } from "../helpers/fixtures";
import { base, at, ethRound, openAt, floorIm, FEE, HOUR, MAX, type F } from "../helpers/orders";
import type { PokeThenRequest } from "../../typechain-types";

const NONE = 0, POKE = 1, POKE_MARKET = 2, POKE_ROUND = 3; // the helper's first door
const STAY = 0, NEXT = 1, ROUND_ZERO = 2, REVERTS = 3; // the helper's feed move before the request

interface R extends F {
  helper: PokeThenRequest;
  weth: F["weth"];
}

/** `base` (alice's account 1: 10,000 USDC margin, 10 USDC reserve, 0.5 USDC order fee), the feed's latest round
 *  moved to id 500 (2,000 USD), and the helper as account 1's operator. */
async function fixture(): Promise<R> {
  const f = await base();
  const t = (await time.latest()) + 10;
  await at(t);
  await f.ethFeed.setRound(500, E8(2000), t, t);
  const helper = await (await ethers.getContractFactory("PokeThenRequest")).deploy();
  await f.vault.connect(f.alice).setOperator(1, helper, true);
  return { ...f, helper };
}

/** The helper's request for account 1 (ETH) at block time `t`, after `door` and `move` in the same transaction. */
async function viaHelper(f: R, t: number, door: number, move: number, answer: bigint, size: bigint, reduceOnly = false) {
  await at(t);
  return f.helper.run(f.oracle, f.engine, f.ethFeed, f.weth, door, move, answer, {
    accountId: 1n, marketId: f.ethMarket, sizeDelta: size, acceptablePrice: size > 0n ? MAX : 0n, deadline: t + HOUR, reduceOnly,
  });
}

/** Order `id` was requested at `t` with afterRound `round`: the event, the stored order and (if helped) the router's
 *  latestRound read right after the request in the same transaction all say `round`. */
async function expectRound(f: R, tx: Promise<unknown>, id: bigint, size: bigint, t: number, round: bigint, reduceOnly = false) {
  await expect(tx).to.emit(f.engine, "OrderRequested")
    .withArgs(id, 1n, f.ethMarket, size, size > 0n ? MAX : 0n, t + HOUR, reduceOnly, round, FEE);
  expect((await f.engine.order(id)).afterRound).to.equal(round);
}

const state = async (f: R) => [
  await f.engine.lastOrderId(), [...(await f.engine.pendingOpenInterest(f.ethMarket))], await f.vault.reserveOf(1, f.usdc),
  [...(await f.oracle.observation(f.weth))],
];

describe("review: pokeRound and the request's afterRound", () => {
  it("resisted: a plain request records afterRound = latestRound (500) for a risk order and a reduce-only one", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    await at(t);
    const tx = f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + HOUR, false);
    await expectRound(f, tx, 1n, E18(1), t, 500n);
    await at(t + 1);
    const ro = f.engine.connect(f.alice).requestOrder(1, f.ethMarket, -E18(1), 0n, t + 1 + HOUR, true);
    await expect(ro).to.emit(f.engine, "OrderRequested").withArgs(2n, 1n, f.ethMarket, -E18(1), 0n, t + 1 + HOUR, true, 500n, FEE);
    expect(await f.oracle.latestRound(f.weth)).to.equal(500n);
  });

  for (const [door, name] of [[POKE, "poke"], [POKE_MARKET, "pokeMarket"], [POKE_ROUND, "pokeRound"]] as const) {
    it(`resisted: ${name} then request in one tx (cached path), feed unchanged: afterRound 500, price 2,000`, async () => {
      const f = await loadFixture(fixture);
      const t = (await time.latest()) + 10;
      await expectRound(f, viaHelper(f, t, door, STAY, 0n, E18(1)), 1n, E18(1), t, 500n);
      expect([await f.helper.pokedPrice(), await f.helper.pokedRound(), await f.helper.latestAfter(), await f.helper.priceAfter()])
        .to.deep.equal([E18(2000), door === POKE_ROUND ? 500n : 0n, 500n, E18(2000)]);
      expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(1), 0n]);
    });

    it(`resisted: ${name}, the feed moves to round 501 (2,100) in the same tx, then request: afterRound 501, not 500; the fill waits for 502`, async () => {
      const f = await loadFixture(fixture);
      const t = (await time.latest()) + 10;
      await expectRound(f, viaHelper(f, t, door, NEXT, E8(2100), E18(1)), 1n, E18(1), t, 501n);
      // the router's price stays the one accepted earlier in the tx; its latest round is the feed's new one
      expect([await f.helper.latestAfter(), await f.helper.priceAfter()]).to.deep.equal([501n, E18(2000)]);
      await at(t + 2);
      await expect(f.engine.connect(f.keeper).executeOrder(1)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(1n, 501n);
      await ethRound(f, 2050, t + 5);
      await at(t + 6);
      await expect(f.engine.connect(f.keeper).executeOrder(1)).to.emit(f.engine, "OrderExecuted").withArgs(1n, 1n, f.keeper.address, E18(2050), t + 5);
    });
  }

  it("resisted: the same request with the feed moved BEFORE any poke (no cache) reads 501 and 2,100 fresh", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    await expectRound(f, viaHelper(f, t, NONE, NEXT, E8(2100), E18(1)), 1n, E18(1), t, 501n);
    expect([await f.helper.latestAfter(), await f.helper.priceAfter()]).to.deep.equal([501n, E18(2100)]);
  });

  it("resisted: pokeRound served from the cache after the feed moved returns the feed's latest round (501), as latestRound", async () => {
    const f = await loadFixture(fixture);
    const r = await f.helper.pokeMovePokeRound.staticCall(f.oracle, f.ethFeed, f.weth, E8(2100));
    expect([...r]).to.deep.equal([true, E18(2000), 501n, 501n]);
  });

  it("resisted: a feed at round id 0 — plain, poke→next round, poke→back to id 0 — afterRound is always latestRound (0, 1, 0)", async () => {
    let f = await loadFixture(fixture);
    let t = (await time.latest()) + 10;
    await at(t);
    await f.ethFeed.setRound(0, E8(2000), t, t);
    await at(t + 1);
    await expectRound(f, f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + 1 + HOUR, false), 1n, E18(1), t + 1, 0n);
    // poke at round 0 (pokeRound's own read gives 0: the fallback reads the feed again, still 0), then round 1
    f = await loadFixture(fixture);
    t = (await time.latest()) + 10;
    await at(t);
    await f.ethFeed.setRound(0, E8(2000), t, t);
    await expectRound(f, viaHelper(f, t + 1, POKE_ROUND, NEXT, E8(2000), E18(1)), 1n, E18(1), t + 1, 1n);
    expect([await f.helper.pokedRound(), await f.helper.latestAfter()]).to.deep.equal([0n, 1n]);
    // poke at 500, the feed's id goes to 0 in the same tx: the cached path's fallback reads 0, as latestRound does
    f = await loadFixture(fixture);
    t = (await time.latest()) + 10;
    await expectRound(f, viaHelper(f, t, POKE, ROUND_ZERO, E8(2000), E18(1)), 1n, E18(1), t, 0n);
    expect(await f.helper.latestAfter()).to.equal(0n);
  });

  it("resisted: backing of a market not held takes the router's price of the tx — 2,000 poked before a 2,400 round, 2,400 without the poke", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    await expect(viaHelper(f, t, POKE, NEXT, E8(2400), E18(100)))
      .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(1n, E18(10_000), floorIm(E18(200_000)));
    await expect(viaHelper(f, t + 1, NONE, NEXT, E8(2400), E18(100)))
      .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(1n, E18(10_000), floorIm(E18(240_000)));
    expect(await f.engine.lastOrderId()).to.equal(0n);
  });

  it("resisted: backing of a held market (found in the account's poke) uses the same cached 2,000 after an in-tx 2,400 round", async () => {
    const f = await loadFixture(fixture);
    await openAt(f, f.ethMarket, E18(1), 2000);
    const equity = (await f.engine.accountState(1)).equity;
    const t = (await time.latest()) + 10;
    await expect(viaHelper(f, t, POKE_MARKET, NEXT, E8(2400), E18(100)))
      .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin").withArgs(1n, equity, floorIm(E18(202_000)));
  });

  it("resisted: a breaker trip (2,000 → 2,600) reverts OracleUnhealthy(WETH) and stores nothing, with or without an earlier poke", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    await ethRound(f, 2600, t);
    const before = await state(f);
    await at(t + 1);
    await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + 1 + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    await expect(viaHelper(f, t + 2, POKE, STAY, 0n, E18(1))).to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    await expect(viaHelper(f, t + 3, POKE_ROUND, STAY, 0n, E18(1))).to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    expect(await state(f)).to.deep.equal(before);
    expect((await f.oracle.observation(f.weth)).tripped).to.equal(false); // the trip itself was rolled back
  });

  it("resisted: a stale price (heartbeat + 1 s) and an out-of-band one (1 USD) revert OracleUnhealthy(WETH), store nothing; reduce-only still requests", async () => {
    const f = await loadFixture(fixture);
    const t0 = Number((await f.ethFeed.latestRoundData())[3]);
    const before = await state(f);
    await at(t0 + 2 * HOUR + 1);
    await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t0 + 3 * HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    await expect(viaHelper(f, t0 + 2 * HOUR + 2, POKE, STAY, 0n, E18(1))).to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    expect(await state(f)).to.deep.equal(before);
    await at(t0 + 2 * HOUR + 3);
    await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, -E18(1), 0n, t0 + 3 * HOUR, true))
      .to.emit(f.engine, "OrderRequested").withArgs(1n, 1n, f.ethMarket, -E18(1), 0n, t0 + 3 * HOUR, true, 500n, FEE);
    const t = t0 + 2 * HOUR + 10;
    await ethRound(f, 2000, t); // fresh again (round 501)
    await ethRound(f, 1, t + 1); // out of the band (1 USD <= minPrice)
    const mid = await state(f);
    await expect(viaHelper(f, t + 2, NONE, STAY, 0n, E18(1))).to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    expect(await state(f)).to.deep.equal(mid);
  });

  it("resisted: the feed reverting after an in-tx poke reverts the request FeedCallFailed(WETH) (as latestRound did before); without the poke OracleUnhealthy(WETH)", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    const before = await state(f);
    await expect(viaHelper(f, t, POKE, REVERTS, 0n, E18(1))).to.be.revertedWithCustomError(f.oracle, "FeedCallFailed").withArgs(f.weth);
    await expect(viaHelper(f, t + 1, NONE, REVERTS, 0n, E18(1))).to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(f.weth);
    expect(await state(f)).to.deep.equal(before);
    expect(await f.vault.reserveOf(1, f.usdc)).to.equal(USDC(10));
  });

  it("resisted: a reduce-only order after an in-tx poke and a new round gets the new round (501) too", async () => {
    const f = await loadFixture(fixture);
    const t = (await time.latest()) + 10;
    await expectRound(f, viaHelper(f, t, POKE_ROUND, NEXT, E8(2100), -E18(1), true), 1n, -E18(1), t, 501n, true);
    expect(await f.helper.latestAfter()).to.equal(501n);
  });
});
