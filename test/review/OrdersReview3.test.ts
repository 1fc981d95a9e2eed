/**
 * Third adversarial review of the order changes of 881e558 (OrderSlot repacked; OracleRouter.roundAfter(asset, roundId,
 * time); MarginEngine._fillRound try/catch and _cancelReason(err, pastDeadline)). The test named "fixed (R1):" failed on
 * 881e558 (an 18-decimal settlement token capped the order fee at 0.072 USD) and passes since the fee has 72 bits;
 * "limit: ..." tests pin a behaviour that is by design but worth knowing (README "Orders"); the rest are regression
 * tests of attacks the code resisted, with exact values.
 */
import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { USDC, E18, E8 } from "../helpers/fixtures";
import { FEE, HOUR, MAX, sel, base, at, ethRound, request, conserved, type F } from "../helpers/orders";
import { CRYPTO_FEED, DEFAULT_REBALANCER, HAIRCUTS } from "../../deploy/params";
import { deployCore } from "../../deploy/system";
import { MockAggregator__factory, MockERC20__factory } from "../../typechain-types";

const DAY = 86_400;

async function latestEthId(f: F): Promise<bigint> {
  return (await f.ethFeed.latestRoundData())[0];
}
async function settleOrder(f: F, id: bigint, opts: { gasLimit?: number } = {}) {
  const rc = await (await f.engine.connect(f.keeper).executeOrder(id, opts)).wait();
  const evs = rc!.logs.map((l) => { try { return f.engine.interface.parseLog(l); } catch { return null; } });
  return evs.find((e) => e?.name === "OrderExecuted" || e?.name === "OrderCancelled")!;
}

describe("Third review of 881e558: order slot, roundAfter(time), _fillRound", () => {
  describe("(1) boundaries", () => {
    it("deadline bounds: now+1 and now+1 day are accepted (lifetime 1 and 86,400); now and now+1 day+1 are refused", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      await at(t);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t, false))
        .to.be.revertedWithCustomError(f.engine, "InvalidDeadline").withArgs(t, t + 1, t + DAY);
      await at(t + 1);
      await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + 1 + DAY + 1, false))
        .to.be.revertedWithCustomError(f.engine, "InvalidDeadline").withArgs(t + 1 + DAY + 1, t + 2, t + 1 + DAY);
      const a = await request(f, t + 2, f.ethMarket, E18(1), { deadline: t + 2 + DAY });
      let o = await f.engine.order(a);
      expect([o.requestedAt, o.deadline, o.afterRound, o.fee, o.accountId]).to.deep.equal([BigInt(t + 2), BigInt(t + 2 + DAY), 1n, FEE, 1n]);
      const b = await request(f, t + 3, f.ethMarket, -E18(1), { deadline: t + 4, reduceOnly: true });
      o = await f.engine.order(b);
      expect([o.requestedAt, o.deadline, o.reduceOnly]).to.deep.equal([BigInt(t + 3), BigInt(t + 4), true]);
    });

    it("order(id) of an unknown or a settled id is all zeros (deadline 0, not requestedAt + lifetime of garbage)", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 });
      const zero = [0n, 0n, 0n, 0n, 0n, 0n, 0n, 0n, false];
      expect([...(await f.engine.order(id + 1n))]).to.deep.equal(zero);
      await at(t + 61);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      expect([...(await f.engine.order(id))]).to.deep.equal(zero);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
      await expect(f.engine.connect(f.keeper).executeOrder(0)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(0n);
    });

    it("a round stamped at the request's second (updatedAt == requestedAt) is skipped; the first later one fills", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1));
      const r = await latestEthId(f);
      await at(t + 1);
      await f.ethFeed.setRound(r + 1n, E8(1500), t, t); // the request's own second: known at the request
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(id, r);
      await ethRound(f, 2050, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(2050), t + 5);
    });

    it("3 rounds of the request's second are skipped (4th id fills); with 4 the order cancels OrderRoundUnavailable (MAX_ROUNDS_IN_REQUEST_SECOND)", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + HOUR });
      const r = await latestEthId(f);
      await at(t + 1);
      for (let i = 1n; i <= 3n; i++) await f.ethFeed.setRound(r + i, E8(1500), t, t);
      await ethRound(f, 2050, t + 5); // r + 4
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(2050), t + 5);

      const t2 = t + 100;
      const id2 = await request(f, t2, f.ethMarket, -E18(1), { reduceOnly: true });
      const r2 = await latestEthId(f);
      await at(t2 + 1);
      for (let i = 1n; i <= 4n; i++) await f.ethFeed.setRound(r2 + i, E8(1500), t2, t2);
      // While r2 + 4 is the latest, the round after the request's second could still come: yet the order cancels.
      await expect(f.engine.connect(f.keeper).executeOrder(id2))
        .to.emit(f.engine, "OrderCancelled").withArgs(id2, 1n, f.keeper.address, sel(f.engine, "OrderRoundUnavailable"));
    });

    it("fill round at exactly the deadline fills; at deadline + 1 expires; NotYet at block time == deadline is OrderNotReady", async () => {
      const f = await loadFixture(base);
      let t = (await time.latest()) + 10;
      const a = await request(f, t, f.ethMarket, E18(1), { deadline: t + 30 });
      await ethRound(f, 2010, t + 30);
      await expect(f.engine.connect(f.keeper).executeOrder(a))
        .to.emit(f.engine, "OrderExecuted").withArgs(a, 1n, f.keeper.address, E18(2010), t + 30);

      t += 100;
      const b = await request(f, t, f.ethMarket, -E18(1), { deadline: t + 30, reduceOnly: true });
      await at(t + 30);
      await expect(f.engine.connect(f.keeper).executeOrder(b)).to.be.revertedWithCustomError(f.engine, "OrderNotReady");
      await ethRound(f, 2010, t + 31);
      await expect(f.engine.connect(f.keeper).executeOrder(b))
        .to.emit(f.engine, "OrderCancelled").withArgs(b, 1n, f.keeper.address, sel(f.engine, "OrderExpired"));
      expect((await f.engine.position(1, f.ethMarket)).size).to.equal(E18(1));
    });

    it("fee at the bound: 100 USDC (MAX_ORDER_FEE_USD) is escrowed and paid exactly; 100 USDC + 1 unit is refused", async () => {
      const f = await loadFixture(base);
      await expect(f.engine.setOrderFee(USDC(100) + 1n)).to.be.revertedWithCustomError(f.engine, "OrderFeeTooHigh").withArgs(USDC(100) + 1n, USDC(100));
      await f.engine.setOrderFee(USDC(100));
      await f.vault.connect(f.alice).deposit(1, f.usdc, USDC(100));
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 });
      expect((await f.engine.order(id)).fee).to.equal(USDC(100));
      expect(await f.engine.orderEscrow()).to.equal(USDC(100));
      expect(await f.vault.reserveOf(1, f.usdc)).to.equal(USDC(10));
      await at(t + 61);
      await f.engine.connect(f.keeper).executeOrder(id);
      expect(await f.engine.orderEscrow()).to.equal(0n);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(USDC(100));
      await conserved(f, [1n]);
    });

    it("fixed (R1): with an 18-decimal settlement token the order fee reaches MAX_ORDER_FEE_USD = 100 USD, and no more", async () => {
      const [deployer] = await ethers.getSigners();
      const dai = await new MockERC20__factory(deployer).deploy("Dai", "DAI", 18);
      const weth = await new MockERC20__factory(deployer).deploy("Wrapped Ether", "WETH", 18);
      const core = await deployCore(deployer, await dai.getAddress(), HAIRCUTS.USDC, await weth.getAddress(), { ...DEFAULT_REBALANCER, orderFee: 0n });
      // deploy/networks.ts L1_KEEPER pays 10 USD an order; 881e558 refused anything above 0.072 USD
      // (OrderFeeTooHigh(10e18, 2^56 - 1)); the order's fee now has 72 bits.
      await expect(core.engine.setOrderFee(E18(10))).to.emit(core.engine, "OrderFeeSet").withArgs(E18(10));
      await expect(core.engine.setOrderFee(E18(100))).to.emit(core.engine, "OrderFeeSet").withArgs(E18(100));
      await expect(core.engine.setOrderFee(E18(100) + 1n))
        .to.be.revertedWithCustomError(core.engine, "OrderFeeTooHigh")
        .withArgs(E18(100) + 1n, E18(100));
    });
  });

  describe("(2) picking the outcome through _fillRound's try/catch", () => {
    it("a feed that reverts before the deadline holds the order (FeedCallFailed bubbles, no cancel); it recovers and fills at the owed round", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 });
      await ethRound(f, 1990, t + 5); // the fill round
      await f.ethFeed.setReverting(true);
      await at(t + 60); // block time == deadline: still "before"
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.be.revertedWithCustomError(f.oracle, "FeedCallFailed").withArgs(await f.weth.getAddress());
      await f.ethFeed.setReverting(false);
      await ethRound(f, 2100, t + 62);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(1990), t + 5);
    });

    it("limit: past the deadline an owed, in-time fill becomes OrderExpired whenever the feed happens to revert (an intermittent feed is an option for whoever executes)", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 });
      await ethRound(f, 1990, t + 5); // the fill round, in time, never executed before the deadline
      await at(t + 61);
      expect(await f.engine.connect(f.alice).executeOrder.staticCall(id)).to.equal(true); // fill
      await f.ethFeed.setReverting(true);
      await time.increaseTo(t + 62);
      const cancelGas = await f.engine.connect(f.alice).executeOrder.estimateGas(id);
      console.log(`      cancel path with a reverting feed: executeOrder ${cancelGas} gas (incl. 21k)`);
      await expect(f.engine.connect(f.alice).executeOrder(id))
        .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.alice.address, sel(f.engine, "OrderExpired"));
      expect((await f.engine.position(1, f.ethMarket)).size).to.equal(0n);
      expect(await f.engine.keeperRewardsOf(f.alice)).to.equal(FEE); // the trader, as keeper, is even paid his own fee
    });

    it("gas griefing measured: no gas limit makes a past-deadline in-time fill (3 skipped same-second rounds: 4 feed reads) cancel", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 60 });
      const r = await latestEthId(f);
      await at(t + 1);
      for (let i = 1n; i <= 3n; i++) await f.ethFeed.setRound(r + i, E8(1500), t, t);
      await ethRound(f, 1990, t + 5); // r + 4: found by the 4th read
      await ethRound(f, 2000, t + 30); // r + 5: the latest, so r + 1..r + 4 are read with getRoundData
      await time.increaseTo(t + 61);
      const weth = await f.weth.getAddress();
      const routerGas = await f.oracle.roundAfter.estimateGas(weth, r, t);
      const full = await f.engine.connect(f.keeper).executeOrder.estimateGas(id);
      let cancels = 0; let fills = 0; let reverts = 0; let minFill = 0n;
      for (let g = 22_000n; g <= full + 2_000n; g += 97n) {
        try {
          const filled = await f.engine.connect(f.keeper).executeOrder.staticCall(id, { gasLimit: g });
          if (filled) { fills++; if (minFill === 0n) minFill = g; } else cancels++;
        } catch { reverts++; }
      }
      console.log(`      roundAfter ${routerGas} gas (incl. 21k), executeOrder ${full}; sweep: ${reverts} reverts, ${fills} fills (from ${minFill}), ${cancels} cancels`);
      expect(cancels).to.equal(0);
      expect(fills).to.be.greaterThan(0);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "OrderExecuted").withArgs(id, 1n, f.keeper.address, E18(1990), t + 5);
    });

    it("gas griefing measured: before the deadline no gas limit makes getRoundData's swallowed OOG an OrderRoundUnavailable", async () => {
      const f = await loadFixture(base);
      const t = (await time.latest()) + 10;
      const id = await request(f, t, f.ethMarket, E18(1), { deadline: t + HOUR });
      await ethRound(f, 1990, t + 5); // read by getRoundData (not the latest)
      await ethRound(f, 2000, t + 30);
      await time.increaseTo(t + 40);
      const full = await f.engine.connect(f.keeper).executeOrder.estimateGas(id);
      let cancels = 0; let fills = 0;
      for (let g = 22_000n; g <= full + 2_000n; g += 89n) {
        try {
          const filled = await f.engine.connect(f.keeper).executeOrder.staticCall(id, { gasLimit: g });
          if (filled) fills++; else cancels++;
        } catch { /* reverted: order stays */ }
      }
      expect(cancels).to.equal(0);
      expect(fills).to.be.greaterThan(0);
    });
  });

  describe("(3) money: the escrow over every cancel path", () => {
    it("Expired (no round / late round / dead feed), Unavailable, PriceInvalid, PriceNotAcceptable: each moves exactly the fee from escrow to the keeper", async () => {
      const f = await loadFixture(base);
      const reserve0 = await f.vault.reserveOf(1, f.usdc);
      let t = (await time.latest()) + 10;
      const cancelled: [bigint, string][] = [];
      // (each path below leaves exactly FEE in escrow before the call and 0 after it)
      const expectCancel = async (id: bigint, reason: string) => {
        expect(await f.engine.orderEscrow()).to.equal(FEE);
        await expect(f.engine.connect(f.keeper).executeOrder(id))
          .to.emit(f.engine, "OrderCancelled").withArgs(id, 1n, f.keeper.address, sel(f.engine, reason));
        cancelled.push([id, reason]);
        expect(await f.engine.orderEscrow()).to.equal(0n);
        expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(BigInt(cancelled.length) * FEE);
        expect(await f.vault.reserveOf(1, f.usdc)).to.equal(reserve0 - BigInt(cancelled.length) * FEE);
        expect((await f.engine.position(1, f.ethMarket)).size).to.equal(0n);
        await conserved(f, [1n]);
      };
      // no round by the deadline
      let id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 20 });
      await at(t + 21); await expectCancel(id, "OrderExpired");
      // fill round after the deadline
      t += 100; id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 20 });
      await ethRound(f, 2000, t + 25); await expectCancel(id, "OrderExpired");
      // dead feed past the deadline
      t += 100; id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 20 });
      await f.ethFeed.setReverting(true); await at(t + 21); await expectCancel(id, "OrderExpired");
      await f.ethFeed.setReverting(false);
      // non-positive answer at the fill round
      t += 100; id = await request(f, t, f.ethMarket, E18(1), { deadline: t + 20 });
      await ethRound(f, -1n, t + 5); await expectCancel(id, "OrderPriceInvalid");
      await ethRound(f, 2000, t + 10);
      // limit missed
      t += 100; id = await request(f, t, f.ethMarket, E18(1), { limit: E18(1999), deadline: t + 20 });
      await ethRound(f, 2000, t + 5); await expectCancel(id, "PriceNotAcceptable");
      // recorded round lost to a feed replacement with a lower numbering
      t += 100; id = await request(f, t, f.ethMarket, E18(1), { deadline: t + HOUR });
      const feed = await new MockAggregator__factory(f.deployer).deploy(8);
      await at(t + 5); await feed.setRound(1n, E8(2000), t + 5, t + 5);
      await f.oracle.setFeed(await f.weth.getAddress(), { feed: await feed.getAddress(), ...CRYPTO_FEED });
      await expectCancel(id, "OrderRoundUnavailable");
      expect(cancelled.length).to.equal(6);
    });
  });
});
