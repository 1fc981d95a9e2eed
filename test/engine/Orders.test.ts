/**
 * Two-step orders (README "Orders"; IMarginEngine.requestOrder / executeOrder) on the production MarginEngine, as
 * deploy/ deploys it: the fill round is the first round published after the request, the fee is escrowed from the
 * reserve and earned by whoever settles the order, refusals at the fill cancel with a named reason, and the owner
 * (also acting as keeper) cannot get an instant fill through the rebalancer.
 */
import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { productionFixture, USDC, E18, E8, type ProductionFixture } from "../helpers/fixtures";
import { ACTION, MAJOR_MARKET, wad } from "../../deploy/params";
import { deployInstantFillSystem } from "../../lib/instantFill";
import { USDC_SCALE, wDivDown } from "../../lib/margin";
import { loadChainlinkRounds } from "../../lib/prices";
import type { IMarginEngine } from "../../typechain-types";

/** Execution fee of the tests: 0.5 USDC. */
const FEE = USDC(1) / 2n;
const HOUR = 3_600;
/** OpenZeppelin SafeCast's error, raised by the engine's libraries (not in the engine's own ABI). */
const SAFE_CAST = { interface: new ethers.Interface(["error SafeCastOverflowedUintDowncast(uint8 bits, uint256 value)"]) };
const FEE_RATE = MAJOR_MARKET.feeRate;
const selector = (engine: IMarginEngine, name: string) => engine.interface.getError(name)!.selector;
/** Trading fee of a fill as the engine charges it: |Δ| × price × feeRate, rounded up twice (WAD). */
const tradeFee = (size: bigint, px: bigint) => {
  const notional = ((size < 0n ? -size : size) * px + E18(1) - 1n) / E18(1);
  return (notional * FEE_RATE + E18(1) - 1n) / E18(1);
};

interface Orders extends ProductionFixture {
  id: bigint;
}

/** The production system, a 0.5 USDC order fee, and alice's account 1: 10,000 USDC margin, 10 USDC reserve. */
async function ordersFixture(): Promise<Orders> {
  const f = await productionFixture();
  await f.engine.setOrderFee(FEE);
  await f.vault.connect(f.alice).createAccount();
  await f.usdc.mint(f.alice.address, USDC(20_000));
  await f.usdc.connect(f.alice).approve(f.vault, USDC(20_000));
  await f.vault.connect(f.alice).depositMargin(1, f.usdc, USDC(10_000));
  await f.vault.connect(f.alice).deposit(1, f.usdc, USDC(10));
  return { ...f, id: 1n };
}

/** Mines the next block at `t` (the request's or the round's own second). */
async function at(t: number) {
  await time.setNextBlockTimestamp(t);
}

/** A new ETH round at `usd` (8-decimal answer), published at block time `t`. */
async function round(f: ProductionFixture, usd: bigint | number, t: number) {
  await at(t);
  await f.ethFeed.setAnswer(typeof usd === "bigint" ? usd : E8(usd));
}

/** Alice requests an ETH order at block time `t`; returns its id. */
async function request(f: Orders, t: number, size: bigint, opts: { limit?: bigint; deadline?: number; reduceOnly?: boolean } = {}) {
  const id = (await f.engine.lastOrderId()) + 1n;
  await at(t);
  const limit = opts.limit ?? (size > 0n ? ethers.MaxUint256 : 0n);
  await f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, size, limit, opts.deadline ?? t + HOUR, opts.reduceOnly ?? false);
  return id;
}

/** Opens `size` ETH for alice through an order filled at the next round of `usd`; returns the time after it. */
async function openAt(f: Orders, size: bigint, usd: number): Promise<number> {
  const t = (await time.latest()) + 10;
  const id = await request(f, t, size);
  await round(f, usd, t + 5);
  await f.engine.connect(f.keeper).executeOrder(id);
  return t + 10;
}

describe("Two-step orders", () => {
  describe("request", () => {
    it("escrows the fee from the USDC reserve and records the order; nothing fills before the round after the latest", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      // The latest round at the request — here one stamped 100 s ahead of the chain, which the router would not
      // price — is one the trader can see: never the fill round.
      const [r0] = await f.ethFeed.latestRoundData();
      await f.ethFeed.setRound(r0 + 1n, E8(2100), t + 100, t + 100);
      const R = r0 + 1n;
      // An order that may add risk reserves open interest against the cap at the current price (finding N3), so it
      // needs a price: none while the latest round is stamped ahead of the chain. Refused by name, nothing stored.
      await at(t);
      await expect(f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, E18(5), E18(2100), t + 200, false))
        .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy").withArgs(await f.weth.getAddress());
      expect(await f.engine.lastOrderId()).to.equal(0n);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(10));
      // Once block time reaches its stamp that round is the latest, public, and recorded: never the fill round.
      await at(t + 100);
      await expect(f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, E18(5), E18(2100), t + HOUR, false))
        .to.emit(f.engine, "OrderRequested")
        .withArgs(1n, f.id, f.ethMarket, E18(5), E18(2100), t + HOUR, false, R, FEE);
      const o = await f.engine.order(1);
      expect([o.accountId, o.marketId, o.sizeDelta, o.acceptablePrice, o.afterRound, o.deadline, o.fee, o.reduceOnly]).to.deep.equal([
        f.id, f.ethMarket, E18(5), E18(2100), R, BigInt(t + HOUR), FEE, false,
      ]);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n]);
      expect(await f.engine.lastOrderId()).to.equal(1n);
      expect(await f.engine.orderEscrow()).to.equal(FEE);
      expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(5), 0n]);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(10) - FEE);
      // Every USDC unit is accounted for: the escrow is the fee's new place.
      expect(await f.vault.totalTracked(f.usdc)).to.equal(USDC(1_000_000) + USDC(10_010));

      await at(t + 101);
      await expect(f.engine.connect(f.keeper).executeOrder(1)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(1n, R);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n]);
      // The next id is the fill round.
      await round(f, 2010, t + 110);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderExecuted")
        .withArgs(1n, f.id, f.keeper.address, E18(2010), t + 110);
    });

    it("refuses bad requests by name, changing nothing", async () => {
      const f = await loadFixture(ordersFixture);
      const e = f.engine.connect(f.alice);
      const now = (await time.latest()) + 1;
      await at(now);
      await expect(e.requestOrder(f.id, f.ethMarket, 0n, 0n, now + HOUR, false)).to.be.revertedWithCustomError(f.engine, "ZeroSizeDelta");
      await at(now + 1);
      await expect(e.requestOrder(f.id, f.ethMarket, E18(1), 0n, now + 1, false))
        .to.be.revertedWithCustomError(f.engine, "InvalidDeadline")
        .withArgs(now + 1, now + 2, now + 1 + 86_400);
      await at(now + 2);
      await expect(e.requestOrder(f.id, f.ethMarket, E18(1), 0n, now + 2 + 86_400 + 1, false))
        .to.be.revertedWithCustomError(f.engine, "InvalidDeadline")
        .withArgs(now + 2 + 86_400 + 1, now + 3, now + 2 + 86_400);
      const huge = 2n ** 127n;
      await expect(e.requestOrder(f.id, f.ethMarket, huge, 0n, now + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "PositionTooLarge")
        .withArgs(f.ethMarket, huge);
      await expect(e.requestOrder(f.id, 7, E18(1), 0n, now + HOUR, false)).to.be.revertedWithCustomError(f.engine, "UnknownMarket").withArgs(7);
      await expect(f.engine.connect(f.bob).requestOrder(f.id, f.ethMarket, E18(1), 0n, now + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "NotAuthorized")
        .withArgs(f.id, f.bob.address);
      // One order that may add risk at a time; reduce-only orders besides it, at most 8 in all. The fee comes from
      // the USDC reserve: 10 USDC pays for 20.
      await e.requestOrder(f.id, f.ethMarket, E18(1), ethers.MaxUint256, now + 10 * HOUR, false);
      await expect(e.requestOrder(f.id, f.btcMarket, -E18(1), 0n, now + 10 * HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "OrderPending")
        .withArgs(f.id, 1n);
      for (let i = 0; i < 7; i++) await e.requestOrder(f.id, f.ethMarket, -E18(1), 0n, now + 10 * HOUR, true);
      await expect(e.requestOrder(f.id, f.ethMarket, -E18(1), 0n, now + 10 * HOUR, true))
        .to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders")
        .withArgs(f.id, 8);
      expect(await f.vault.reserveOf(f.id, f.usdc)).to.equal(USDC(10) - 8n * FEE);
      await f.vault.connect(f.alice).createAccount(); // account 2, no reserve
      await expect(e.requestOrder(2, f.ethMarket, E18(1), 0n, now + HOUR, false))
        .to.be.revertedWithCustomError(f.vault, "InsufficientReserve")
        .withArgs(2, await f.usdc.getAddress(), 0, FEE);
      expect(await f.engine.lastOrderId()).to.equal(8n);
      expect(await f.engine.orderEscrow()).to.equal(8n * FEE);
    });

    it("the fee is governance's, bounded at 100 USD", async () => {
      const f = await loadFixture(ordersFixture);
      await expect(f.engine.setOrderFee(USDC(100) + 1n))
        .to.be.revertedWithCustomError(f.engine, "OrderFeeTooHigh")
        .withArgs(USDC(100) + 1n, USDC(100));
      await expect(f.engine.connect(f.alice).setOrderFee(1n))
        .to.be.revertedWithCustomError(f.engine, "OwnableUnauthorizedAccount")
        .withArgs(f.alice.address);
      await expect(f.engine.setOrderFee(USDC(2))).to.emit(f.engine, "OrderFeeSet").withArgs(USDC(2));
      expect(await f.engine.orderFee()).to.equal(USDC(2));
    });

    it("the production engine has no instant fill", async () => {
      const f = await loadFixture(ordersFixture);
      const iface = new ethers.Interface(["function modifyPosition(uint256,uint256,int256,uint256)"]);
      const data = iface.encodeFunctionData("modifyPosition", [f.id, f.ethMarket, E18(1), ethers.MaxUint256]);
      await expect(f.alice.sendTransaction({ to: await f.engine.getAddress(), data })).to.be.revertedWithoutReason();
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(0n);
    });
  });

  describe("execute", () => {
    it("fills at the first round after the request, not a later one, and pays the keeper the fee", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(5), { limit: E18(2100) });
      await round(f, 2010, t + 10);
      await round(f, 2050, t + 20);
      await round(f, 2090, t + 30);
      const marginBefore = await f.vault.marginOf(f.id, f.usdc);
      const fee = tradeFee(E18(5), E18(2010));
      expect(fee).to.equal(wad("5.025"));
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderExecuted")
        .withArgs(1n, f.id, f.keeper.address, E18(2010), t + 10)
        .and.to.emit(f.engine, "PositionModified")
        .withArgs(f.id, f.ethMarket, E18(5), E18(5), E18(2010), 0n, fee)
        .and.to.emit(f.engine, "KeeperRewardCredited")
        .withArgs(f.keeper.address, FEE, FEE);
      const p = await f.engine.position(f.id, f.ethMarket);
      expect([p.size, p.entryPrice]).to.deep.equal([E18(5), E18(2010)]);
      expect(marginBefore - (await f.vault.marginOf(f.id, f.usdc))).to.equal(fee / USDC_SCALE);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(FEE);
      expect(await f.engine.orderEscrow()).to.equal(0n);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([]);
      expect((await f.engine.order(1)).deadline).to.equal(0n);
      // Marked at the current price: the move after the fill round is the position's.
      const st = await f.engine.accountState(f.id);
      expect(st.unrealisedPnl).to.equal(E18(5) * 80n);
      // The keeper claims the fee like any keeper reward.
      await expect(f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address))
        .to.emit(f.engine, "KeeperRewardsClaimed")
        .withArgs(f.keeper.address, f.keeper.address, FEE);
    });

    it("a second keeper racing for the same order gets OrderNotFound and changes nothing", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(1));
      await round(f, 2000, t + 5);
      await network.provider.send("evm_setAutomine", [false]);
      try {
        const first = await f.engine.connect(f.keeper).executeOrder(1, { gasLimit: 1_000_000 });
        const second = await f.engine.connect(f.bob).executeOrder(1, { gasLimit: 1_000_000 });
        await network.provider.send("evm_mine", []);
        expect((await ethers.provider.getTransactionReceipt(first.hash))!.status).to.equal(1);
        expect((await ethers.provider.getTransactionReceipt(second.hash))!.status).to.equal(0);
      } finally {
        await network.provider.send("evm_setAutomine", [true]);
      }
      await expect(f.engine.connect(f.bob).executeOrder(1)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(1n);
      expect(await f.engine.keeperRewardsOf(f.bob)).to.equal(0n);
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(E18(1));
    });

    it("a fill beyond the acceptable price cancels (PriceNotAcceptable); the keeper still earns the fee", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(5), { limit: E18(2005) });
      await round(f, 2010, t + 10);
      const margin = await f.vault.marginOf(f.id, f.usdc);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(1n, f.id, f.keeper.address, selector(f.engine, "PriceNotAcceptable"));
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(0n);
      expect(await f.vault.marginOf(f.id, f.usdc)).to.equal(margin);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(FEE);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([]);
      // A sell below its limit likewise.
      await request(f, t + 20, -E18(1), { limit: E18(2011) });
      await round(f, 2010, t + 30);
      await expect(f.engine.connect(f.keeper).executeOrder(2))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(2n, f.id, f.keeper.address, selector(f.engine, "PriceNotAcceptable"));
    });

    it("deadline: no round by then, or the first round after it, cancels (OrderExpired); a round at the deadline fills", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(1), { deadline: t + 60 });
      const R = (await f.engine.order(1)).afterRound;
      await at(t + 60);
      await expect(f.engine.connect(f.keeper).executeOrder(1)).to.be.revertedWithCustomError(f.engine, "OrderNotReady").withArgs(1n, R);
      await at(t + 61);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(1n, f.id, f.keeper.address, selector(f.engine, "OrderExpired"));

      // A round exists, but the first after the request came after the deadline: expired, whenever executed.
      await request(f, t + 100, E18(1), { deadline: t + 160 });
      await round(f, 2000, t + 161);
      await expect(f.engine.connect(f.keeper).executeOrder(2))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(2n, f.id, f.keeper.address, selector(f.engine, "OrderExpired"));

      // The fill round at the deadline itself fills, executed after it.
      await request(f, t + 200, E18(1), { deadline: t + 260 });
      await round(f, 2001, t + 260);
      await round(f, 2002, t + 300);
      await expect(f.engine.connect(f.keeper).executeOrder(3))
        .to.emit(f.engine, "OrderExecuted")
        .withArgs(3n, f.id, f.keeper.address, E18(2001), t + 260);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(3n * FEE);
    });

    it("margin insufficient at the fill cancels (BelowInitialMargin), state unchanged", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      // 27 ETH is backed at the request's 2,000 (the least IM of 54,000 USD of notional is under 10,000 of equity);
      // at the fill round's 2,200 the same position needs more initial margin than the account has
      await request(f, t, E18(27));
      await round(f, 2200, t + 10);
      const before = await f.engine.accountState(f.id);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(1n, f.id, f.keeper.address, selector(f.engine, "BelowInitialMargin"));
      expect(await f.engine.accountState(f.id)).to.deep.equal(before);
      expect((await f.engine.marketState(f.ethMarket)).longOI).to.equal(0n);
    });

    it("a fill round whose answer is not a sane price cancels (OrderPriceInvalid), even with valid rounds after it", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(1));
      await round(f, 0n, t + 10);
      await round(f, 2000, t + 20);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(1n, f.id, f.keeper.address, selector(f.engine, "OrderPriceInvalid"));
    });

    it("an unhealthy oracle at execution reverts and the order waits; later it still fills at its own round", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(1), { deadline: t + 86_400 });
      await round(f, 2020, t + 10);
      await time.increaseTo(t + 10 + 2 * HOUR + 1); // past the feed's 2 h heartbeat
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy")
        .withArgs(await f.weth.getAddress());
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n]);
      await round(f, 2100, t + 3 * HOUR);
      await expect(f.engine.connect(f.keeper).executeOrder(1))
        .to.emit(f.engine, "OrderExecuted")
        .withArgs(1n, f.id, f.keeper.address, E18(2020), t + 10);
    });

    it("too little gas never turns a fillable order into a cancellation: the call reverts and the order waits", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, E18(1));
      await round(f, 2000, t + 10);
      const needed = await f.engine.connect(f.keeper).executeOrder.estimateGas(1);
      let reverted = 0;
      for (let gas = 60_000n; gas < needed; gas += 10_000n) {
        const tx = await f.engine.connect(f.keeper).executeOrder(1, { gasLimit: gas }).catch((e: Error) => e);
        if (tx instanceof Error) {
          reverted++;
          expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n]);
          continue;
        }
        const receipt = await ethers.provider.getTransactionReceipt(tx.hash);
        if (receipt!.status === 1) {
          // If it went through, it filled: never a cancellation.
          const log = receipt!.logs.map((l) => f.engine.interface.parseLog(l)).find((p) => p?.name === "OrderExecuted" || p?.name === "OrderCancelled");
          expect(log!.name).to.equal("OrderExecuted");
          return;
        }
        reverted++;
        expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n]);
      }
      expect(reverted).to.be.greaterThan(0);
      await expect(f.engine.connect(f.keeper).executeOrder(1)).to.emit(f.engine, "OrderExecuted");
    });
  });

  describe("reduce-only and pause", () => {
    it("a reduce-only order is clamped to the position and cancelled (NothingToReduce) when there is none", async () => {
      const f = await loadFixture(ordersFixture);
      // No funding: the close realises nothing but the price.
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
      let t = await openAt(f, E18(5), 2000);
      const id = await request(f, t, -E18(8), { reduceOnly: true });
      await round(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(id))
        .to.emit(f.engine, "PositionModified")
        .withArgs(f.id, f.ethMarket, -E18(5), 0n, E18(2000), 0n, tradeFee(E18(5), E18(2000)));
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(0n);
      t += 10;
      const none = await request(f, t, -E18(1), { reduceOnly: true });
      await round(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(none))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(none, f.id, f.keeper.address, selector(f.engine, "NothingToReduce"));
      // Same side as the position: nothing to reduce either.
      t = await openAt(f, -E18(2), 2000);
      const same = await request(f, t, -E18(1), { reduceOnly: true });
      await round(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(same))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(same, f.id, f.keeper.address, selector(f.engine, "NothingToReduce"));
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(-E18(2));
    });

    it("pause blocks new increase requests and fills, never reduce or close requests or their fills", async () => {
      const f = await loadFixture(ordersFixture);
      let t = await openAt(f, E18(5), 2000);
      const increase = await request(f, t, E18(1));
      await f.engine.setPaused(true);
      t += 10;
      await at(t);
      await expect(f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, E18(1), ethers.MaxUint256, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "PositionIncreasePaused");
      // A flip adds risk too.
      await expect(f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, -E18(6), 0n, t + HOUR, false))
        .to.be.revertedWithCustomError(f.engine, "PositionIncreasePaused");
      const reduce = await request(f, t + 5, -E18(2), { reduceOnly: true });
      const close = await request(f, t + 6, -E18(9), { reduceOnly: true });
      await round(f, 2000, t + 10);
      await expect(f.engine.connect(f.keeper).executeOrder(increase))
        .to.emit(f.engine, "OrderCancelled")
        .withArgs(increase, f.id, f.keeper.address, selector(f.engine, "PositionIncreasePaused"));
      await expect(f.engine.connect(f.keeper).executeOrder(reduce)).to.emit(f.engine, "OrderExecuted");
      await expect(f.engine.connect(f.keeper).executeOrder(close)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(0n);
    });
  });

  describe("the owner as keeper gets no instant fill (README \"Orders\")", () => {
    const NO_POLICY = { actions: 0, cooldown: 0, triggerRatio: 0n, targetRatio: 0n, releaseRatio: 0n, maxFeeUsd: 0n, topUpAssets: [] as string[] };

    /**
     * Alice: 1,000 USDC margin, 10 ETH long at 2,000 (health ≈ 3.2), a 1,000 USDC reserve and policy trigger 2 /
     * target 3 (ALL). The market's IM volatility floor is 0 (IM = 1.5 × MM at the floor σ), so IM alone would let the
     * owner's own actions take the account below the trigger; no funding.
     */
    async function guarded() {
      const f = await loadFixture(ordersFixture);
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, imVolFloor: 0n, maxFundingRate: 0n });
      await f.vault.connect(f.alice).releaseMargin(f.id, f.usdc, USDC(9_000));
      await f.vault.connect(f.alice).deposit(f.id, f.usdc, USDC(1_000));
      const t = await openAt(f, E18(10), 2000);
      const policy = {
        actions: ACTION.ALL,
        cooldown: 0,
        triggerRatio: wad("2"),
        targetRatio: wad("3"),
        releaseRatio: wad("6"),
        maxFeeUsd: wad("50"),
        topUpAssets: [await f.usdc.getAddress()],
      };
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, policy);
      return { f, t, policy };
    }

    /** The owner rebalances her own account: the Rebalanced action and the price of each PositionModified. */
    async function ownRebalance(f: Orders) {
      const receipt = await (await f.rebalancer.connect(f.alice).rebalance(f.id)).wait();
      const logs = receipt!.logs.map((l) => f.engine.interface.parseLog(l) ?? f.rebalancer.interface.parseLog(l));
      const action = Number(logs.find((p) => p?.name === "Rebalanced")!.args.action);
      const prices = logs.filter((p) => p?.name === "PositionModified").map((p) => p!.args.price as bigint);
      return { action, prices };
    }

    it("in band: rebalance and liquidate refuse the owner; while an order that adds risk waits, its margin stays", async () => {
      const { f, t } = await guarded();
      const st = await f.engine.accountState(f.id);
      expect(st.health).to.be.gte(wad("2"));
      await expect(f.rebalancer.connect(f.alice).rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      await expect(f.engine.connect(f.alice).liquidate(f.id))
        .to.be.revertedWithCustomError(f.engine, "NotLiquidatable")
        .withArgs(f.id, st.health);
      // After seeing the fill round, the owner cannot move margin out from under the fill to turn it into a
      // cancellation: no release while an order that may add risk waits.
      const id = await request(f, t, E18(1));
      await expect(f.vault.connect(f.alice).releaseMargin(f.id, f.usdc, USDC(1)))
        .to.be.revertedWithCustomError(f.engine, "OrderPending")
        .withArgs(f.id, id);
      await round(f, 2000, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
      await expect(f.vault.connect(f.alice).releaseMargin(f.id, f.usdc, USDC(1))).to.emit(f.vault, "MarginReleased");
    });

    it("a REDUCE waits for a round after the owner's last action (a new policy, a withdrawal, a fill) and closes at that round", async () => {
      const { f, t } = await guarded();
      const reduceOnly = { actions: ACTION.REDUCE, cooldown: 0, triggerRatio: wad("5"), targetRatio: wad("6"), releaseRatio: 0n, maxFeeUsd: wad("50"), topUpAssets: [] as string[] };

      // 1. A policy whose trigger is above today's health is accepted, but acts only on the next round.
      expect((await f.engine.accountState(f.id)).health).to.be.lessThan(wad("5"));
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, reduceOnly);
      await expect(f.rebalancer.connect(f.alice).rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      await round(f, 1990, t + 20);
      expect(await ownRebalance(f)).to.deep.equal({ action: ACTION.REDUCE, prices: [E18(1990)] });

      // 2. Below the trigger after a price move, emptying the reserve does not buy an instant close.
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, NO_POLICY);
      await f.engine.connect(f.alice).setRebalancePolicy(f.id, { ...reduceOnly, actions: ACTION.TOP_UP | ACTION.REDUCE, topUpAssets: [await f.usdc.getAddress()] });
      await round(f, 1900, t + 40);
      await f.oracle.poke(f.weth);
      expect((await f.engine.accountState(f.id)).health).to.be.lessThan(wad("5"));
      await f.vault.connect(f.alice).withdraw(f.id, f.usdc, await f.vault.reserveOf(f.id, f.usdc), f.alice.address);
      await expect(f.rebalancer.connect(f.alice).rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      await round(f, 1880, t + 60);
      expect(await ownRebalance(f)).to.deep.equal({ action: ACTION.REDUCE, prices: [E18(1880)] });

      // 3. An increase whose fill leaves the account below its trigger fills, and the REDUCE it calls for waits
      // for the next round.
      await f.vault.connect(f.alice).deposit(f.id, f.usdc, FEE); // the order's fee
      const id = await request(f, t + 70, E18(3));
      await round(f, 1880, t + 80);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.accountState(f.id)).health).to.be.lessThan(wad("5"));
      await expect(f.rebalancer.connect(f.alice).rebalance(f.id)).to.be.revertedWithCustomError(f.rebalancer, "NothingToRebalance");
      await round(f, 1870, t + 100);
      expect(await ownRebalance(f)).to.deep.equal({ action: ACTION.REDUCE, prices: [E18(1870)] });
    });
  });

  describe("a real round transition (data/chainlink_eth_usd_rounds_mainnet.csv)", () => {
    /** Rounds 6025–6027 of the file (2023-04-05 – 2024-01-29): the largest one-round rise, +3.18 % in 96 s. */
    const history = loadChainlinkRounds("chainlink_eth_usd_rounds_mainnet.csv");
    function rounds() {
      const pick = (roundId: bigint) => {
        const r = history.find((x) => x.roundId === roundId)!;
        return { id: r.roundId, answer: r.answer, updatedAt: r.updatedAt };
      };
      return [pick(110680464442257315722n), pick(110680464442257315723n), pick(110680464442257315724n)];
    }

    it("what an instant fill would give away: 7,562 of the 11,106 rounds moved more than the 2 × 5 bps round-trip fee", () => {
      const answers = history.map((r) => r.answer);
      let moved = 0;
      for (let i = 1; i < answers.length; i++) {
        const d = answers[i] - answers[i - 1];
        if ((d < 0n ? -d : d) * 10_000n > 2n * (FEE_RATE / 10n ** 14n) * answers[i - 1]) moved++;
      }
      expect(FEE_RATE / 10n ** 14n).to.equal(5n); // bps
      expect([answers.length, moved]).to.deep.equal([11_106, 7_562]);
    });

    it("a trader who asks to open just before a known up-move and to close just after gains nothing of that move", async () => {
      const [r0, r1, r2] = rounds();
      expect([r0.answer, r1.answer, r2.answer]).to.deep.equal([168586532941n, 173940000000n, 172887067000n]);
      expect([r1.updatedAt - r0.updatedAt, r2.updatedAt - r1.updatedAt]).to.deep.equal([96, 84]);
      const size = E18(10);

      /** The rounds at their real spacing from chain time `T`, trades at T+90 (6 s before the rise) and right after it. */
      const replay = async (
        feed: ProductionFixture["ethFeed"],
        open: (t: number) => Promise<void>,
        close: (t: number) => Promise<void>,
      ) => {
        const T = (await time.latest()) + 10;
        await at(T);
        await feed.setRound(r0.id, r0.answer, T, T);
        await open(T + 90);
        await at(T + 96);
        await feed.setRound(r1.id, r1.answer, T + 96, T + 96);
        await close(T + 98);
        await at(T + 180);
        await feed.setRound(r2.id, r2.answer, T + 180, T + 180);
        return T;
      };
      const noFunding = { ...MAJOR_MARKET, maxFundingRate: 0n };

      // Two-step (production): the open fills at r1 (after the rise), the close at r2.
      const f = await loadFixture(ordersFixture);
      await f.engine.setOrderFee(0n);
      await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...noFunding });
      const margin0 = await f.vault.marginOf(f.id, f.usdc);
      let openId = 0n;
      let closeId = 0n;
      const T = await replay(
        f.ethFeed,
        async (t) => {
          openId = await request(f, t, size);
        },
        async (t) => {
          await at(t - 1);
          await expect(f.engine.connect(f.keeper).executeOrder(openId))
            .to.emit(f.engine, "OrderExecuted")
            .withArgs(openId, f.id, f.keeper.address, r1.answer * 10n ** 10n, t - 2);
          closeId = await request(f, t, -size);
        },
      );
      await expect(f.engine.connect(f.keeper).executeOrder(closeId))
        .to.emit(f.engine, "OrderExecuted")
        .withArgs(closeId, f.id, f.keeper.address, r2.answer * 10n ** 10n, T + 180);
      // Open fee 10 × 1,739.40 × 0.05 % = 8.697; close: −105.2933 realised and 8.64435335 fee, rounded up to a unit.
      const twoStepLoss = margin0 - (await f.vault.marginOf(f.id, f.usdc));
      expect(twoStepLoss).to.equal(8_697_000n + 113_937_654n);

      // The same trades as instant fills (the InstantFillEngine of the tests, the fill this engine no longer
      // offers): bought at r0 before the rise, sold at r1, the rise is the trader's — paid by the LPs.
      const [deployer, , alice] = await ethers.getSigners();
      const g = await deployInstantFillSystem(deployer);
      await g.engine.setMarketParams(g.ethMarket, { asset: await g.weth.getAddress(), ...noFunding });
      await g.usdc.mint(deployer.address, USDC(1_000_000));
      await g.usdc.approve(g.pool, USDC(1_000_000));
      await g.pool.deposit(USDC(1_000_000), deployer.address);
      await g.vault.connect(alice).createAccount();
      await g.usdc.mint(alice.address, USDC(10_000));
      await g.usdc.connect(alice).approve(g.vault, USDC(10_000));
      await g.vault.connect(alice).depositMargin(1, g.usdc, USDC(10_000));
      await replay(
        g.ethFeed,
        async (t) => {
          await at(t);
          await g.engine.connect(alice).modifyPosition(1, g.ethMarket, size, ethers.MaxUint256);
        },
        async (t) => {
          await at(t);
          await g.engine.connect(alice).modifyPosition(1, g.ethMarket, -size, 0n);
        },
      );
      // +535.3467059 on the rise, less 8.42932664705 (up to 8.429327) and 8.697 in fees, credited rounded down.
      expect((await g.vault.marginOf(1, g.usdc)) - USDC(10_000)).to.equal(-8_429_327n + 526_649_705n);
    });
  });

  describe("storage that stays dirty (README \"Storage layout\")", () => {
    /** The engine's storage slot of `pendingOrders[id].head`: the one mapping slot N whose entry reads `expectRaw`. */
    async function headSlot(f: Orders, expectRaw: bigint): Promise<bigint> {
      const coder = ethers.AbiCoder.defaultAbiCoder();
      for (let n = 0n; n < 400n; n++) {
        const slot = BigInt(ethers.keccak256(coder.encode(["uint256", "uint256"], [f.id, n])));
        if (BigInt(await ethers.provider.getStorage(f.engine, slot)) === expectRaw) return slot;
      }
      throw new Error("pending list slot not found");
    }
    /** AccountLogic.PendingList.head: the count in bits 0..7, ids 0..3 at bits 8 + 56·i, the order cell of entries
     *  0..7 at bits 232 + 3·i. */
    const head = (count: number, ids: bigint[], cells: number[]) =>
      cells.reduce((acc, c, i) => acc | (BigInt(c) << BigInt(232 + 3 * i)), ids.reduce((acc, id, i) => acc | (id << BigInt(8 + 56 * i)), BigInt(count)));

    it("the pending list: eight orders over both slots, settled out of order, each leaving the last in its place; the head slot never returns to zero", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      for (let i = 0; i < 8; i++) await request(f, t + i, -E18(1), { reduceOnly: true, deadline: t + 100 });
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
      const slot = await headSlot(f, head(8, [1n, 2n, 3n, 4n], [0, 1, 2, 3, 4, 5, 6, 7]));
      const raw = async () => BigInt(await ethers.provider.getStorage(f.engine, slot));
      // Past the deadline every order cancels (OrderExpired) and leaves the list: the last entry takes its place.
      await at(t + 101);
      const settle = async (id: bigint, expected: bigint[]) => {
        await expect(f.engine.connect(f.keeper).executeOrder(id))
          .to.emit(f.engine, "OrderCancelled")
          .withArgs(id, f.id, f.keeper.address, selector(f.engine, "OrderExpired"));
        expect(await f.engine.pendingOrders(f.id)).to.deep.equal(expected);
      };
      await settle(2n, [1n, 8n, 3n, 4n, 5n, 6n, 7n]); // from the tail into the head
      await settle(7n, [1n, 8n, 3n, 4n, 5n, 6n]); // the last itself
      await settle(5n, [1n, 8n, 3n, 4n, 6n]); // within the tail
      await settle(1n, [6n, 8n, 3n, 4n]);
      expect(await raw()).to.equal(head(4, [6n, 8n, 3n, 4n], [5, 7, 2, 3, 5, 5, 6, 7]));
      await settle(4n, [6n, 8n, 3n]);
      await settle(6n, [3n, 8n]);
      await settle(8n, [3n]);
      await settle(3n, []);
      // Empty, yet the slot keeps the stale entries (ids 3, 8, 3, 4): the next request writes a nonzero slot.
      expect(await raw()).to.equal(head(0, [3n, 8n, 3n, 4n], [2, 7, 2, 3, 5, 5, 6, 7]));
      expect(await f.engine.orderEscrow()).to.equal(0n);
      expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(8n * FEE);
      // The list fills again from the start, to eight, and refuses a ninth by name.
      const t2 = t + 200;
      for (let i = 0; i < 8; i++) await request(f, t2 + i, -E18(1), { reduceOnly: true });
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([9n, 10n, 11n, 12n, 13n, 14n, 15n, 16n]);
      expect(await raw()).to.equal(head(8, [9n, 10n, 11n, 12n], [0, 1, 2, 3, 4, 5, 6, 7]));
      await at(t2 + 8);
      await expect(f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, -E18(1), 0n, t2 + HOUR, true))
        .to.be.revertedWithCustomError(f.engine, "TooManyPendingOrders")
        .withArgs(f.id, 8);
    });

    it("orders reuse their account's cells: the views and fills read the pending order only, across accounts and the eight-id blocks of the account index", async () => {
      const f = await loadFixture(ordersFixture);
      await f.vault.connect(f.bob).createAccount(); // account 2
      await f.usdc.mint(f.bob.address, USDC(20_000));
      await f.usdc.connect(f.bob).approve(f.vault, USDC(20_000));
      await f.vault.connect(f.bob).depositMargin(2n, f.usdc, USDC(10_000));
      await f.vault.connect(f.bob).deposit(2n, f.usdc, USDC(10));
      let t = (await time.latest()) + 10;
      // Alice's order 1 fills and leaves cell 0; her order 2 takes it.
      expect(await request(f, t, E18(1))).to.equal(1n);
      await round(f, 2000, t + 5);
      await f.engine.connect(f.keeper).executeOrder(1n);
      t = (await time.latest()) + 5;
      expect(await request(f, t, E18(2), { limit: E18(2100), deadline: t + 600 })).to.equal(2n);
      expect((await f.engine.order(1n)).accountId).to.equal(0n); // settled: nothing, though its fields sit stale in cell 0
      const o2 = await f.engine.order(2n);
      expect([o2.accountId, o2.marketId, o2.sizeDelta, o2.acceptablePrice, o2.requestedAt, o2.deadline, o2.fee, o2.reduceOnly])
        .to.deep.equal([1n, f.ethMarket, E18(2), E18(2100), BigInt(t), BigInt(t + 600), FEE, false]);
      await expect(f.engine.connect(f.keeper).executeOrder(1n)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(1n);
      // Bob's seven reduce-only sells, ids 3..9: across the index's first block (ids 0..7) and the second (8..15).
      t = (await time.latest()) + 5;
      for (let i = 0; i < 7; i++) {
        await at(++t);
        await f.engine.connect(f.bob).requestOrder(2n, f.ethMarket, -E18(1) - BigInt(i), 0n, t + 600, true);
      }
      expect(await f.engine.pendingOrders(2n)).to.deep.equal([3n, 4n, 5n, 6n, 7n, 8n, 9n]);
      for (const id of [3n, 7n, 8n, 9n]) {
        const o = await f.engine.order(id);
        expect([o.accountId, o.sizeDelta, o.reduceOnly]).to.deep.equal([2n, -E18(1) - (id - 3n), true]);
      }
      // Alice's 2 fills at 2,050 (within her 2,100 limit); her order 10 takes cell 0 again.
      await round(f, 2050, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(2n)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(E18(3));
      t = (await time.latest()) + 5;
      expect(await request(f, t, -E18(3), { reduceOnly: true })).to.equal(10n);
      expect((await f.engine.order(2n)).accountId).to.equal(0n);
      const o10 = await f.engine.order(10n);
      expect([o10.accountId, o10.sizeDelta, o10.reduceOnly]).to.deep.equal([1n, -E18(3), true]);
      // Unknown ids: past the last, and in a block no request wrote.
      for (const id of [11n, 16n, 1_000n]) {
        expect((await f.engine.order(id)).accountId).to.equal(0n);
        await expect(f.engine.connect(f.keeper).executeOrder(id)).to.be.revertedWithCustomError(f.engine, "OrderNotFound").withArgs(id);
      }
      // Order 10 closes alice at the next round; bob's orders are his and stay pending (he has no position: each
      // reduce-only sell cancels when executed, never touching alice's).
      t = (await time.latest()) + 5;
      await round(f, 2040, t);
      await expect(f.engine.connect(f.keeper).executeOrder(10n)).to.emit(f.engine, "OrderExecuted");
      expect((await f.engine.position(f.id, f.ethMarket)).size).to.equal(0n);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([]);
      expect(await f.engine.pendingOrders(2n)).to.deep.equal([3n, 4n, 5n, 6n, 7n, 8n, 9n]);
      await f.engine.connect(f.keeper).executeOrder(8n);
      expect(await f.engine.pendingOrders(2n)).to.deep.equal([3n, 4n, 5n, 6n, 7n, 9n]);
      expect((await f.engine.position(2n, f.ethMarket)).size).to.equal(0n);
      expect(await f.engine.orderEscrow()).to.equal(6n * FEE);
    });

    it("an order id of 2^56 or more is refused by SafeCast's named error, changing nothing", async () => {
      const f = await loadFixture(ordersFixture);
      const t = (await time.latest()) + 10;
      await request(f, t, -E18(1), { reduceOnly: true });
      // The order book's slot holds lastOrderId in its low 64 bits: set it to 2^56 − 2 (fee and escrow kept).
      let bookSlot = -1n;
      for (let n = 0n; n < 400n && bookSlot < 0n; n++) {
        if (BigInt(await ethers.provider.getStorage(f.engine, n)) === (1n | (FEE << 64n) | (FEE << 136n))) bookSlot = n;
      }
      expect(bookSlot).to.not.equal(-1n);
      const last = 2n ** 56n - 2n;
      const value = last | (FEE << 64n) | (FEE << 136n);
      await network.provider.send("hardhat_setStorageAt", [
        await f.engine.getAddress(), ethers.toQuantity(bookSlot), ethers.zeroPadValue(ethers.toBeHex(value), 32),
      ]);
      expect(await f.engine.lastOrderId()).to.equal(last);
      // 2^56 − 1 still fits; 2^56 does not.
      expect(await request(f, t + 1, -E18(1), { reduceOnly: true })).to.equal(2n ** 56n - 1n);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n, 2n ** 56n - 1n]);
      await at(t + 2);
      await expect(f.engine.connect(f.alice).requestOrder(f.id, f.ethMarket, -E18(1), 0n, t + HOUR, true))
        .to.be.revertedWithCustomError(SAFE_CAST, "SafeCastOverflowedUintDowncast")
        .withArgs(56, 2n ** 56n);
      expect(await f.engine.lastOrderId()).to.equal(2n ** 56n - 1n);
      expect(await f.engine.pendingOrders(f.id)).to.deep.equal([1n, 2n ** 56n - 1n]);
    });

    it("a closed position reads all zero and keeps its slots dirty; the reopen enters afresh at its own price and funding", async () => {
      const f = await loadFixture(ordersFixture);
      let t = await openAt(f, E18(5), 2000);
      const opened = await f.engine.position(f.id, f.ethMarket);
      expect([opened.size, opened.entryPrice]).to.deep.equal([E18(5), E18(2000)]);
      const id = await request(f, t, -E18(5), { reduceOnly: true });
      await round(f, 2100, t + 5);
      await expect(f.engine.connect(f.keeper).executeOrder(id)).to.emit(f.engine, "OrderExecuted");
      expect(await f.engine.position(f.id, f.ethMarket)).to.deep.equal([0n, 0n, 0n]);
      expect(await f.engine.positionMask(f.id)).to.equal(0n);
      // The valuation slot {size, entryNet} as stored: size 0, the old entryNet (2,000 − entry funding) in the high
      // 128 bits, so the slot is not zero.
      const entryNet = E18(2000) - opened.entryFunding;
      const raw = BigInt.asUintN(128, entryNet) << 128n;
      const coder = ethers.AbiCoder.defaultAbiCoder();
      let found = false;
      for (let n = 0n; n < 400n && !found; n++) {
        const inner = ethers.keccak256(coder.encode(["uint256", "uint256"], [f.id, n]));
        const slot = ethers.keccak256(coder.encode(["uint256", "bytes32"], [f.ethMarket, inner]));
        found = BigInt(await ethers.provider.getStorage(f.engine, slot)) === raw;
      }
      expect(found).to.equal(true);
      // Nothing of the old entry is valued: no open PnL, no requirement, no pool exposure left.
      const st = await f.engine.accountState(f.id);
      expect([st.unrealisedPnl, st.notional, st.maintenanceMargin, st.initialMargin]).to.deep.equal([0n, 0n, 0n, 0n]);
      const ms = await f.engine.marketState(f.ethMarket);
      expect([ms.longOI, ms.shortOI, ms.longEntryNetSum, ms.shortEntryNetSum]).to.deep.equal([0n, 0n, 0n, 0n]);
      // Reopened short at 2,100: size, price and funding are the new trade's alone.
      t += 10;
      t = await openAt(f, -E18(3), 2100);
      const re = await f.engine.position(f.id, f.ethMarket);
      const index = (await f.engine.marketState(f.ethMarket)).fundingIndex;
      expect([re.size, re.entryPrice, re.entryFunding]).to.deep.equal([-E18(3), E18(2100), index]);
      const after = await f.engine.marketState(f.ethMarket);
      expect([after.shortOI, after.shortEntryNetSum]).to.deep.equal([E18(3), -E18(3) * (E18(2100) - index)]);
    });
  });
});
