import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import { getCreateAddress } from "ethers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";

import { alignToVolGrid, deployTestSystem, E18, USDC, type SystemFixture } from "../helpers/fixtures";
import { PX8 } from "../helpers/book";
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
import { FlashLiquidator__factory, type FlashLiquidator, type MockERC20 } from "../../typechain-types";
import { planSales, type Conditions, type DebtSnapshot, type Wait } from "../../keeper/strategy";

/*
 * Independent review of contracts/periphery/FlashLiquidator.sol (and the keeper's planSales), on the real Uniswap V3
 * factory/pool bytecode (lib/uniswapV3.ts) and the InstantFillEngine.
 *
 * "fixed (F1)" failed on the reviewed code (a minProfit >= 2^255 wrapped negative in a signed compare) and asserts the
 * fix; tests named "resisted: …" are regression tests of attacks the code withstands. The review's note that a
 * capital-free sale could pre-empt a rescue with priority is fixed in the engine (buyCollateral: RescueAvailable,
 * test/engine/Liquidation.test.ts).
 *
 * The engine's sale terms (LiquidationLogic._quote), mirrored here in bigint from the engine's NatSpec/formulas and
 * checked against the engine's own CollateralBought event (never against the contract under test):
 *   debt     = ceil(−S / 1e12)                                      (USDC units)
 *   disc     = floor(price × (1 − collateralDiscount) / 1e18)       (WAD USD per whole token)
 *   allOfIt  = ceil(margin × disc / (10^dec × 1e12))                (USDC units for all the margin)
 *   repay    = min(debt, allOfIt[, maxRepay])
 *   bought   = floor(repay × 1e12 × 10^dec / disc), capped at the margin (then repay = allOfIt)
 */

const ETH0 = 2000n;

interface Case {
  /** which listed token alice posts as her only margin */
  coll: "weth" | "wbtc";
  margin: bigint;
  /** ETH long, WAD */
  size: bigint;
  /** the ETH feed's 8-decimal answer after the drop */
  ethEnd8: bigint;
  /** the BTC feed's 8-decimal answer (default: 30,000) */
  btc8?: bigint;
  /** the Uniswap pool's price of the collateral (WAD USD); default: the oracle's */
  poolPriceWad?: bigint;
  /** the pool token order: collateral is token0 */
  collIsToken0?: boolean;
}

interface Flash extends SystemFixture {
  stranger: HardhatEthersSigner;
  id: bigint;
  coll: MockERC20;
  decimals: bigint;
  flash: FlashLiquidator;
  factory: Awaited<ReturnType<typeof deployUniswapV3Factory>>;
  uniPool: Awaited<ReturnType<typeof createPoolAtPrice>>;
  helper: Awaited<ReturnType<typeof deployUniswapV3TestHelper>>;
}

/** Orders USDC (nonce n) and WETH (n + 1) / WBTC (n + 2) as asked, by burning nonces (deployLocalSystem order). */
async function orderTokens(deployer: HardhatEthersSigner, collIsToken0: boolean, offset: number) {
  for (;;) {
    const n = await deployer.getNonce();
    const usdc = BigInt(getCreateAddress({ from: deployer.address, nonce: n }));
    const coll = BigInt(getCreateAddress({ from: deployer.address, nonce: n + offset }));
    if (coll < usdc === collIsToken0) return;
    await (await deployer.sendTransaction({ to: deployer.address, value: 0n })).wait();
  }
}

async function setFeeds(f: SystemFixture, eth8: bigint, btc8?: bigint) {
  await time.setNextBlockTimestamp((await time.latest()) + 1);
  await network.provider.send("evm_setAutomine", [false]);
  await f.ethFeed.setAnswer(eth8);
  if (btc8 !== undefined) await f.btcFeed.setAnswer(btc8);
  await network.provider.send("evm_mine", []);
  await network.provider.send("evm_setAutomine", [true]);
  await f.oracle.poke(f.weth);
  await f.oracle.poke(f.wbtc);
}

async function build(c: Case): Promise<Flash> {
  const [deployer, lp, alice, bob, keeper, stranger] = await ethers.getSigners();
  await orderTokens(deployer, c.collIsToken0 ?? true, c.coll === "weth" ? 1 : 2);
  await alignToVolGrid();
  const sys = await deployTestSystem(deployer);
  await sys.usdc.mint(lp.address, USDC(1_000_000));
  await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000));
  await sys.pool.connect(lp).deposit(USDC(1_000_000), lp.address);
  const f: SystemFixture = { ...sys, deployer, lp, alice, bob, keeper };
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  const coll = (c.coll === "weth" ? f.weth : f.wbtc) as unknown as MockERC20;
  const decimals = BigInt(await coll.decimals());

  await f.vault.connect(alice).createAccount();
  const id = await f.vault.accountCount();
  await coll.mint(alice.address, c.margin);
  await coll.connect(alice).approve(f.vault, c.margin);
  await f.vault.connect(alice).depositMargin(id, coll, c.margin);
  await f.engine.connect(alice).modifyPosition(id, f.ethMarket, c.size, ethers.MaxUint256);
  await setFeeds(f, c.ethEnd8, c.btc8);

  const factory = await deployUniswapV3Factory(deployer);
  const oraclePx = await f.oracle.price(coll);
  const pool = await createPoolAtPrice(factory, await coll.getAddress(), await f.usdc.getAddress(), 500, c.poolPriceWad ?? oraclePx);
  const helper = await deployUniswapV3TestHelper(deployer);
  await f.usdc.mint(lp.address, USDC(4_000_000));
  await coll.mint(lp.address, 10n ** decimals * 4_000n);
  await addFullRangeLiquidity(helper, pool, lp, await liquidityForQuote(pool, await f.usdc.getAddress(), USDC(3_000_000)));
  const flash = await new FlashLiquidator__factory(deployer).deploy(f.engine, factory);
  return { ...f, stranger, id, coll, decimals, flash, factory, uniPool: pool, helper };
}

/** The existing suite's base case: 2 WETH, 5.4 ETH long at 2,000, ETH at 1,500; pool at the oracle. */
const base = () => build({ coll: "weth", margin: E18(2), size: wad("5.4"), ethEnd8: PX8(1500) });
/** Same, the pool prices WETH at 1,395 (under the 1,425 discounted price): every sale loses. */
const cheapPool = () => build({ coll: "weth", margin: E18(2), size: wad("5.4"), ethEnd8: PX8(1500), poolPriceWad: 1395n * WAD });

async function params(f: Flash, over: Partial<FlashLiquidator.ParamsStruct> = {}): Promise<FlashLiquidator.ParamsStruct> {
  return {
    accountId: f.id,
    collateral: await f.coll.getAddress(),
    pool: await f.uniPool.getAddress(),
    maxRepay: 0n,
    minProfit: 0n,
    recipient: f.keeper.address,
    liquidateFirst: false,
    ...over,
  };
}

/** The engine's sale terms for the account now (see the header), from the engine's state and oracle. */
async function engineTerms(f: Flash, maxRepay = 0n) {
  const S = (await f.engine.accountState(f.id)).settlement;
  const margin = await f.vault.marginOf(f.id, f.coll);
  const px = await f.oracle.price(f.coll);
  const disc = wMulDown(px, WAD - (await f.engine.riskParams()).collateralDiscount);
  const unit = 10n ** f.decimals;
  const debt = mulDivUp(-S, 1n, USDC_SCALE);
  let repay = maxRepay !== 0n && maxRepay < debt ? maxRepay : debt;
  let bought = mulDivDown(repay * USDC_SCALE, unit, disc);
  if (bought > margin) {
    bought = margin;
    repay = mulDivUp(margin, disc, unit * USDC_SCALE);
  }
  return { S, margin, px, disc, debt, repay, bought };
}

async function expectNothingLeft(f: Flash) {
  expect(await f.usdc.balanceOf(f.flash)).to.equal(0n);
  expect(await f.coll.balanceOf(f.flash)).to.equal(0n);
  expect(await f.usdc.allowance(f.flash, f.engine)).to.equal(0n);
  expect(await f.engine.keeperRewardsOf(f.flash)).to.equal(0n);
}

/** Flash-buys at the engine's terms and checks every figure against the engine's event and the pool's own quote. */
async function flashAndCheck(f: Flash, maxRepay = 0n) {
  const t = await engineTerms(f, maxRepay);
  expect(await f.flash.repayFor(f.id, f.coll, maxRepay)).to.equal(t.repay);
  const q = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t.repay);
  expect(t.bought > q.amountIn).to.equal(true, "case must be profitable");
  const tx = f.flash.connect(f.keeper).flashLiquidate(await params(f, { maxRepay, minProfit: t.bought - q.amountIn }));
  await expect(tx).to.emit(f.engine, "CollateralBought").withArgs(f.id, await f.flash.getAddress(), await f.coll.getAddress(), t.repay, t.bought);
  await expect(tx)
    .to.emit(f.flash, "FlashLiquidation")
    .withArgs(f.id, f.keeper.address, f.keeper.address, await f.uniPool.getAddress(), await f.coll.getAddress(), t.repay, t.bought, q.amountIn, t.bought - q.amountIn, 0n);
  await expectNothingLeft(f);
  return t;
}

/** A collateral address for the pure strategy tests (any address: planSales only carries it into the action). */
const WBTC_ADDRESS = "0x2260FAC5E5542a773Aa44fBCfeDf7C193bc2C599";

describe("Review: FlashLiquidator", function () {

  // ------------------------------------------------------------------------------------------------- rounding
  describe("repay mirror vs buyCollateral (no RepayMismatch, no dust)", function () {
    const cases: [string, Case][] = [
      // debt-limited, sub-unit USD rests (odd 8-decimal ETH prices and sizes)
      ["WETH, debt-limited, ETH 1,500.00000001, 5.4 long", { coll: "weth", margin: E18(2), size: wad("5.4"), ethEnd8: PX8(1500) + 1n }],
      ["WETH, debt-limited, ETH 1,503.33333333, 5.412345678901234567 long", { coll: "weth", margin: E18(2), size: 5_412_345_678_901_234_567n, ethEnd8: 150_333_333_333n }],
      ["WETH (token1), debt-limited, odd margin 1.999999999999999999", { coll: "weth", margin: E18(2) - 1n, size: wad("5.4"), ethEnd8: 150_000_000_007n, collIsToken0: false }],
      // collateral-limited (the margin's discounted price rounded up), non-integer USDC
      ["WETH, collateral-limited, ETH 1,500.12345678, 5.6 long", { coll: "weth", margin: E18(2), size: wad("5.6"), ethEnd8: 150_012_345_678n }],
      ["WETH, collateral-limited, odd margin 1.987654321987654321", { coll: "weth", margin: 1_987_654_321_987_654_321n, size: wad("5.6"), ethEnd8: 150_000_000_003n }],
      // 8-decimal collateral (WBTC), BTC down ~25 % with ETH to odd prices (the margin worth what 2 WETH are)
      ["WBTC (8 dec), debt-limited", { coll: "wbtc", margin: 13_333_333n, size: wad("5.4"), ethEnd8: PX8(1500), btc8: 2_250_012_345_678n }],
      ["WBTC (8 dec, token1), debt-limited, odd ETH", { coll: "wbtc", margin: 13_333_337n, size: 5_400_000_000_000_000_001n, ethEnd8: 150_077_777_777n, btc8: 2_250_087_654_321n, collIsToken0: false }],
      ["WBTC (8 dec), collateral-limited", { coll: "wbtc", margin: 13_333_333n, size: wad("5.6"), ethEnd8: 150_000_000_001n, btc8: 2_250_012_345_679n }],
    ];
    for (const [label, c] of cases) {
      it(`resisted: ${label}: repayFor = what buyCollateral takes, exact figures, no dust`, async function () {
        const f = await build(c);
        await f.engine.connect(f.keeper).liquidate(f.id);
        expect(await f.engine.positionMask(f.id)).to.equal(0n, "full liquidation expected");
        const t = await flashAndCheck(f);
        if (t.repay === t.debt) {
          expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
          expect(await f.vault.marginOf(f.id, f.coll)).to.equal(t.margin - t.bought);
        } else {
          // all the margin bought, the rest written off: nothing of the account is left
          expect(t.bought).to.equal(t.margin);
          expect(await f.vault.marginMask(f.id)).to.equal(0n);
          expect((await f.engine.accountState(f.id)).settlement).to.equal(0n);
        }
      });
    }

    it("resisted: maxRepay at every unit boundary near the collateral limit repays exactly what the engine takes", async function () {
      const f = await build({ coll: "weth", margin: E18(2), size: wad("5.6"), ethEnd8: 150_012_345_678n });
      await f.engine.connect(f.keeper).liquidate(f.id);
      const t = await engineTerms(f);
      // the margin's price rounded up, and one unit either side of it
      for (const m of [t.repay - 1n, t.repay, t.repay + 1n]) {
        const want = await engineTerms(f, m);
        expect(await f.flash.repayFor(f.id, f.coll, m)).to.equal(want.repay);
      }
      await flashAndCheck(f, t.repay - 1n);
      // one unit of USDC left to buy with, at most a few wei of WETH: the sale goes through or reverts InsufficientProfit
      const rest = await engineTerms(f);
      expect(await f.flash.repayFor(f.id, f.coll, 0n)).to.equal(rest.repay);
    });
  });

  // ------------------------------------------------------------------------------------------------- minProfit
  describe("minProfit", function () {
    it("fixed (F1): a minProfit above int256 max (2^255) is a larger floor, not a negative one: reverts InsufficientProfit", async function () {
      // int256(minProfit) wraps for minProfit >= 2^255, so `profit < int256(minProfit)` passes any loss (2^256 − 1 is
      // read as −1, 2^255 as −2^255); the callback then tries to pay the pool its due out of whatever collateral the
      // contract holds: with none, the token's ERC20InsufficientBalance; with stray tokens, the pool is paid from them
      // and only the checked `bought - paidToPool` in flashLiquidate stops it (Panic 0x11). Never the named error.
      const f = await loadFixture(cheapPool);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const t = await engineTerms(f);
      const q = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t.repay);
      const minProfit = 2n ** 255n;
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { minProfit })))
        .to.be.revertedWithCustomError(f.flash, "InsufficientProfit")
        .withArgs(t.bought - q.amountIn, minProfit);
    });

    it("resisted: stray WETH/USDC in the contract cannot fund a loss-making sale nor be extracted (minProfit 0, 2^255, max)", async function () {
      const f = await loadFixture(cheapPool);
      await f.engine.connect(f.keeper).liquidate(f.id);
      // someone's mistaken transfers: more WETH than the sale's loss, and some USDC
      await f.weth.mint(await f.flash.getAddress(), E18(1));
      await f.usdc.mint(await f.flash.getAddress(), USDC(500));
      const t = await engineTerms(f);
      const q = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t.repay);
      expect(q.amountIn - t.bought < E18(1)).to.equal(true); // the stray WETH would cover the loss
      await expect(f.flash.connect(f.stranger).flashLiquidate(await params(f, { recipient: f.stranger.address })))
        .to.be.revertedWithCustomError(f.flash, "InsufficientProfit")
        .withArgs(t.bought - q.amountIn, 0n);
      for (const minProfit of [2n ** 255n, 2n ** 256n - 1n]) {
        await expect(f.flash.connect(f.stranger).flashLiquidate(await params(f, { minProfit, recipient: f.stranger.address }))).to.be.reverted;
      }
      expect(await f.weth.balanceOf(f.flash)).to.equal(E18(1));
      expect(await f.usdc.balanceOf(f.flash)).to.equal(USDC(500));
      expect(await f.weth.balanceOf(f.stranger)).to.equal(0n);
      expect(await f.usdc.balanceOf(f.stranger)).to.equal(0n);
      expect((await f.engine.accountState(f.id)).settlement).to.equal(t.S);
    });

    it("resisted: stray tokens are not paid out with a profitable sale (the recipient gets exactly bought − paidToPool)", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      await f.weth.mint(await f.flash.getAddress(), E18(1));
      await f.usdc.mint(await f.flash.getAddress(), USDC(500));
      const t = await engineTerms(f);
      const q = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t.repay);
      await expect(f.flash.connect(f.stranger).flashLiquidate(await params(f, { recipient: f.stranger.address }))).to.changeTokenBalances(
        f.weth,
        [f.stranger, f.flash],
        [t.bought - q.amountIn, 0n],
      );
      expect(await f.usdc.balanceOf(f.flash)).to.equal(USDC(500));
      expect(await f.usdc.allowance(f.flash, f.engine)).to.equal(0n);
    });

    it("resisted: an oracle move between quote and send only changes the engine's side; the floor still binds in WETH", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const t = await engineTerms(f);
      const q0 = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t.repay);
      const minProfit = t.bought - q0.amountIn;
      // ETH up 1 % on the oracle before the keeper's transaction lands: the engine sells fewer WETH per USDC
      await setFeeds(f, PX8(1515));
      const t1 = await engineTerms(f);
      expect(t1.bought < t.bought).to.equal(true);
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { minProfit })))
        .to.be.revertedWithCustomError(f.flash, "InsufficientProfit")
        .withArgs(t1.bought - q0.amountIn, minProfit);
    });

    it("resisted: sandwich by a genuine swap moving the pool (another account's flash sale first) reverts InsufficientProfit", async function () {
      // the keeper quotes the full sale; an attacker front-runs with a 1,000-USDC sale of the same account through
      // the same pool (a genuine swap: the pool's price moves, the debt shrinks); the keeper's floor then binds.
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const t = await engineTerms(f);
      const q0 = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t.repay);
      const keeperMin = t.bought - q0.amountIn;
      await f.flash.connect(f.stranger).flashLiquidate(await params(f, { maxRepay: USDC(1000), recipient: f.stranger.address }));
      const t2 = await engineTerms(f);
      const q2 = await quoteExactOutput(f.helper, f.uniPool, await f.usdc.getAddress(), t2.repay);
      const p2 = t2.bought - q2.amountIn;
      expect(p2 < keeperMin).to.equal(true);
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { minProfit: keeperMin })))
        .to.be.revertedWithCustomError(f.flash, "InsufficientProfit")
        .withArgs(p2, keeperMin);
    });
  });

  // ------------------------------------------------------------------------------------------------- pools / callback
  describe("pool and callback forgery", function () {
    it("resisted: a clone of the genuine pool's bytecode (same fee/token0/token1/factory immutables) is UnknownPool", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const genuine = await f.uniPool.getAddress();
      const clone = ethers.getAddress("0x00000000000000000000000000000000c10e0001");
      await network.provider.send("hardhat_setCode", [clone, await ethers.provider.getCode(genuine)]);
      const asPool = f.uniPool.attach(clone) as typeof f.uniPool;
      expect(await asPool.fee()).to.equal(500n);
      expect(await asPool.factory()).to.equal(await f.factory.getAddress());
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { pool: clone })))
        .to.be.revertedWithCustomError(f.flash, "UnknownPool")
        .withArgs(clone, await f.weth.getAddress());
    });

    it("resisted: pool = address(0), and USDC passed as the collateral (getPool(USDC, USDC)) are UnknownPool", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      await expect(f.flash.flashLiquidate(await params(f, { pool: ethers.ZeroAddress })))
        .to.be.revertedWithCustomError(f.flash, "UnknownPool")
        .withArgs(ethers.ZeroAddress, await f.weth.getAddress());
      await expect(f.flash.flashLiquidate(await params(f, { collateral: await f.usdc.getAddress() })))
        .to.be.revertedWithCustomError(f.flash, "UnknownPool")
        .withArgs(await f.uniPool.getAddress(), await f.usdc.getAddress());
    });

    it("resisted: a genuine pool of (WETH, USDC) at another fee tier (0.3 %) is accepted and priced by its own terms", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const p3000 = await createPoolAtPrice(f.factory, await f.weth.getAddress(), await f.usdc.getAddress(), 3000, 1500n * WAD);
      await addFullRangeLiquidity(f.helper, p3000, f.lp, await liquidityForQuote(p3000, await f.usdc.getAddress(), USDC(500_000)));
      const t = await engineTerms(f);
      const q = await quoteExactOutput(f.helper, p3000, await f.usdc.getAddress(), t.repay);
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { pool: await p3000.getAddress() })))
        .to.emit(f.flash, "FlashLiquidation")
        .withArgs(f.id, f.keeper.address, f.keeper.address, await p3000.getAddress(), await f.weth.getAddress(), t.repay, t.bought, q.amountIn, t.bought - q.amountIn, 0n);
      await expectNothingLeft(f);
    });

    it("resisted: the genuine pool of another collateral the account also holds cannot be paired with the wrong token", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const btcPool = await createPoolAtPrice(f.factory, await f.wbtc.getAddress(), await f.usdc.getAddress(), 500, 30_000n * WAD);
      await expect(f.flash.flashLiquidate(await params(f, { pool: await btcPool.getAddress() })))
        .to.be.revertedWithCustomError(f.flash, "UnknownPool")
        .withArgs(await btcPool.getAddress(), await f.weth.getAddress());
    });

    it("resisted: a pool too shallow for the exact output reverts (no partial fill), nothing moves", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const thin = await createPoolAtPrice(f.factory, await f.weth.getAddress(), await f.usdc.getAddress(), 10_000, 1500n * WAD);
      await addFullRangeLiquidity(f.helper, thin, f.lp, await liquidityForQuote(thin, await f.usdc.getAddress(), USDC(1_000)));
      const S = (await f.engine.accountState(f.id)).settlement;
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { pool: await thin.getAddress() }))).to.be.reverted;
      expect((await f.engine.accountState(f.id)).settlement).to.equal(S);
      await expectNothingLeft(f);
    });

    it("resisted: the callback from the genuine pool's address with forged data outside a swap is UnexpectedCallback", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      const poolAddr = await f.uniPool.getAddress();
      await f.weth.mint(await f.flash.getAddress(), E18(1));
      await network.provider.send("hardhat_impersonateAccount", [poolAddr]);
      await network.provider.send("hardhat_setBalance", [poolAddr, "0xDE0B6B3A7640000"]);
      const data = ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "address", "uint256", "uint256"], [f.id, await f.weth.getAddress(), 0n, 0n]);
      // asks for 1 WETH "owed" for nothing received
      await expect(f.flash.connect(await ethers.getSigner(poolAddr)).uniswapV3SwapCallback(E18(1), 0n, data))
        .to.be.revertedWithCustomError(f.flash, "UnexpectedCallback")
        .withArgs(poolAddr, ethers.ZeroAddress);
      await network.provider.send("hardhat_stopImpersonatingAccount", [poolAddr]);
      expect(await f.weth.balanceOf(f.flash)).to.equal(E18(1));
    });
  });

  // ------------------------------------------------------------------------------------------------- reward / liquidateFirst
  describe("liquidateFirst and the keeper reward", function () {
    it("resisted: the reward credited to the contract is claimed in the same call; a later caller finds nothing to take", async function () {
      const f = await loadFixture(base);
      const tx = f.flash.connect(f.keeper).flashLiquidate(await params(f, { liquidateFirst: true, recipient: f.bob.address }));
      const reward = USDC(45) + 500_000n; // 5 + 50 % × 1 % × 8,100
      await expect(tx).to.emit(f.engine, "KeeperRewardsClaimed").withArgs(await f.flash.getAddress(), f.bob.address, reward);
      expect(await f.engine.keeperRewardsOf(f.flash)).to.equal(0n);
      await expectNothingLeft(f);
      // a stranger cannot reach the contract's claim: its only claim path needs a liquidation of its own
      await expect(f.flash.connect(f.stranger).flashLiquidate(await params(f, { liquidateFirst: true, recipient: f.stranger.address }))).to.be.revertedWithCustomError(
        f.engine,
        "NotLiquidatable",
      );
      expect(await f.usdc.balanceOf(f.stranger)).to.equal(0n);
    });

    it("resisted: liquidateFirst when a partial liquidation leaves the account healthy reverts atomically (NotLiquidatable), nothing changes", async function () {
      // 2 WETH, 5.4 ETH long at 2,000, ETH at 1,515: health in (0.5, 1): the liquidation closes only a fraction and
      // restores the target; buyCollateral then refuses an account with positions at health >= 1.
      const f = await build({ coll: "weth", margin: E18(2), size: wad("5.4"), ethEnd8: PX8(1515) });
      const h = (await f.engine.accountState(f.id)).health;
      expect(h < WAD && h >= wad("0.5")).to.equal(true, `health ${h}`);
      const S = (await f.engine.accountState(f.id)).settlement;
      await expect(f.flash.connect(f.keeper).flashLiquidate(await params(f, { liquidateFirst: true }))).to.be.revertedWithCustomError(f.engine, "NotLiquidatable");
      expect((await f.engine.accountState(f.id)).settlement).to.equal(S);
      expect(await f.engine.positionMask(f.id)).to.not.equal(0n);
      await expectNothingLeft(f);
    });

    it("resisted: after a completed sale in the same block the expected-pool slot is clear: the pool cannot call back", async function () {
      const f = await loadFixture(base);
      await f.engine.connect(f.keeper).liquidate(f.id);
      await flashAndCheck(f, USDC(100));
      const poolAddr = await f.uniPool.getAddress();
      await network.provider.send("hardhat_impersonateAccount", [poolAddr]);
      await network.provider.send("hardhat_setBalance", [poolAddr, "0xDE0B6B3A7640000"]);
      const data = ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "address", "uint256", "uint256"], [f.id, await f.weth.getAddress(), 1n, 0n]);
      await expect(f.flash.connect(await ethers.getSigner(poolAddr)).uniswapV3SwapCallback(1n, -1n, data))
        .to.be.revertedWithCustomError(f.flash, "UnexpectedCallback")
        .withArgs(poolAddr, ethers.ZeroAddress);
      await network.provider.send("hardhat_stopImpersonatingAccount", [poolAddr]);
    });
  });

  // ------------------------------------------------------------------------------------------------- keeper side
  describe("keeper planFlash", function () {
    const cond = (over: Partial<Conditions> = {}): Conditions => ({
      baseFee: 1_000_000_000n, // 1 gwei
      ethUsd: 2000n * WAD,
      feeParams: { baseFeeUsd: 0n, gasUnits: 0n },
      maxFeePerGas: 100_000_000_000n,
      gas: { rebalance: 0, rebalanceBatchBase: 0, rebalanceBatchPerAccount: 0, liquidate: 0, executeOrder: 0 },
      minProfitUsd: 0n,
      batchSize: 10,
      shard: { index: 0, count: 1 },
      busy: new Set(),
      flash: { minProfitUsd: WAD, gas: 450_000 },
      ...over,
    });

    it("resisted: minProfit is sent in collateral units (8-decimal WBTC): ceil((gas 0.9 + 1) USD / 30,000 × 1e8) = 6,334 sats", async function () {
      const d: DebtSnapshot = {
        id: 7n,
        round: "1",
        debtUsd: 100n * WAD,
        collateral: WBTC_ADDRESS,
        margin: 100_000n,
        collateralPriceUsd: 30_000n * WAD,
        collateralDecimals: 8,
        quote: { profit: 10_000n }, // 3 USD
      };
      const waits: Wait[] = [];
      const actions = planSales([d], cond(), undefined, waits);
      expect(waits).to.deep.equal([]);
      expect(actions.length).to.equal(1);
      expect(actions[0].minProfit).to.equal(6_334n);
      expect(actions[0].valueUsd).to.equal(3n * WAD);
      expect(actions[0].costUsd).to.equal(9n * 10n ** 17n);
    });

    it("resisted: a simulated profit below gas + flashMinProfitUsd is not sent; a reverting simulation waits", async function () {
      const waits: Wait[] = [];
      const low: DebtSnapshot = { id: 1n, round: "1", debtUsd: WAD, collateral: WBTC_ADDRESS, margin: 100_000n, collateralPriceUsd: 30_000n * WAD, collateralDecimals: 8, quote: { profit: 6_333n } };
      const bad: DebtSnapshot = { id: 2n, round: "1", debtUsd: WAD, collateral: WBTC_ADDRESS, margin: 100_000n, collateralPriceUsd: 30_000n * WAD, collateralDecimals: 8, quote: { reason: "InsufficientProfit(-5, 0)" } };
      expect(planSales([low, bad], cond(), undefined, waits)).to.deep.equal([]);
      expect(waits.map((w) => w.key)).to.deep.equal(["buy:1", "buy:2"]);
    });
  });
});
