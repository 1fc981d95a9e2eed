/**
 * Late attacker review of the pending-OI reservation (TradeLogic._reserveOpenInterest, MarginEngine._checkBacking).
 * Residual measured: a trader with floor-IM margin squats a whole side's open-interest cap with an order that can
 * never fill (no price risk, no funding, no trading fee), blocks every other increase on that side until the next
 * round, executes his own order at that round to take the order fee back, and asks again.
 */
import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { USDC, E18 } from "../helpers/fixtures";
import { FEE, HOUR, MAX, base, at, ethRound, floorIm } from "../helpers/orders";

describe("Late review: open-interest cap squatting", () => {
  it("residual: floor-IM margin squats a side's whole cap for gas only (fee recovered by self-execution)", async () => {
    const f = await loadFixture(base);
    const need = floorIm(E18(500_000)); // WAD USD: 250 ETH at 2,000 = the 500,000 USD long cap
    const margin = need / 10n ** 12n + 1n;
    const bob = (await f.vault.accountCount()) + 1n;
    await f.vault.connect(f.bob).createAccount();
    await f.usdc.mint(f.bob.address, margin + USDC(10));
    await f.usdc.connect(f.bob).approve(f.vault, margin + USDC(10));
    await f.vault.connect(f.bob).depositMargin(bob, f.usdc, margin);
    await f.vault.connect(f.bob).deposit(bob, f.usdc, USDC(10));
    console.log(`      squat of the 500,000 USD long cap locks ${Number(margin) / 1e6} USDC of margin`);

    let t = (await time.latest()) + 10;
    await at(t);
    // a buy with limit 0: no price meets it, it can never fill
    await f.engine.connect(f.bob).requestOrder(bob, f.ethMarket, E18(250), 0n, t + HOUR, false);
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(250), 0n]);
    // alice (10,000 USDC) cannot open even 1 ETH long
    await at(t + 1);
    await expect(f.engine.connect(f.alice).requestOrder(1, f.ethMarket, E18(1), MAX, t + 1 + HOUR, false))
      .to.be.revertedWithCustomError(f.engine, "OpenInterestCap");
    // next round: bob cancels his own order as keeper, gets the fee back, and squats again
    await ethRound(f, 2000, t + 5);
    const id = await f.engine.lastOrderId();
    await f.engine.connect(f.bob).executeOrder(id);
    expect(await f.engine.keeperRewardsOf(f.bob.address)).to.equal(FEE);
    t = await time.latest();
    await at(t + 1);
    await f.engine.connect(f.bob).requestOrder(bob, f.ethMarket, E18(250), 0n, t + 1 + HOUR, false);
    expect(await f.engine.pendingOpenInterest(f.ethMarket)).to.deep.equal([E18(250), 0n]);
  });
});
