import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { getCreateAddress } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";

import { alignToVolGrid, deployTestSystem, E18, USDC, type SystemFixture } from "../helpers/fixtures";
import { openAccount, PX8, toWad8 } from "../helpers/book";
import { MAJOR_MARKET, wad } from "../../deploy/params";
import { mulDivDown, mulDivUp, USDC_SCALE, WAD, wMulDown } from "../helpers/marginMath";
import {
  addFullRangeLiquidity,
  createPoolAtPrice,
  deployUniswapV3Factory,
  deployUniswapV3TestHelper,
  liquidityForQuote,
  quoteExactOutput,
} from "../../lib/uniswapV3";
import { FlashLiquidator__factory, type FlashLiquidator } from "../../typechain-types";

/*
 * FlashLiquidator (contracts/periphery/FlashLiquidator.sol) against the REAL Uniswap V3 factory and pool bytecode of
 * @uniswap/v3-core's artifacts (lib/uniswapV3.ts), on the InstantFillEngine (positions opened at a known price).
 *
 * Alice posts 2 WETH of margin (no USDC) and goes 5.4 ETH long at 2,000 (10,800 USD, 3x of her haircut collateral).
 * ETH falls 25 % to 1,500 (the breaker's limit in one round): her equity is 2 × 1,500 × 0.9 − 5.4 × 500 − fee 5.4 =
 * −5.4 USD (health 0), so a liquidation closes everything and leaves
 *   S = −fee 5.4 − loss 2,700 − reward 5 − penalty 1 % × 8,100 = −2,791.4 USD
 * owed with 2 WETH of margin and no position: the collateral sale's case. The keeper's liquidation reward is
 * 5 + 50 % × 81 = 45.5 USDC. At the 5 % discount the engine sells WETH at 1,425 USD: 2,791.4 USDC buys
 * 2,791.4 / 1,425 = 1.958877192982456140 WETH (rounded down), worth 2,938.3 USD at 1,500.
 *
 * The Uniswap pool (0.05 % tier) is initialised at the oracle's 1,500 with ~3,000,000 USDC of full-range liquidity.
 * What it charges for the exact output of the debt is read from the pool's own arithmetic (the same swap run in a
 * static call through the test helper and reverted in its callback), never from the contract under test.
 * Funding is off (maxFundingRate 0), so no figure depends on block times.
 */

const ETH0 = 2000n;
const ETH1 = 1500n;
const DISCOUNTED = wMulDown(toWad8(PX8(ETH1)), WAD - wad("0.05")); // 1,425 USD per WETH (the engine's rounding)
const DEBT_USD = wad("2791.4");
const DEBT = USDC(2791) + 400_000n; // token units, exact (no sub-unit rest)
const REWARD = USDC(45) + 500_000n;

interface Flash extends SystemFixture {
  stranger: HardhatEthersSigner;
  id: bigint;
  flash: FlashLiquidator;
  factory: Awaited<ReturnType<typeof deployUniswapV3Factory>>;
  uniPool: Awaited<ReturnType<typeof createPoolAtPrice>>;
  helper: Awaited<ReturnType<typeof deployUniswapV3TestHelper>>;
}

/**
 * Sends empty transactions from `deployer` until the two contracts deployLocalSystem creates first (USDC at nonce n,
 * WETH at n + 1) will be ordered as asked: both Uniswap token orders are tested on the same system.
 */
async function orderTokens(deployer: HardhatEthersSigner, wethIsToken0: boolean) {
  for (;;) {
    const n = await deployer.getNonce();
    const usdc = BigInt(getCreateAddress({ from: deployer.address, nonce: n }));
    const weth = BigInt(getCreateAddress({ from: deployer.address, nonce: n + 1 }));
    if (weth < usdc === wethIsToken0) return;
    await (await deployer.sendTransaction({ to: deployer.address, value: 0n })).wait();
  }
}

async function setEth(f: SystemFixture, usd: bigint) {
  await time.setNextBlockTimestamp((await time.latest()) + 1);
  await f.ethFeed.setAnswer(PX8(usd));
  await f.oracle.poke(f.weth);
}

/** The system, Alice's account at ETH 1,500 (liquidatable, not liquidated), the pool at `poolPrice`. */
async function build(wethIsToken0: boolean, ethLong: bigint = wad("5.4"), poolPrice: bigint = ETH1): Promise<Flash> {
  const [deployer, lp, alice, bob, keeper, stranger] = await ethers.getSigners();
  await orderTokens(deployer, wethIsToken0);
  await alignToVolGrid();
  const sys = await deployTestSystem(deployer);
  await sys.usdc.mint(lp.address, USDC(1_000_000));
  await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000));
  await sys.pool.connect(lp).deposit(USDC(1_000_000), lp.address);
  const f: SystemFixture = { ...sys, deployer, lp, alice, bob, keeper };
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  const book = await openAccount(f, alice, { weth: E18(2) }, [{ market: f.ethMarket, size: ethLong }], () => toWad8(PX8(ETH0)));
  await setEth(f, ETH1);

  const factory = await deployUniswapV3Factory(deployer);
  const pool = await createPoolAtPrice(factory, await f.weth.getAddress(), await f.usdc.getAddress(), 500, poolPrice * WAD);
  const helper = await deployUniswapV3TestHelper(deployer);
  await f.usdc.mint(lp.address, USDC(4_000_000));
  await f.weth.mint(lp.address, E18(4_000));
  await addFullRangeLiquidity(helper, pool, lp, await liquidityForQuote(pool, await f.usdc.getAddress(), USDC(3_000_000)));
  const flash = await new FlashLiquidator__factory(deployer).deploy(f.engine, factory);
  return { ...f, stranger, id: book.id, flash, factory, uniPool: pool, helper };
}

const wethFirst = () => build(true);
const usdcFirst = () => build(false);
/** The pool prices WETH at 1,395 (7 % under the oracle): buying 1,425-USD WETH with USDC bought there loses. */
const cheapPool = () => build(true, wad("5.4"), 1395n);
/** 5.6 ETH: the debt (2,894.6 USD) is more than the 2 WETH fetch at the discount (2,850). */
const deepDebt = () => build(true, wad("5.6"));

async function params(f: Flash, over: Partial<FlashLiquidator.ParamsStruct> = {}): Promise<FlashLiquidator.ParamsStruct> {
  return {
    accountId: f.id,
    collateral: await f.weth.getAddress(),
    pool: await f.uniPool.getAddress(),
    maxRepay: 0n,
    minProfit: 0n,
    recipient: f.keeper.address,
    liquidateFirst: false,
    ...over,
  };
}

/** Balances that must not move when a call reverts, and that the contract must never keep. */
async function snapshot(f: Flash) {
  const [s, wethMargin, slot0, poolUsdc, poolWeth, keeperWeth, keeperUsdc, flashUsdc, flashWeth] = await Promise.all([
    f.engine.accountState(f.id).then((a) => a.settlement),
    f.vault.marginOf(f.id, f.weth),
    f.uniPool.slot0().then((x) => x.sqrtPriceX96),
    f.usdc.balanceOf(f.uniPool),
    f.weth.balanceOf(f.uniPool),
    f.weth.balanceOf(f.keeper),
    f.usdc.balanceOf(f.keeper),
    f.usdc.balanceOf(f.flash),
    f.weth.balanceOf(f.flash),
  ]);
  return { s, wethMargin, slot0, poolUsdc, poolWeth, keeperWeth, keeperUsdc, flashUsdc, flashWeth };
}

async function expectNothingLeft(f: Flash) {
  expect(await f.usdc.balanceOf(f.flash)).to.equal(0n);
  expect(await f.weth.balanceOf(f.flash)).to.equal(0n);
  expect(await f.usdc.allowance(f.flash, f.engine)).to.equal(0n);
  expect(await f.weth.allowance(f.flash, f.engine)).to.equal(0n);
  expect(await f.engine.keeperRewardsOf(f.flash)).to.equal(0n);
}

describe("FlashLiquidator", function () {
  for (const [label, fixture] of [
    ["WETH is token0", wethFirst],
    ["USDC is token0", usdcFirst],
  ] as const) {
    describe(label, function () {
      it("has the token order asked for", async function () {
        const f = await loadFixture(fixture);
        const wethIs0 = (await f.uniPool.token0()) === (await f.weth.getAddress());
        expect(wethIs0).to.equal(label === "WETH is token0");
      });

      it("after the keeper's liquidation, buys the WETH with flash-swapped USDC: exact figures, profit to the keeper", async function () {
        const f = await loadFixture(fixture);
        await f.engine.connect(f.keeper).liquidate(f.id);
        expect(await f.engine.positionMask(f.id)).to.equal(0n);
        expect((await f.engine.accountState(f.id)).settlement).to.equal(-DEBT_USD);
        expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(REWARD);
        expect(await f.flash.repayFor(f.id, f.weth, 0n)).to.equal(DEBT);

        // engine: 2,791.4 USDC at 1,425 → WETH rounded down; pool: what its own arithmetic charges for that output
        const bought = mulDivDown(DEBT * USDC_SCALE, WAD, DISCOUNTED);
        expect(bought).to.equal(1_958_877_192_982_456_140n);
        const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), DEBT);
        expect(quote.amountOut).to.equal(DEBT);
        // sanity of the quote: 2,791.4 / 1,500 × (1 + 0.05 % fee) × (1 + 2,791.4 / ~3,000,000 of impact) ≈ 1.86360
        expect(quote.amountIn > wad("1.8635") && quote.amountIn < wad("1.8637")).to.equal(true);
        const profit = bought - quote.amountIn;

        const before = await snapshot(f);
        const tx = f.flash.connect(f.keeper).flashLiquidate(await params(f));
        await expect(tx)
          .to.emit(f.flash, "FlashLiquidation")
          .withArgs(f.id, f.keeper.address, f.keeper.address, await f.uniPool.getAddress(), await f.weth.getAddress(), DEBT, bought, quote.amountIn, profit, 0n);
        await expect(tx).to.emit(f.engine, "CollateralBought").withArgs(f.id, await f.flash.getAddress(), await f.weth.getAddress(), DEBT, bought);
        const receipt = await (await tx).wait();
        console.log(`      gas: flashLiquidate (buy only, ${label}) ${receipt!.gasUsed}`);

        const after = await snapshot(f);
        expect(after.poolUsdc - before.poolUsdc).to.equal(-DEBT);
        expect(after.poolWeth - before.poolWeth).to.equal(quote.amountIn);
        expect(after.keeperWeth - before.keeperWeth).to.equal(profit);
        expect(after.keeperUsdc).to.equal(before.keeperUsdc); // the keeper paid nothing
        expect(after.wethMargin).to.equal(E18(2) - bought);
        expect(after.s).to.equal(0n);
        // the liquidation reward stays the keeper's claimable balance
        expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(REWARD);
        await expectNothingLeft(f);
      });

      it("liquidates and buys in one transaction, claiming the reward to the recipient", async function () {
        const f = await loadFixture(fixture);
        const bought = mulDivDown(DEBT * USDC_SCALE, WAD, DISCOUNTED);
        const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), DEBT);
        const profit = bought - quote.amountIn;
        const before = await snapshot(f);
        const tx = f.flash.connect(f.keeper).flashLiquidate(await params(f, { liquidateFirst: true, recipient: f.bob.address }));
        await expect(tx).to.emit(f.engine, "Liquidated");
        await expect(tx)
          .to.emit(f.flash, "FlashLiquidation")
          .withArgs(f.id, f.keeper.address, f.bob.address, await f.uniPool.getAddress(), await f.weth.getAddress(), DEBT, bought, quote.amountIn, profit, REWARD);
        await expect(tx).to.emit(f.engine, "KeeperRewardsClaimed").withArgs(await f.flash.getAddress(), f.bob.address, REWARD);
        const receipt = await (await tx).wait();
        console.log(`      gas: flashLiquidate (liquidate + buy + claim, ${label}) ${receipt!.gasUsed}`);
        expect(await f.weth.balanceOf(f.bob)).to.equal(profit);
        expect(await f.usdc.balanceOf(f.bob)).to.equal(REWARD);
        expect((await snapshot(f)).keeperWeth).to.equal(before.keeperWeth);
        expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
        expect(await f.vault.marginOf(f.id, f.weth)).to.equal(E18(2) - bought);
        await expectNothingLeft(f);
      });
    });
  }

  it("repays at most maxRepay: 1,000 USDC buys 0.701754385964912280 WETH, 1,791.4 USD stays owed", async function () {
    const f = await loadFixture(wethFirst);
    await f.engine.connect(f.keeper).liquidate(f.id);
    const repay = USDC(1000);
    const bought = mulDivDown(repay * USDC_SCALE, WAD, DISCOUNTED);
    expect(bought).to.equal(701_754_385_964_912_280n);
    const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), repay);
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { maxRepay: repay })))
      .to.emit(f.flash, "FlashLiquidation")
      .withArgs(f.id, f.keeper.address, f.keeper.address, await f.uniPool.getAddress(), await f.weth.getAddress(), repay, bought, quote.amountIn, bought - quote.amountIn, 0n);
    expect((await f.engine.accountState(f.id)).settlement).to.equal(-wad("1791.4"));
    await expectNothingLeft(f);
  });

  it("buys all the margin when it is worth less than the debt (repay = its discounted price, rounded up); the rest is bad debt", async function () {
    const f = await loadFixture(deepDebt);
    await f.engine.connect(f.keeper).liquidate(f.id);
    // −fee 5.6 − loss 2,800 − reward 5 − penalty 84
    expect((await f.engine.accountState(f.id)).settlement).to.equal(-wad("2894.6"));
    const repay = mulDivUp(E18(2), DISCOUNTED, WAD * USDC_SCALE); // 2 × 1,425
    expect(repay).to.equal(USDC(2850));
    expect(await f.flash.repayFor(f.id, f.weth, 0n)).to.equal(repay);
    const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), repay);
    const tx = f.flash.connect(f.keeper).flashLiquidate(await params(f));
    await expect(tx)
      .to.emit(f.flash, "FlashLiquidation")
      .withArgs(f.id, f.keeper.address, f.keeper.address, await f.uniPool.getAddress(), await f.weth.getAddress(), repay, E18(2), quote.amountIn, E18(2) - quote.amountIn, 0n);
    await expect(tx).to.emit(f.engine, "BadDebt");
    expect(await f.vault.marginMask(f.id)).to.equal(0n);
    expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
    await expectNothingLeft(f);
  });

  it("reverts InsufficientProfit(profit, minProfit) one wei above the profit, and nothing changes", async function () {
    const f = await loadFixture(wethFirst);
    await f.engine.connect(f.keeper).liquidate(f.id);
    const bought = mulDivDown(DEBT * USDC_SCALE, WAD, DISCOUNTED);
    const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), DEBT);
    const profit = bought - quote.amountIn;
    const before = await snapshot(f);
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { minProfit: profit + 1n })))
      .to.be.revertedWithCustomError(f.flash, "InsufficientProfit")
      .withArgs(profit, profit + 1n);
    expect(await snapshot(f)).to.deep.equal(before);
    // exactly the profit is accepted
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { minProfit: profit }))).to.changeTokenBalance(f.weth, f.keeper, profit);
  });

  it("reverts InsufficientProfit with the (negative) loss when the pool prices WETH below the discounted price", async function () {
    const f = await loadFixture(cheapPool);
    await f.engine.connect(f.keeper).liquidate(f.id);
    const bought = mulDivDown(DEBT * USDC_SCALE, WAD, DISCOUNTED);
    const quote = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), DEBT);
    // 2,791.4 USDC cost ~ 2.002 WETH on a pool at 1,395: more than the 1.9589 WETH they buy
    expect(quote.amountIn > bought).to.equal(true);
    const before = await snapshot(f);
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f)))
      .to.be.revertedWithCustomError(f.flash, "InsufficientProfit")
      .withArgs(bought - quote.amountIn, 0n);
    expect(await snapshot(f)).to.deep.equal(before);
  });

  it("rejects a pool that is not the factory's pool of (WETH, USDC): another factory's, another pair's, an EOA, a token", async function () {
    const f = await loadFixture(wethFirst);
    await f.engine.connect(f.keeper).liquidate(f.id);
    const weth = await f.weth.getAddress();
    const usdc = await f.usdc.getAddress();
    // the same pair and tier from another (genuine) factory
    const other = await deployUniswapV3Factory(f.deployer);
    const otherPool = await createPoolAtPrice(other, weth, usdc, 500, ETH1 * WAD);
    // the expected factory's WBTC/USDC pool
    const btcPool = await createPoolAtPrice(f.factory, await f.wbtc.getAddress(), usdc, 500, 30_000n * WAD);
    for (const pool of [await otherPool.getAddress(), await btcPool.getAddress(), f.stranger.address, usdc]) {
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { pool })))
        .to.be.revertedWithCustomError(f.flash, "UnknownPool")
        .withArgs(pool, weth);
    }
    // the genuine WBTC/USDC pool is not a pool of WETH either way round
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { pool: await btcPool.getAddress(), collateral: await f.wbtc.getAddress() })))
      .to.be.revertedWithCustomError(f.flash, "NoCollateral")
      .withArgs(f.id, await f.wbtc.getAddress());
  });

  it("rejects a stray swap callback: from anyone, and from the genuine pool outside an operation", async function () {
    const f = await loadFixture(wethFirst);
    await f.engine.connect(f.keeper).liquidate(f.id);
    const data = ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "address", "uint256", "uint256"], [f.id, await f.weth.getAddress(), DEBT, 0n]);
    await expect(f.flash.connect(f.stranger).uniswapV3SwapCallback(1n, -DEBT, data))
      .to.be.revertedWithCustomError(f.flash, "UnexpectedCallback")
      .withArgs(f.stranger.address, ethers.ZeroAddress);
    const poolAddr = await f.uniPool.getAddress();
    await network.provider.send("hardhat_impersonateAccount", [poolAddr]);
    await network.provider.send("hardhat_setBalance", [poolAddr, "0xDE0B6B3A7640000"]);
    const poolSigner = await ethers.getSigner(poolAddr);
    await expect(f.flash.connect(poolSigner).uniswapV3SwapCallback(1n, -DEBT, data))
      .to.be.revertedWithCustomError(f.flash, "UnexpectedCallback")
      .withArgs(poolAddr, ethers.ZeroAddress);
    await network.provider.send("hardhat_stopImpersonatingAccount", [poolAddr]);
  });

  it("reverts NothingToRepay for an account that owes nothing, and the engine's NotLiquidatable for a healthy one", async function () {
    const f = await loadFixture(wethFirst);
    // Bob: 1 WETH and no position: no debt
    const bob = await openAccount(f, f.bob, { weth: E18(1) }, [], () => toWad8(PX8(ETH1)));
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { accountId: bob.id })))
      .to.be.revertedWithCustomError(f.flash, "NothingToRepay")
      .withArgs(bob.id);
    await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { accountId: bob.id, liquidateFirst: true })))
      .to.be.revertedWithCustomError(f.engine, "NotLiquidatable");
  });

  it("refuses a zero recipient and a zero engine or factory", async function () {
    const f = await loadFixture(wethFirst);
    await expect(f.flash.flashLiquidate(await params(f, { recipient: ethers.ZeroAddress }))).to.be.revertedWithCustomError(f.flash, "ZeroAddress");
    const factory = new FlashLiquidator__factory(f.deployer);
    await expect(factory.deploy(ethers.ZeroAddress, f.factory)).to.be.revertedWithCustomError(f.flash, "ZeroAddress");
    await expect(factory.deploy(f.engine, ethers.ZeroAddress)).to.be.revertedWithCustomError(f.flash, "ZeroAddress");
  });
});
