import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { productionFixture, systemFixture, USDC, E18, E8 } from "../helpers/fixtures";
import { snapshotGas } from "../helpers/gasSnapshot";
import { skipUnderCoverage } from "../helpers/coverage";

describe("gas snapshot › MarginEngine", () => {
  before(function () {
    skipUnderCoverage(this, "it asserts exact gas against gas-snapshot.json; instrumented, unoptimised contracts use other gas");
  });

  async function withAccount() {
    const s = await loadFixture(systemFixture);
    await s.vault.connect(s.alice).createAccount();
    await s.usdc.mint(s.alice.address, USDC(20_000));
    await s.usdc.connect(s.alice).approve(s.vault, USDC(20_000));
    await s.vault.connect(s.alice).depositMargin(1, s.usdc, USDC(10_000));
    return s;
  }

  it("two-step orders: requestOrder and executeOrder of an open, increase, reduce and close", async () => {
    // The production engine (deploy/): the request, a new round, the execution by a keeper.
    const s = await loadFixture(productionFixture);
    await s.vault.connect(s.alice).createAccount();
    await s.usdc.mint(s.alice.address, USDC(20_000));
    await s.usdc.connect(s.alice).approve(s.vault, USDC(20_000));
    await s.vault.connect(s.alice).depositMargin(1, s.usdc, USDC(10_000));
    await s.vault.connect(s.alice).deposit(1, s.usdc, USDC(10));
    await s.engine.setOrderFee(USDC(1) / 2n);
    const e = s.engine.connect(s.alice);
    const deadline = async () => BigInt((await time.latest()) + 3_600);
    // Reductions as users ask for them (position:close): reduce-only, which needs no backing and reserves nothing.
    const steps: [string, bigint, bigint, boolean][] = [
      ["open", E18(10), E18(2100), false],
      ["increase", E18(5), E18(2100), false],
      ["reduce", -E18(5), E18(1900), true],
      ["close", -E18(10), E18(1900), true],
    ];
    for (const [what, size, limit, reduceOnly] of steps) {
      const id = (await s.engine.lastOrderId()) + 1n;
      await snapshotGas(`requestOrder ${what}`, e.requestOrder(1, s.ethMarket, size, limit, await deadline(), reduceOnly));
      await s.ethFeed.setAnswer(E8(2000));
      await snapshotGas(`executeOrder ${what}`, s.engine.connect(s.keeper).executeOrder(id));
    }
    expect((await s.engine.position(1, s.ethMarket)).size).to.equal(0n);
    expect(await s.engine.keeperRewardsOf(s.keeper)).to.equal(USDC(2));
  });

  it("liquidate: partial and full", async () => {
    const s = await withAccount();
    await s.engine.connect(s.alice).modifyPosition(1, s.ethMarket, E18(25), E18(2100));
    // The first price on a 10 USD grid below 2,000 at which the account is liquidatable but only partially.
    let fraction = 0n;
    let last = 2000n;
    for (let px = 1990n; fraction === 0n || fraction === E18(1); px -= 10n) {
      await s.ethFeed.setAnswer(E8(px));
      await s.oracle.poke(s.weth);
      fraction = await s.engine.liquidationFraction(1);
      last = px;
    }
    await snapshotGas("liquidate partial", s.engine.connect(s.keeper).liquidate(1));

    await s.vault.connect(s.bob).createAccount();
    await s.usdc.mint(s.bob.address, USDC(10_000));
    await s.usdc.connect(s.bob).approve(s.vault, USDC(10_000));
    await s.vault.connect(s.bob).depositMargin(2, s.usdc, USDC(10_000));
    await s.engine.connect(s.bob).modifyPosition(2, s.ethMarket, E18(25), E18(2100));
    // A 25 % drop (the breaker's limit) from the partial's price (1,620 with σ_mm at its floor, which it keeps
    // within the fixture's grid interval): the loss, 6.25 × that price, is more than the equity (health 0).
    await s.ethFeed.setAnswer((E8(last) * 3n) / 4n);
    await s.oracle.poke(s.weth);
    expect(await s.engine.liquidationFraction(2)).to.equal(E18(1));
    await snapshotGas("liquidate full", s.engine.connect(s.keeper).liquidate(2));
    expect((await s.engine.position(2, s.ethMarket)).size).to.equal(0n);
  });
});
