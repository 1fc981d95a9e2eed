/**
 * The keeper selling a liquidated account's collateral capital-free through the FlashLiquidator (keeper config
 * `flashLiquidator` / `flashPool`), or directly with its own USDC when it holds enough (`buyCollateral`: no pool fee), on
 * the in-process network: the production engine (two-step orders), the real Uniswap V3 bytecode (lib/uniswapV3.ts).
 * Unless a test gives it USDC, the keeper holds none.
 */
import { expect } from "chai";
import { network } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";

import { MAJOR_MARKET, wad } from "../../deploy/params";
import { recordOfLocalSystem } from "../../lib/deployment";
import { fillAtNextRound } from "../../lib/orders";
import {
  addFullRangeLiquidity,
  createPoolAtPrice,
  deployUniswapV3Factory,
  deployUniswapV3TestHelper,
  liquidityForQuote,
  quoteExactOutput,
} from "../../lib/uniswapV3";
import { Keeper } from "../../keeper/keeper";
import { memoryLogger } from "../../keeper/log";
import { FlashLiquidator__factory } from "../../typechain-types";
import { productionFixture } from "../helpers/fixtures";
import { baseFee, config, E18, E8, endpoint, GWEI, keeperWallet, tmpDb, USDC, W } from "./world";

const K10 = keeperWallet(10).address;

/**
 * Alice: 2 WETH of margin, 0.5 USDC of reserve (the order fee), 5.4 ETH long filled at 2,000; ETH then falls to 1,500
 * (health 0: a full liquidation leaves her owing with her WETH, test/periphery/FlashLiquidator.test.ts has the
 * arithmetic). A WETH/USDC 0.05 % pool at `poolPrice` with ~3,000,000 USDC of liquidity, and the FlashLiquidator.
 */
async function flashWorld(poolPrice: bigint) {
  const f = await productionFixture();
  await network.provider.send("hardhat_setBalance", [K10, "0x56BC75E2D63100000"]); // 100 ETH of gas, no tokens
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  const rec = await recordOfLocalSystem(f, { network: "hardhat", chainId: 31337, startBlock: 0, deployer: f.deployer.address });
  await f.weth.mint(f.alice.address, E18(2));
  await f.weth.connect(f.alice).approve(f.vault, E18(2));
  await f.usdc.mint(f.alice.address, 500_000n);
  await f.usdc.connect(f.alice).approve(f.vault, 500_000n);
  await f.vault.connect(f.alice).createAccount();
  const id = await f.vault.accountCount();
  await f.vault.connect(f.alice).depositMargin(id, f.weth, E18(2));
  await f.vault.connect(f.alice).deposit(id, f.usdc, 500_000n);
  await fillAtNextRound(f.engine, f.alice, f.deployer, f.ethFeed, { accountId: id, marketId: f.ethMarket, sizeDelta: wad("5.4") });
  await f.ethFeed.setAnswer(E8(1500n));
  await f.oracle.poke(f.weth);

  const factory = await deployUniswapV3Factory(f.deployer);
  const pool = await createPoolAtPrice(factory, await f.weth.getAddress(), await f.usdc.getAddress(), 500, poolPrice * W);
  const helper = await deployUniswapV3TestHelper(f.deployer);
  await f.usdc.mint(f.lp.address, USDC(4_000_000));
  await f.weth.mint(f.lp.address, E18(4_000));
  await addFullRangeLiquidity(helper, pool, f.lp, await liquidityForQuote(pool, await f.usdc.getAddress(), USDC(3_000_000)));
  const flash = await new FlashLiquidator__factory(f.deployer).deploy(f.engine, factory);
  return { ...f, rec, id, uniPool: pool, helper, flash };
}

const fairPool = () => flashWorld(1500n);
const cheapPool = () => flashWorld(1395n);

async function startKeeper(f: Awaited<ReturnType<typeof flashWorld>>, withFlash: boolean) {
  const { log, lines } = memoryLogger();
  const over = withFlash ? { flashLiquidator: await f.flash.getAddress(), flashPool: await f.uniPool.getAddress(), flashMinProfitUsd: "1" } : {};
  const k = await Keeper.create(config(tmpDb(), over), { rec: f.rec, endpoints: [endpoint("primary")], signer: keeperWallet(10), log });
  return { k, lines };
}

const outcomes = (r: { results: { kind: string; ids: bigint[]; outcome: string; reason?: string }[] }) =>
  r.results.map((x) => `${x.kind}:${x.ids.join(",")}:${x.outcome}${x.reason ? `:${x.reason}` : ""}`);

/** What the engine sells for the whole debt: WETH at 1,500 × 0.95, rounded down; the repay is the debt in units. */
async function expectedBuy(f: Awaited<ReturnType<typeof flashWorld>>) {
  const s = (await f.engine.accountState(f.id)).settlement;
  const repay = (-s + 10n ** 12n - 1n) / 10n ** 12n;
  const bought = (repay * 10n ** 12n * W) / ((1500n * W * 95n) / 100n);
  const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), repay);
  return { s, repay, bought, quote };
}

describe("keeper › flash liquidation (in-process network)", function () {
  const calm = () => baseFee(GWEI / 10n);

  it("liquidates, then buys the collateral through the FlashLiquidator in the next cycle: the profit is the keeper's WETH", async () => {
    const f = await loadFixture(fairPool);
    const { k } = await startKeeper(f, true);
    await calm();
    expect(outcomes(await k.cycle())).to.deep.equal([`liquidate:${f.id}:sent`]);
    expect(await f.engine.positionMask(f.id)).to.equal(0n);
    const e = await expectedBuy(f);
    expect(e.s).to.equal(-wad("2791.4"));
    expect(e.bought).to.equal(1_958_877_192_982_456_140n);

    const from = (await network.provider.send("eth_blockNumber", []).then(Number)) + 1;
    const r = await k.cycle();
    expect(outcomes(r)).to.deep.equal([`flashLiquidate:${f.id}:sent`]);
    const profit = e.bought - e.quote.amountIn;
    // valued at the oracle's 1,500 (rounded down), as the strategy saw it
    expect(r.plan.actions[0].valueUsd).to.equal((profit * 1500n * W) / W);
    const logs = await f.flash.queryFilter(f.flash.filters.FlashLiquidation(), from);
    expect(logs.map((l) => [...l.args])).to.deep.equal([
      [f.id, K10, K10, await f.uniPool.getAddress(), await f.weth.getAddress(), e.repay, e.bought, e.quote.amountIn, profit, 0n],
    ]);
    expect(await f.weth.balanceOf(K10)).to.equal(profit);
    expect(await f.usdc.balanceOf(K10)).to.equal(0n);
    expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
    expect(await f.vault.marginOf(f.id, f.weth)).to.equal(E18(2) - e.bought);
    // the liquidation's reward (5 + 50 % × 81 USD) stays the keeper's to claim
    expect(await f.engine.keeperRewardsOf(K10)).to.equal(USDC(45) + 500_000n);
    expect(k.store.journal().map((j) => [j.key, j.status])).to.deep.equal([[`liquidate:${f.id}`, "mined"], [`buy:${f.id}`, "mined"]]);
    // nothing left to do
    const r3 = await k.cycle();
    expect(outcomes(r3)).to.deep.equal([]);
    expect(r3.plan.waits).to.deep.equal([]);
    await k.close();
  });

  it("with USDC of its own covering the repay, approves the engine for exactly it and buys directly (no pool fee), FlashLiquidator configured or not", async () => {
    for (const withFlash of [true, false]) {
      const f = await loadFixture(fairPool);
      const { k } = await startKeeper(f, withFlash);
      await calm();
      expect(outcomes(await k.cycle())).to.deep.equal([`liquidate:${f.id}:sent`]);
      const e = await expectedBuy(f);
      await f.usdc.mint(K10, e.repay); // exactly the repay: one unit less and the FlashLiquidator (or nobody) buys
      const from = (await network.provider.send("eth_blockNumber", []).then(Number)) + 1;
      const r = await k.cycle();
      expect(outcomes(r)).to.deep.equal([`approve:${f.id}:sent`, `buyCollateral:${f.id}:sent`]);
      // the profit at the oracle: the WETH's value at 1,500 less the repay (the discount, no pool fee)
      expect(r.plan.actions[1].valueUsd).to.equal((e.bought * 1500n * W) / W - e.repay * 10n ** 12n);
      const bought = await f.engine.queryFilter(f.engine.filters.CollateralBought(f.id), from);
      expect(bought.map((l) => [...l.args])).to.deep.equal([[f.id, K10, await f.weth.getAddress(), e.repay, e.bought]]);
      const rc = await network.provider.send("eth_getTransactionReceipt", [bought[0].transactionHash]);
      expect(BigInt(rc.gasUsed)).to.be.lte(250_000n); // within the config's default gas.buyCollateral
      expect([await f.usdc.balanceOf(K10), await f.usdc.allowance(K10, f.engine), await f.weth.balanceOf(K10)]).to.deep.equal([0n, 0n, e.bought]);
      expect(await f.flash.queryFilter(f.flash.filters.FlashLiquidation(), from)).to.deep.equal([]);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
      expect(await f.vault.marginOf(f.id, f.weth)).to.equal(E18(2) - e.bought);
      expect(k.store.journal().map((j) => [j.key, j.status])).to.deep.equal([
        [`liquidate:${f.id}`, "mined"],
        [`approve:${f.id}`, "mined"],
        [`buy:${f.id}`, "mined"],
      ]);
      expect(outcomes(await k.cycle())).to.deep.equal([]);
      await k.close();
    }
  });

  it("without a FlashLiquidator configured, leaves the owing account's collateral to others", async () => {
    const f = await loadFixture(fairPool);
    const { k } = await startKeeper(f, false);
    await calm();
    expect(outcomes(await k.cycle())).to.deep.equal([`liquidate:${f.id}:sent`]);
    const r = await k.cycle();
    expect(outcomes(r)).to.deep.equal([]);
    expect(r.plan.waits).to.deep.equal([]);
    expect((await f.engine.accountState(f.id)).settlement).to.equal(-wad("2791.4"));
    expect(await f.vault.marginOf(f.id, f.weth)).to.equal(E18(2));
    await k.close();
  });

  it("waits, naming the loss, when the pool prices WETH below the engine's discounted price", async () => {
    const f = await loadFixture(cheapPool);
    const { k } = await startKeeper(f, true);
    await calm();
    expect(outcomes(await k.cycle())).to.deep.equal([`liquidate:${f.id}:sent`]);
    const e = await expectedBuy(f);
    const r = await k.cycle();
    expect(outcomes(r)).to.deep.equal([]);
    expect(r.plan.waits).to.deep.equal([
      { key: `buy:${f.id}`, reason: `flash liquidation would revert: InsufficientProfit(${e.bought - e.quote.amountIn}, 0)` },
    ]);
    expect(await f.vault.marginOf(f.id, f.weth)).to.equal(E18(2));
    await k.close();
  });
});
