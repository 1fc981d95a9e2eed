import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { Interface, type AddressLike, type InterfaceAbi } from "ethers";

import {
  GovernanceLogic__factory,
  LiquidationLogic__factory,
  LiquidityPool__factory,
  MarginEngineExtension__factory,
  MarginEngine__factory,
  MockAggregator__factory,
  MockERC20__factory,
  OracleRouter__factory,
  RebalanceLogic__factory,
  TradeLogic__factory,
  IMarginEngine__factory,
  IRebalancer__factory,
  IVault__factory,
  MarginEngineCustody__factory,
} from "../../typechain-types";
import { CRYPTO_FEED, DEFAULT_REBALANCER, DEFAULT_RISK, HAIRCUTS, MAJOR_MARKET, wad, type MarketConfig, type RiskConfig } from "../../deploy/params";
import { E18, USDC, alignToVolGrid, systemFixture } from "../helpers/fixtures";
import {
  MAX_UINT,
  WAD,
  collateralValue,
  fundingIndexAfter,
  fundingRate,
  healthOf,
  mmr,
  mulDivDown,
  mulDivUp,
  notionalOf,
  positionPnl,
  positionRequirements,
  px8,
  sqrtHorizon,
  tradeFee,
  type Vols,
} from "../helpers/engineMath";

// ------------------------------------------------------------------------------------------ constants

const USDC_SCALE = 10n ** 12n; // WAD USD per USDC unit
const P2000 = px8(2000n * 10n ** 8n);
const P30000 = px8(30000n * 10n ** 8n);
const SQRT_H = sqrtHorizon(DEFAULT_RISK.volHorizon);
const KEEPER_REWARD = DEFAULT_RISK.keeperReward;
const BUY = ethers.MaxUint256; // acceptable price of a buy that accepts any price
const SELL = 0n; // acceptable price of a sell that accepts any price
const HEARTBEAT = BigInt(CRYPTO_FEED.heartbeat);
const b32 = (s: string) => ethers.encodeBytes32String(s);

// ------------------------------------------------------------------------------------------ fixtures

/** systemFixture + carol and a stranger; alice, bob and carol each own one account and hold every token. */
async function engineFixture() {
  const f = await systemFixture();
  const signers = await ethers.getSigners();
  const carol = signers[5];
  const stranger = signers[6];
  const ids: bigint[] = [];
  for (const user of [f.alice, f.bob, carol]) {
    await f.usdc.mint(user.address, USDC(1_000_000));
    await f.weth.mint(user.address, E18(1_000));
    await f.wbtc.mint(user.address, 100n * 10n ** 8n);
    for (const t of [f.usdc, f.weth, f.wbtc]) await t.connect(user).approve(f.vault, ethers.MaxUint256);
    await f.vault.connect(user).createAccount();
    ids.push(await f.vault.accountCount());
  }
  const [aliceId, bobId, carolId] = ids;
  return { ...f, carol, stranger, aliceId, bobId, carolId };
}
type Fx = Awaited<ReturnType<typeof engineFixture>>;

/** The ETH market with a zero funding cap: price PnL and fees in isolation. */
async function noFundingFixture() {
  const f = await engineFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...NO_FUNDING });
  return f;
}
const NO_FUNDING: MarketConfig = { ...MAJOR_MARKET, maxFundingRate: 0n };

// ------------------------------------------------------------------------------------------ helpers

async function ethParams(f: Fx, cfg: Partial<MarketConfig>) {
  return { asset: await f.weth.getAddress(), ...MAJOR_MARKET, ...cfg };
}

function trade(f: Fx, who: HardhatEthersSigner, id: bigint, market: bigint, size: bigint) {
  return f.engine.connect(who).modifyPosition(id, market, size, size > 0n ? BUY : SELL);
}

async function poolUsd(f: Fx): Promise<bigint> {
  return (await f.pool.capital()) * USDC_SCALE;
}

/** Open-interest cap of a trade that grows a side: min(oiCapUsd, oiCapFraction × pool capital rounded down). */
async function oiCap(f: Fx, m: MarketConfig): Promise<bigint> {
  const fromPool = mulDivDown(await poolUsd(f), m.oiCapFraction, WAD);
  return fromPool < m.oiCapUsd ? fromPool : m.oiCapUsd;
}

/** Mirror of `_fundingIndexNow` at the latest block, from the stored index and open interest. */
async function indexNow(f: Fx, market: bigint, m: MarketConfig, price: bigint): Promise<bigint> {
  const st = await f.engine.marketState(market);
  const now = BigInt(await time.latest());
  const rate = fundingRate(st.longOI, st.shortOI, m.maxFundingRate, m.skewScale);
  return fundingIndexAfter(st.fundingIndex, rate, price, now - st.lastFundingTime);
}

/** σ and σ_mm of `asset` as the oracle reports them at the latest block (the engine reads the same pair). */
async function volsOf(f: Fx, asset: AddressLike): Promise<Vols> {
  const [target, maintenance] = await f.oracle.volatilities(asset);
  return { target, maintenance };
}

/** Lists an 18-decimal stablecoin at exactly 1.00000000 USD with haircut 1: collateral of 1-wei granularity. */
async function listDai(f: Fx) {
  const dai = await new MockERC20__factory(f.deployer).deploy("Dai", "DAI", 18);
  const daiFeed = await new MockAggregator__factory(f.deployer).deploy(8);
  await daiFeed.setAnswer(1n * 10n ** 8n);
  await f.vault.listAsset(dai, WAD);
  // CRYPTO_FEED's sane band is exclusive and starts at 1 USD: a stablecoin needs a band around 1.
  await f.oracle.setFeed(dai, { feed: await daiFeed.getAddress(), ...CRYPTO_FEED, minPrice: wad("0.5"), maxPrice: wad("2") });
  await f.oracle.poke(dai);
  for (const u of [f.alice, f.bob]) {
    await dai.mint(u.address, E18(1_000_000));
    await dai.connect(u).approve(f.vault, ethers.MaxUint256);
  }
  return { dai, daiFeed };
}

/**
 * The engine's linked libraries and factories for the engine and its two facets, wired as deploy/system.ts
 * `engineParts` does: the engine links TradeLogic, LiquidationLogic and RebalanceLogic, the extension RebalanceLogic
 * and GovernanceLogic; the custody facet links nothing.
 */
async function engineFactories(deployer: HardhatEthersSigner) {
  const lib = async (factory: { deploy(): Promise<{ getAddress(): Promise<string> }> }) =>
    (await factory.deploy()).getAddress();
  const rebalanceLogic = await lib(new RebalanceLogic__factory(deployer));
  const engine = new MarginEngine__factory(
    {
      "contracts/libraries/logic/TradeLogic.sol:TradeLogic": await lib(new TradeLogic__factory(deployer)),
      "contracts/libraries/logic/LiquidationLogic.sol:LiquidationLogic": await lib(new LiquidationLogic__factory(deployer)),
      "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": rebalanceLogic,
    },
    deployer,
  );
  const extension = new MarginEngineExtension__factory(
    {
      "contracts/libraries/logic/RebalanceLogic.sol:RebalanceLogic": rebalanceLogic,
      "contracts/libraries/logic/GovernanceLogic.sol:GovernanceLogic": await lib(new GovernanceLogic__factory(deployer)),
    },
    deployer,
  );
  return { engine, extension, custody: new MarginEngineCustody__factory(deployer) };
}

// ============================================================================================ tests

describe("MarginEngine", () => {
  // ------------------------------------------------------------------------------------------ PnL
  describe("modifyPosition › PnL", () => {
    const P_UP = px8(210012345678n); // 2,100.12345678

    it("long: unrealised PnL and equity follow the price; closing in profit is paid by the pool into USDC margin", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, usdc, pool, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await trade(f, alice, aliceId, ethMarket, E18(10));
      const openFee = tradeFee(E18(10), P2000, NO_FUNDING.feeRate);
      expect(openFee).to.equal(E18(10));
      const margin0 = USDC(10_000) - mulDivUp(openFee, 1n, USDC_SCALE);
      expect(await vault.marginOf(aliceId, usdc)).to.equal(margin0);

      await f.ethFeed.setAnswer(210012345678n);
      const u = positionPnl(E18(10), P2000, 0n, P_UP, 0n);
      expect(u).to.equal(1001234567800000000000n); // 10 × 100.12345678
      const s = await engine.accountState(aliceId);
      expect(s.collateral).to.equal(margin0 * USDC_SCALE);
      expect(s.settlement).to.equal(0n);
      expect(s.unrealisedPnl).to.equal(u);
      expect(s.equity).to.equal(margin0 * USDC_SCALE + u);

      const poolBefore = await engine.poolBalance();
      const closeFee = tradeFee(E18(10), P_UP, NO_FUNDING.feeRate);
      await expect(trade(f, alice, aliceId, ethMarket, -E18(10)))
        .to.emit(engine, "PositionModified")
        .withArgs(aliceId, ethMarket, -E18(10), 0n, P_UP, u, closeFee);
      const settlement = u - closeFee; // 990.7339505161 USD
      const paid = settlement / USDC_SCALE; // rounded down
      expect(paid).to.equal(990_733_950n);
      expect(await vault.marginOf(aliceId, usdc)).to.equal(margin0 + paid);
      expect(await engine.poolBalance()).to.equal(poolBefore - paid);
      // The sub-unit rest stays as the account's claim.
      const after = await engine.accountState(aliceId);
      expect(after.settlement).to.equal(settlement - paid * USDC_SCALE);
      expect(after.settlement).to.equal(516_100_000_000n);
      expect(after.unrealisedPnl).to.equal(0n);
      expect(await engine.positionMask(aliceId)).to.equal(0n);
    });

    it("short: a price rise is an unrealised loss; closing pays the loss and fee from USDC margin to the pool, rounded up", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, usdc, pool, bob, bobId, ethMarket } = f;
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(10_000));
      await trade(f, bob, bobId, ethMarket, -E18(10));
      const margin0 = USDC(10_000) - USDC(10);

      await f.ethFeed.setAnswer(210012345678n);
      const u = positionPnl(-E18(10), P2000, 0n, P_UP, 0n);
      expect(u).to.equal(-1001234567800000000000n);
      const s = await engine.accountState(bobId);
      expect(s.unrealisedPnl).to.equal(u);
      expect(s.equity).to.equal(margin0 * USDC_SCALE + u);

      const poolBefore = await engine.poolBalance();
      const closeFee = tradeFee(E18(10), P_UP, NO_FUNDING.feeRate);
      await expect(trade(f, bob, bobId, ethMarket, E18(10)))
        .to.emit(engine, "PositionModified")
        .withArgs(bobId, ethMarket, E18(10), 0n, P_UP, u, closeFee);
      const owed = mulDivUp(-(u - closeFee), 1n, USDC_SCALE);
      expect(owed).to.equal(1_011_735_186n); // 1,011.7351850839 rounded up
      expect(await vault.marginOf(bobId, usdc)).to.equal(margin0 - owed);
      expect(await engine.poolBalance()).to.equal(poolBefore + owed);
      expect((await engine.accountState(bobId)).settlement).to.equal(0n); // the overshoot is the protocol's
    });

    it("a price fall is a loss for a long and a profit for a short, rounded down", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, usdc, alice, bob, aliceId, bobId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(10_000));
      const size = 3333333333333333333n; // 3.333… ETH: the PnL has a fractional wei
      await trade(f, alice, aliceId, ethMarket, size);
      await trade(f, bob, bobId, ethMarket, -size);
      await f.ethFeed.setAnswer(190087654321n);
      const p = px8(190087654321n);
      const uLong = positionPnl(size, P2000, 0n, p, 0n);
      const uShort = positionPnl(-size, P2000, 0n, p, 0n);
      expect(uLong).to.be.lessThan(0n);
      expect(uShort).to.be.greaterThan(0n);
      expect(uLong + uShort).to.equal(-1n); // both rounded down: the pair never gains from rounding
      expect((await engine.accountState(aliceId)).unrealisedPnl).to.equal(uLong);
      expect((await engine.accountState(bobId)).unrealisedPnl).to.equal(uShort);
    });
  });

  // ------------------------------------------------------------------------------------------ fees
  describe("modifyPosition › fees", () => {
    it("charges feeRate of traded notional, rounded up, paid from USDC margin to the pool", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, usdc, pool, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await f.ethFeed.setAnswer(200012345678n);
      const p = px8(200012345678n);
      const size = 3333333333333333333n;
      const fee = tradeFee(size, p, NO_FUNDING.feeRate);
      expect(fee).to.be.greaterThan(mulDivDown(mulDivDown(size, p, WAD), NO_FUNDING.feeRate, WAD)); // rounding bites
      const paid = mulDivUp(fee, 1n, USDC_SCALE);
      const poolBefore = await engine.poolBalance();
      await expect(trade(f, alice, aliceId, ethMarket, size))
        .to.emit(engine, "PositionModified")
        .withArgs(aliceId, ethMarket, size, size, p, 0n, fee);
      expect(await vault.marginOf(aliceId, usdc)).to.equal(USDC(10_000) - paid);
      expect(await engine.poolBalance()).to.equal(poolBefore + paid);
      expect((await engine.accountState(aliceId)).settlement).to.equal(0n);
    });

    it("without USDC margin the fee stays owed in the settlement balance", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, weth, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, weth, E18(10));
      await expect(trade(f, alice, aliceId, ethMarket, E18(2)))
        .to.emit(engine, "SettlementChanged")
        .withArgs(aliceId, -E18(2), -E18(2));
      expect((await engine.accountState(aliceId)).settlement).to.equal(-tradeFee(E18(2), P2000, NO_FUNDING.feeRate));
    });

    it("a partial close realises the position's PnL, re-enters the rest at the price and charges the fee on the closed size", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, usdc, pool, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await trade(f, alice, aliceId, ethMarket, E18(10));
      await f.ethFeed.setAnswer(2100n * 10n ** 8n);
      const p = px8(2100n * 10n ** 8n);
      const before = await engine.accountState(aliceId);
      const marginBefore = await vault.marginOf(aliceId, usdc);
      const poolBefore = await engine.poolBalance();
      const realised = positionPnl(E18(10), P2000, 0n, p, 0n); // 1,000 USD
      const fee = tradeFee(E18(4), p, NO_FUNDING.feeRate); // 4.2 USD
      await expect(trade(f, alice, aliceId, ethMarket, -E18(4)))
        .to.emit(engine, "PositionModified")
        .withArgs(aliceId, ethMarket, -E18(4), E18(6), p, realised, fee);
      const paid = (realised - fee) / USDC_SCALE;
      expect(paid).to.equal(995_800_000n);
      expect(await vault.marginOf(aliceId, usdc)).to.equal(marginBefore + paid);
      expect(await engine.poolBalance()).to.equal(poolBefore - paid);
      const pos = await engine.position(aliceId, ethMarket);
      expect(pos.size).to.equal(E18(6));
      expect(pos.entryPrice).to.equal(p);
      const after = await engine.accountState(aliceId);
      expect(after.unrealisedPnl).to.equal(0n);
      expect(after.equity).to.equal(before.equity - fee); // value-equivalent to realising the closed part
    });
  });

  // ------------------------------------------------------------------------------------------ funding
  describe("funding", () => {
    const M = MAJOR_MARKET;

    it("accrues rate × price × dt / 1 day on the index, with rate ∝ skew; longs pay and shorts receive", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, bob, aliceId, bobId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(50_000));
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(10_000));

      const t0 = BigInt(await time.latest()) + 10n;
      await time.setNextBlockTimestamp(t0);
      await trade(f, alice, aliceId, ethMarket, E18(100));
      let st = await engine.marketState(ethMarket);
      expect(st.fundingIndex).to.equal(0n); // no skew before the first trade
      expect(st.lastFundingTime).to.equal(t0);

      const t1 = t0 + 10n;
      await time.setNextBlockTimestamp(t1);
      await trade(f, bob, bobId, ethMarket, -E18(20));
      const rate1 = fundingRate(E18(100), 0n, M.maxFundingRate, M.skewScale);
      expect(rate1).to.equal(10n ** 14n); // 0.01 % a day at skew 100 of 1,000
      const index1 = fundingIndexAfter(0n, rate1, P2000, 10n);
      expect(index1).to.equal(23_148_148_148_148n);
      st = await engine.marketState(ethMarket);
      expect(st.fundingIndex).to.equal(index1);
      expect((await engine.position(bobId, ethMarket)).entryFunding).to.equal(index1);

      const N = 3_600n;
      await time.setNextBlockTimestamp(t1 + N);
      const rate2 = fundingRate(E18(100), E18(20), M.maxFundingRate, M.skewScale);
      const index2 = fundingIndexAfter(index1, rate2, P2000, N);
      expect(index2 - index1).to.equal(6_666_666_666_666_666n);
      // Any accrual brings the index to now: a same-parameter setMarketParams accrues at the old rate.
      await expect(engine.setMarketParams(ethMarket, await ethParams(f, {})))
        .to.emit(engine, "FundingAccrued")
        .withArgs(ethMarket, index2, rate2);
      st = await engine.marketState(ethMarket);
      expect(st.fundingIndex).to.equal(index2);
      expect(st.lastFundingTime).to.equal(t1 + N);

      const uAlice = positionPnl(E18(100), P2000, 0n, P2000, index2);
      const uBob = positionPnl(-E18(20), P2000, index1, P2000, index2);
      expect(uAlice).to.equal(-100n * index2);
      expect(uBob).to.equal(20n * (index2 - index1));
      expect((await engine.accountState(aliceId)).unrealisedPnl).to.equal(uAlice);
      expect((await engine.accountState(bobId)).unrealisedPnl).to.equal(uBob);
    });

    it("accountState accrues funding to the current block without a state change", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(50_000));
      await trade(f, alice, aliceId, ethMarket, E18(100));
      const st = await engine.marketState(ethMarket);
      await time.increase(1_234);
      const dt = BigInt(await time.latest()) - st.lastFundingTime;
      expect(dt).to.equal(1_234n);
      const index = fundingIndexAfter(0n, fundingRate(E18(100), 0n, M.maxFundingRate, M.skewScale), P2000, dt);
      expect((await engine.accountState(aliceId)).unrealisedPnl).to.equal(positionPnl(E18(100), P2000, 0n, P2000, index));
      expect((await engine.marketState(ethMarket)).fundingIndex).to.equal(0n); // the view wrote nothing
    });

    it("the rate is capped at maxFundingRate for a large long skew", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      const m = { ...M, skewScale: E18(50) };
      await engine.setMarketParams(ethMarket, await ethParams(f, m));
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(50_000));
      const t0 = BigInt(await time.latest()) + 10n;
      await time.setNextBlockTimestamp(t0);
      await trade(f, alice, aliceId, ethMarket, E18(100));
      const rate = fundingRate(E18(100), 0n, m.maxFundingRate, m.skewScale);
      expect(rate).to.equal(m.maxFundingRate); // uncapped it would be 2x the cap
      // A day later (refresh the feed first: heartbeat 2 h).
      await time.setNextBlockTimestamp(t0 + 86_399n);
      await f.ethFeed.setAnswer(2000n * 10n ** 8n);
      await time.setNextBlockTimestamp(t0 + 86_400n);
      const index = fundingIndexAfter(0n, rate, P2000, 86_400n);
      expect(index).to.equal(E18(2)); // 0.1 % of 2,000 USD per ETH
      await expect(engine.setMarketParams(ethMarket, await ethParams(f, m)))
        .to.emit(engine, "FundingAccrued")
        .withArgs(ethMarket, index, m.maxFundingRate);
      expect((await engine.accountState(aliceId)).unrealisedPnl).to.equal(-E18(200));
    });

    it("marketState shows the funding rate of now, stored at every open-interest and parameter change; an hour at it is what accrues", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, bob, aliceId, bobId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(50_000));
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(50_000));
      const rateNow = async () => (await engine.marketState(ethMarket)).fundingRate;
      expect(await rateNow()).to.equal(0n);
      await trade(f, alice, aliceId, ethMarket, E18(50));
      expect(await rateNow()).to.equal(fundingRate(E18(50), 0n, M.maxFundingRate, M.skewScale)); // 5e13
      await trade(f, bob, bobId, ethMarket, -E18(100));
      const shortSkew = fundingRate(E18(50), E18(100), M.maxFundingRate, M.skewScale);
      expect(shortSkew).to.equal(-5n * 10n ** 13n);
      expect(await rateNow()).to.equal(shortSkew);
      // A parameter change stores the rate of the new parameters (after accruing at the old one).
      const m = { ...M, skewScale: E18(25), maxFundingRate: wad("0.0005") };
      await engine.setMarketParams(ethMarket, await ethParams(f, m));
      expect(await rateNow()).to.equal(-m.maxFundingRate); // skew −50 of 25: capped
      // The rate stored is the rate the next accrual applies: an hour later the index moves by exactly it.
      const st0 = await engine.marketState(ethMarket);
      await time.setNextBlockTimestamp(st0.lastFundingTime + 3_600n);
      await expect(engine.setMarketParams(ethMarket, await ethParams(f, m)))
        .to.emit(engine, "FundingAccrued")
        .withArgs(ethMarket, fundingIndexAfter(st0.fundingIndex, -m.maxFundingRate, P2000, 3_600n), -m.maxFundingRate);
      // Closing every position takes the skew, and the rate, back to 0.
      await trade(f, bob, bobId, ethMarket, E18(100));
      await trade(f, alice, aliceId, ethMarket, -E18(50));
      expect(await rateNow()).to.equal(0n);
    });

    it("the rate is capped at −maxFundingRate for a large short skew, and shorts pay", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, bob, bobId, ethMarket } = f;
      const m = { ...M, skewScale: E18(50) };
      await engine.setMarketParams(ethMarket, await ethParams(f, m));
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(50_000));
      const t0 = BigInt(await time.latest()) + 10n;
      await time.setNextBlockTimestamp(t0);
      await trade(f, bob, bobId, ethMarket, -E18(100)); // skew −100, twice the skew scale
      const rate = fundingRate(0n, E18(100), m.maxFundingRate, m.skewScale);
      expect(rate).to.equal(-m.maxFundingRate);
      await time.setNextBlockTimestamp(t0 + 3_600n);
      await engine.setMarketParams(ethMarket, await ethParams(f, m));
      const index = fundingIndexAfter(0n, rate, P2000, 3_600n);
      expect(index).to.equal(-E18(2) / 24n);
      expect((await engine.marketState(ethMarket)).fundingIndex).to.equal(index);
      const u = positionPnl(-E18(100), P2000, 0n, P2000, index);
      expect(u).to.be.lessThan(0n);
      expect((await engine.accountState(bobId)).unrealisedPnl).to.equal(u);
    });
    it("closing realises accrued funding: the receiving short's funding offsets its fee, the rest is paid to the pool", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, pool, alice, bob, aliceId, bobId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(50_000));
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(10_000));
      const t0 = BigInt(await time.latest()) + 10n;
      await time.setNextBlockTimestamp(t0);
      await trade(f, alice, aliceId, ethMarket, E18(100));
      await time.setNextBlockTimestamp(t0 + 1n);
      await trade(f, bob, bobId, ethMarket, -E18(20));
      const index1 = fundingIndexAfter(0n, fundingRate(E18(100), 0n, M.maxFundingRate, M.skewScale), P2000, 1n);
      const marginBefore = await vault.marginOf(bobId, usdc);
      const poolBefore = await engine.poolBalance();
      await time.setNextBlockTimestamp(t0 + 1n + 7_000n);
      const index2 = fundingIndexAfter(index1, fundingRate(E18(100), E18(20), M.maxFundingRate, M.skewScale), P2000, 7_000n);
      const realised = positionPnl(-E18(20), P2000, index1, P2000, index2);
      expect(realised).to.be.greaterThan(0n);
      const fee = tradeFee(E18(20), P2000, M.feeRate);
      await expect(trade(f, bob, bobId, ethMarket, E18(20)))
        .to.emit(engine, "PositionModified")
        .withArgs(bobId, ethMarket, E18(20), 0n, P2000, realised, fee);
      const owed = mulDivUp(fee - realised, 1n, USDC_SCALE);
      expect(await vault.marginOf(bobId, usdc)).to.equal(marginBefore - owed);
      expect(await engine.poolBalance()).to.equal(poolBefore + owed);
    });
  });

  // ------------------------------------------------------------------------------------------ requirements
  describe("requirements (IM / MM)", () => {
    const M = MAJOR_MARKET;

    it("MM and IM add the volatility and size terms to baseMMR, plus the keeper reward once, rounded up", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, oracle, vault, usdc, weth, alice, aliceId, ethMarket, btcMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(20_000));
      await trade(f, alice, aliceId, ethMarket, E18(10));
      await trade(f, alice, aliceId, btcMarket, -E18(1));
      // A 10 % move at the next boundary of the sampling grid (the boundary's sample) raises σ above its floor
      // once the oracle is poked; σ_mm, the maintenance volatility, starts toward it at maxChangePerDay (IM
      // follows σ at once).
      await alignToVolGrid(0);
      await f.ethFeed.setAnswer(2200n * 10n ** 8n);
      await oracle.poke(weth);
      await f.btcFeed.setAnswer(30000n * 10n ** 8n); // BTC's round of this interval: unchanged price
      const p = px8(2200n * 10n ** 8n);
      const volEth = await volsOf(f, weth);
      const volBtc = await volsOf(f, f.wbtc);
      expect(volEth.target).to.be.greaterThan(wad("0.1"));
      expect(volEth.maintenance).to.be.greaterThan(wad("0.1")).and.lessThan(volEth.target);
      const rEth = positionRequirements(M, E18(10), p, volEth, SQRT_H);
      const rBtc = positionRequirements(M, -E18(1), P30000, volBtc, SQRT_H);
      expect(rEth.rate).to.be.greaterThan(M.baseMMR + mulDivUp(M.sizeK, rEth.notional, M.oiCapUsd));
      // IM at max(σ, σ_mm, imVolFloor) is more than imFactor × MM at σ_mm: new risk pays at least the market's
      // stress volatility at once (here the 200 % floor: σ is below it, BTC's σ at its 10 % floor).
      expect(volEth.target).to.be.lessThan(M.imVolFloor);
      expect(rEth.im).to.be.greaterThan(mulDivUp(rEth.mm, M.imFactor, WAD));
      expect(rBtc.im).to.be.greaterThan(mulDivUp(rBtc.mm, M.imFactor, WAD));

      const s = await engine.accountState(aliceId);
      expect(s.notional).to.equal(rEth.notional + rBtc.notional);
      expect(s.maintenanceMargin).to.equal(rEth.mm + rBtc.mm + KEEPER_REWARD);
      expect(s.initialMargin).to.equal(rEth.im + rBtc.im + KEEPER_REWARD);
      const idxEth = await indexNow(f, ethMarket, M, p);
      const idxBtc = await indexNow(f, btcMarket, M, P30000);
      const posEth = await engine.position(aliceId, ethMarket);
      const posBtc = await engine.position(aliceId, btcMarket);
      const u =
        positionPnl(E18(10), P2000, posEth.entryFunding, p, idxEth) +
        positionPnl(-E18(1), P30000, posBtc.entryFunding, P30000, idxBtc);
      expect(s.unrealisedPnl).to.equal(u);
      const c = (await vault.marginOf(aliceId, usdc)) * USDC_SCALE;
      expect(s.equity).to.equal(BigInt(c) + s.settlement + u);
      expect(s.health).to.equal(healthOf(s.equity, s.maintenanceMargin));
    });

    it("maintenanceRate is baseMMR + ⌈volK·σ_mm·√h⌉ + ⌈sizeK·N/oiCapUsd⌉ and is capped at maxMMR", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, oracle, weth, ethMarket } = f;
      // A volatility sample (the round at the next grid boundary) sets σ above σ_mm: the rate reads σ_mm, the
      // maintenance volatility.
      await alignToVolGrid(0);
      await f.ethFeed.setAnswer(1850n * 10n ** 8n);
      await oracle.poke(weth);
      const { target, maintenance: vol } = await volsOf(f, weth);
      expect(target).to.be.greaterThan(vol);
      expect(await engine.maintenanceRate(ethMarket, E18(1))).to.be.lessThan(mmr(M, E18(1), target, SQRT_H));
      for (const n of [0n, E18(1), E18(123_456), E18(500_000)]) {
        expect(await engine.maintenanceRate(ethMarket, n)).to.equal(mmr(M, n, vol, SQRT_H));
      }
      const big = { ...M, sizeK: wad("1") };
      await engine.setMarketParams(ethMarket, await ethParams(f, big));
      const capUsd = M.oiCapUsd;
      expect(mmr(big, capUsd, vol, SQRT_H)).to.equal(M.maxMMR);
      expect(await engine.maintenanceRate(ethMarket, capUsd)).to.equal(M.maxMMR);
      const tight = { ...M, maxMMR: wad("0.012") };
      await engine.setMarketParams(ethMarket, await ethParams(f, tight));
      expect(await engine.maintenanceRate(ethMarket, E18(1))).to.equal(wad("0.012"));
    });

    it("an account without positions has no requirement and maximal health", async () => {
      const f = await loadFixture(engineFixture);
      await f.vault.connect(f.alice).depositMargin(f.aliceId, f.usdc, USDC(100));
      const s = await f.engine.accountState(f.aliceId);
      expect(s.maintenanceMargin).to.equal(0n);
      expect(s.initialMargin).to.equal(0n);
      expect(s.health).to.equal(MAX_UINT);
      expect(s.equity).to.equal(E18(100));
    });

    it("an increase that leaves equity below IM reverts BelowInitialMargin(accountId, equity, im)", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, oracle, vault, usdc, weth, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(100));
      const vol = await volsOf(f, weth);
      const fee = tradeFee(E18(5), P2000, M.feeRate);
      const equity = USDC(100) * USDC_SCALE - mulDivUp(fee, 1n, USDC_SCALE) * USDC_SCALE;
      const im = positionRequirements(M, E18(5), P2000, vol, SQRT_H).im + KEEPER_REWARD;
      expect(equity).to.equal(E18(95));
      await expect(trade(f, alice, aliceId, ethMarket, E18(5)))
        .to.be.revertedWithCustomError(engine, "BelowInitialMargin")
        .withArgs(aliceId, equity, im);
    });

    it("a reducing trade is allowed below IM, an increasing one is not", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      // 1,750 USDC on 5 ETH (5.7x): 1,745 of equity after the fee, just above IM at the 200 % stress volatility
      // (~1,728); a 15 USD drop takes 75 of equity and only ~13 of IM.
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(1_750));
      await trade(f, alice, aliceId, ethMarket, E18(5));
      await f.ethFeed.setAnswer(1985n * 10n ** 8n);
      const s = await engine.accountState(aliceId);
      expect(s.equity).to.be.lessThan(s.initialMargin);
      await expect(trade(f, alice, aliceId, ethMarket, E18(1))).to.be.revertedWithCustomError(engine, "BelowInitialMargin");
      await expect(trade(f, alice, aliceId, ethMarket, -E18(1))).to.not.be.reverted;
      expect((await engine.position(aliceId, ethMarket)).size).to.equal(E18(4));
    });
  });

  // ------------------------------------------------------------------------------------------ health boundary
  describe("health boundary", () => {
    /** Alice: 1 ETH long on DAI collateral, volK = sizeK = funding = 0, then baseMMR raised to 10 %. */
    async function boundaryFixture() {
      const f = await engineFixture();
      const { dai } = await listDai(f);
      const flat = { ...MAJOR_MARKET, volK: 0n, sizeK: 0n, maxFundingRate: 0n };
      await f.engine.setMarketParams(f.ethMarket, await ethParams(f, flat));
      await f.vault.connect(f.alice).depositMargin(f.aliceId, dai, E18(100));
      await trade(f, f.alice, f.aliceId, f.ethMarket, E18(1));
      const strict = { ...flat, baseMMR: wad("0.1") };
      await f.engine.setMarketParams(f.ethMarket, await ethParams(f, strict));
      const mm = mulDivUp(notionalOf(E18(1), P2000), strict.baseMMR, WAD) + KEEPER_REWARD; // 205 USD
      const equity = E18(100) - tradeFee(E18(1), P2000, flat.feeRate); // the fee is owed: 99 USD
      return { ...f, dai, mm, equity };
    }

    it("health = 1 exactly is not liquidatable", async () => {
      const f = await loadFixture(boundaryFixture);
      const { engine, vault, dai, alice, aliceId, keeper, mm, equity } = f;
      expect(mm).to.equal(E18(205));
      const s0 = await engine.accountState(aliceId);
      expect(s0.maintenanceMargin).to.equal(mm);
      expect(s0.equity).to.equal(equity);
      await vault.connect(alice).depositMargin(aliceId, dai, mm - equity);
      const s = await engine.accountState(aliceId);
      expect(s.equity).to.equal(mm);
      expect(s.health).to.equal(WAD);
      expect(await engine.liquidationFraction(aliceId)).to.equal(0n);
      await expect(engine.connect(keeper).liquidate(aliceId))
        .to.be.revertedWithCustomError(engine, "NotLiquidatable")
        .withArgs(aliceId, WAD);
    });

    it("one wei of equity less is below 1 and liquidatable", async () => {
      const f = await loadFixture(boundaryFixture);
      const { engine, vault, dai, alice, aliceId, keeper, mm, equity } = f;
      await vault.connect(alice).depositMargin(aliceId, dai, mm - equity - 1n);
      const s = await engine.accountState(aliceId);
      expect(s.equity).to.equal(mm - 1n);
      expect(s.health).to.equal(healthOf(mm - 1n, mm));
      expect(s.health).to.equal(WAD - 1n);
      await expect(engine.connect(keeper).liquidate(aliceId)).to.not.be.reverted;
    });
  });

  // ------------------------------------------------------------------------------------------ collateral
  describe("collateral", () => {
    it("values 6/8/18-decimal margin at price × haircut, rounded down at each step", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, weth, wbtc, alice, aliceId } = f;
      await f.ethFeed.setAnswer(200012345678n);
      await f.btcFeed.setAnswer(3000087654321n);
      const amounts = { usdc: 1_234_567_891n, wbtc: 12_345_679n, weth: 1_234_567_890_123_456_791n };
      await vault.connect(alice).depositMargin(aliceId, usdc, amounts.usdc);
      await vault.connect(alice).depositMargin(aliceId, wbtc, amounts.wbtc);
      await vault.connect(alice).depositMargin(aliceId, weth, amounts.weth);
      const cUsdc = collateralValue(amounts.usdc, WAD, 6, HAIRCUTS.USDC);
      const cWbtc = collateralValue(amounts.wbtc, px8(3000087654321n), 8, HAIRCUTS.WBTC);
      const cWeth = collateralValue(amounts.weth, px8(200012345678n), 18, HAIRCUTS.WETH);
      expect(cUsdc).to.equal(1_234_567_891n * USDC_SCALE);
      // One rounding instead of two would give one more wei here: the steps round separately.
      expect(mulDivDown(amounts.weth * px8(200012345678n), HAIRCUTS.WETH, WAD * WAD)).to.equal(cWeth + 1n);
      const s = await engine.accountState(aliceId);
      expect(s.collateral).to.equal(cUsdc + cWbtc + cWeth);
      expect(s.equity).to.equal(cUsdc + cWbtc + cWeth);
      expect(s.health).to.equal(MAX_UINT);
    });
  });

  // ------------------------------------------------------------------------------------------ acceptable price
  describe("modifyPosition › acceptablePrice", () => {
    it("a buy above the acceptable price reverts PriceNotAcceptable; at it, it trades", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await expect(engine.connect(alice).modifyPosition(aliceId, ethMarket, E18(1), P2000 - 1n))
        .to.be.revertedWithCustomError(engine, "PriceNotAcceptable")
        .withArgs(P2000, P2000 - 1n);
      await expect(engine.connect(alice).modifyPosition(aliceId, ethMarket, E18(1), P2000)).to.not.be.reverted;
    });

    it("a sell below the acceptable price reverts PriceNotAcceptable; at it, it trades", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await expect(engine.connect(alice).modifyPosition(aliceId, ethMarket, -E18(1), P2000 + 1n))
        .to.be.revertedWithCustomError(engine, "PriceNotAcceptable")
        .withArgs(P2000, P2000 + 1n);
      await expect(engine.connect(alice).modifyPosition(aliceId, ethMarket, -E18(1), P2000)).to.not.be.reverted;
    });
  });

  // ------------------------------------------------------------------------------------------ pause
  describe("setPaused", () => {
    it("the guardian pauses opening and increasing; reducing, closing and adding collateral still work; unpause", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, weth, alice, bob, keeper, aliceId, bobId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(10_000));
      await trade(f, bob, bobId, ethMarket, E18(3));
      await expect(engine.setGuardian(keeper.address)).to.emit(engine, "GuardianSet").withArgs(keeper.address);
      await expect(engine.connect(keeper).setPaused(true)).to.emit(engine, "PausedSet").withArgs(true);
      expect(await engine.paused()).to.equal(true);

      await expect(trade(f, alice, aliceId, ethMarket, E18(1))).to.be.revertedWithCustomError(engine, "PositionIncreasePaused");
      await expect(trade(f, bob, bobId, ethMarket, E18(1))).to.be.revertedWithCustomError(engine, "PositionIncreasePaused");
      await expect(trade(f, bob, bobId, ethMarket, -E18(4))).to.be.revertedWithCustomError(engine, "PositionIncreasePaused"); // flip

      await vault.connect(bob).depositMargin(bobId, weth, E18(1));
      await vault.connect(bob).deposit(bobId, usdc, USDC(5));
      await vault.connect(bob).postMargin(bobId, usdc, USDC(5));
      await trade(f, bob, bobId, ethMarket, -E18(1)); // reduce
      expect((await engine.position(bobId, ethMarket)).size).to.equal(E18(2));
      await trade(f, bob, bobId, ethMarket, -E18(2)); // close
      expect(await engine.positionMask(bobId)).to.equal(0n);

      await expect(engine.connect(keeper).setPaused(false)).to.emit(engine, "PausedSet").withArgs(false);
      await expect(trade(f, alice, aliceId, ethMarket, E18(1))).to.not.be.reverted;
    });

    it("a stranger cannot pause (NotGuardian); the owner can", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, keeper, stranger } = f;
      await engine.setGuardian(keeper.address);
      await expect(engine.connect(stranger).setPaused(true))
        .to.be.revertedWithCustomError(engine, "NotGuardian")
        .withArgs(stranger.address);
      await engine.setPaused(true);
      expect(await engine.paused()).to.equal(true);
    });
  });

  // ------------------------------------------------------------------------------------------ governance bounds
  describe("governance › parameter bounds", () => {
    type Case = { field: keyof MarketConfig; min: bigint; max: bigint | null; atMax?: Partial<MarketConfig> };
    const marketCases: Case[] = [
      { field: "baseMMR", min: wad("0.001"), max: wad("0.5"), atMax: { maxMMR: wad("0.5") } },
      { field: "maxMMR", min: MAJOR_MARKET.baseMMR, max: WAD },
      { field: "volK", min: 0n, max: E18(10) },
      { field: "sizeK", min: 0n, max: WAD },
      { field: "imFactor", min: wad("1.01"), max: E18(10) },
      { field: "feeRate", min: 0n, max: wad("0.01") },
      { field: "oiCapFraction", min: 10n ** 9n, max: E18(5) },
      { field: "maxFundingRate", min: 0n, max: wad("0.1") },
      { field: "imVolFloor", min: 0n, max: E18(10) },
      { field: "skewScale", min: 1n, max: null },
      { field: "oiCapUsd", min: WAD, max: (1n << 96n) - 1n }, // 79 billion USD: stored in 96 bits
    ];
    const UINT128_MAX = (1n << 128n) - 1n;

    for (const c of marketCases) {
      const hi = c.max ?? UINT128_MAX;
      const outside: bigint[] = [];
      if (c.min > 0n) outside.push(c.min - 1n);
      if (c.max !== null) outside.push(c.max + 1n);
      it(`createMarket / setMarketParams › ${c.field} outside [${c.min}, ${hi}] reverts ParamOutOfBounds, at the bounds succeeds`, async () => {
        const f = await loadFixture(engineFixture);
        const { engine, ethMarket } = f;
        for (const v of outside) {
          const params = await ethParams(f, { [c.field]: v });
          await expect(engine.createMarket(params))
            .to.be.revertedWithCustomError(engine, "ParamOutOfBounds")
            .withArgs(b32(c.field), v, c.min, hi);
          await expect(engine.setMarketParams(ethMarket, params))
            .to.be.revertedWithCustomError(engine, "ParamOutOfBounds")
            .withArgs(b32(c.field), v, c.min, hi);
        }
        await expect(engine.createMarket(await ethParams(f, { [c.field]: c.min }))).to.emit(engine, "MarketCreated");
        await expect(engine.setMarketParams(ethMarket, await ethParams(f, { [c.field]: hi, ...c.atMax })))
          .to.emit(engine, "MarketParamsSet");
        expect((await engine.marketParams(ethMarket))[c.field]).to.equal(hi);
      });
    }

    it("createMarket / setMarketParams › a fraction that is not a whole billionth reverts ParamPrecision(name, value, 1e9) and changes nothing; whole billionths read back exactly", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, ethMarket } = f;
      const fractions = ["baseMMR", "maxMMR", "volK", "sizeK", "imFactor", "feeRate", "oiCapFraction", "maxFundingRate", "imVolFloor"] as const;
      const before = await engine.marketParams(ethMarket);
      const count = await engine.marketCount();
      for (const field of fractions) {
        const v = MAJOR_MARKET[field] + 1n; // inside every bound, a wei off the billionth
        const params = await ethParams(f, { [field]: v });
        await expect(engine.createMarket(params)).to.be.revertedWithCustomError(engine, "ParamPrecision").withArgs(b32(field), v, 10n ** 9n);
        await expect(engine.setMarketParams(ethMarket, params)).to.be.revertedWithCustomError(engine, "ParamPrecision").withArgs(b32(field), v, 10n ** 9n);
      }
      expect(await engine.marketParams(ethMarket)).to.deep.equal(before);
      expect(await engine.marketCount()).to.equal(count);
      // One billionth off each default (still inside its bounds): stored in billionths, read back to the wei.
      const odd = {
        baseMMR: wad("0.010000001"), maxMMR: wad("0.249999999"), volK: wad("9.999999999"), sizeK: wad("0.000000001"),
        imFactor: wad("1.500000001"), feeRate: wad("0.009999999"), oiCapFraction: wad("0.000000001"),
        maxFundingRate: wad("0.099999999"), imVolFloor: wad("9.999999999"), skewScale: (1n << 128n) - 1n, oiCapUsd: (1n << 96n) - 1n,
      };
      await expect(engine.setMarketParams(ethMarket, await ethParams(f, odd))).to.emit(engine, "MarketParamsSet");
      const stored = await engine.marketParams(ethMarket);
      for (const [k, v] of Object.entries(odd)) expect(stored[k as keyof typeof odd], k).to.equal(v);
    });

    it("createMarket rejects the zero asset; setMarketParams cannot change the asset", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, ethMarket, wbtc } = f;
      await expect(engine.createMarket({ ...(await ethParams(f, {})), asset: ethers.ZeroAddress })).to.be.revertedWithCustomError(
        engine,
        "ZeroAddress",
      );
      await expect(engine.setMarketParams(ethMarket, { ...(await ethParams(f, {})), asset: await wbtc.getAddress() }))
        .to.be.revertedWithCustomError(engine, "ParamOutOfBounds")
        .withArgs(b32("asset"), 0n, 0n, 0n);
    });

    type RiskCase = { field: keyof RiskConfig; min: bigint; max: bigint };
    const riskCases: RiskCase[] = [
      { field: "liquidationTargetRatio", min: wad("1.01"), max: E18(3) },
      { field: "fullLiquidationHealth", min: 0n, max: WAD },
      { field: "liquidationPenalty", min: 0n, max: wad("0.1") },
      { field: "keeperPenaltyShare", min: 0n, max: WAD },
      { field: "keeperReward", min: 0n, max: E18(1_000) },
      { field: "dustNotional", min: 0n, max: E18(10_000) },
      { field: "collateralDiscount", min: 0n, max: wad("0.2") },
      { field: "volHorizon", min: 3_600n, max: 30n * 86_400n },
    ];
    for (const c of riskCases) {
      it(`setRiskParams › ${c.field} outside [${c.min}, ${c.max}] reverts ParamOutOfBounds, at the bounds succeeds`, async () => {
        const f = await loadFixture(engineFixture);
        const { engine } = f;
        const outside = c.min > 0n ? [c.min - 1n, c.max + 1n] : [c.max + 1n];
        for (const v of outside) {
          await expect(engine.setRiskParams({ ...DEFAULT_RISK, [c.field]: v }))
            .to.be.revertedWithCustomError(engine, "ParamOutOfBounds")
            .withArgs(b32(c.field), v, c.min, c.max);
        }
        for (const v of [c.min, c.max]) {
          await expect(engine.setRiskParams({ ...DEFAULT_RISK, [c.field]: v })).to.emit(engine, "RiskParamsSet");
          expect((await engine.riskParams())[c.field]).to.equal(v);
        }
      });
    }

    it("a new volHorizon changes the volatility term by sqrt(horizon / year), rounded up", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, oracle, weth, ethMarket } = f;
      await engine.setRiskParams({ ...DEFAULT_RISK, volHorizon: 7 * 86_400 });
      const vol = await oracle.maintenanceVolatility(weth);
      expect(await engine.maintenanceRate(ethMarket, 0n)).to.equal(mmr(MAJOR_MARKET, 0n, vol, sqrtHorizon(7 * 86_400)));
    });

    it("only the owner sets parameters and the guardian (OwnableUnauthorizedAccount)", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, alice, ethMarket } = f;
      const params = await ethParams(f, {});
      const e = engine.connect(alice);
      const calls = [
        () => e.createMarket(params),
        () => e.setMarketParams(ethMarket, params),
        () => e.setRiskParams(DEFAULT_RISK),
        () => e.setGuardian(alice.address),
      ];
      for (const call of calls) {
        await expect(call()).to.be.revertedWithCustomError(engine, "OwnableUnauthorizedAccount").withArgs(alice.address);
      }
    });

    it("reverts TooManyMarkets after 16 markets", async () => {
      const f = await loadFixture(engineFixture);
      const { engine } = f;
      const params = await ethParams(f, {});
      for (let i = 2; i < 16; i++) await engine.createMarket(params);
      expect(await engine.marketCount()).to.equal(16n);
      await expect(engine.createMarket(params)).to.be.revertedWithCustomError(engine, "TooManyMarkets").withArgs(16n);
    });
  });

  // ------------------------------------------------------------------------------------------ extension wiring
  describe("deployment › extension", () => {
    const FEE = { baseFeeUsd: DEFAULT_REBALANCER.baseFeeUsd, gasUnits: DEFAULT_REBALANCER.gasUnits };

    it("the constructor reverts ExtensionMismatch(facet) for an extension or custody facet built with another oracle, pool or gas asset, or without code", async () => {
      const f = await loadFixture(engineFixture);
      const { deployer, oracle, pool, usdc, weth, wbtc, alice } = f;
      const owner = deployer.address;
      const factories = await engineFactories(deployer);
      const deployEngine = (extension: AddressLike) =>
        factories.engine.deploy(oracle, pool, weth, extension, HAIRCUTS.USDC, FEE, DEFAULT_REBALANCER.upkeepSize, DEFAULT_REBALANCER.orderFee, owner);
      const custody = await factories.custody.deploy(oracle, pool, weth, owner);

      // Control: facets built with the engine's own immutables are accepted.
      const matching = await factories.extension.deploy(oracle, pool, weth, custody, owner);
      const engine2 = await deployEngine(matching);
      expect(await engine2.extension()).to.equal(await matching.getAddress());
      // The engine reads the fee parameters through its extension (delegatecall on its own storage), and its
      // custody through the extension's own router: the settlement asset is listed first.
      const engine2AsExt = MarginEngineExtension__factory.connect(await engine2.getAddress(), deployer);
      expect(await engine2AsExt.feeParams()).to.deep.equal([FEE.baseFeeUsd, BigInt(FEE.gasUnits)]);
      expect(await engine2AsExt.upkeepSize()).to.equal(BigInt(DEFAULT_REBALANCER.upkeepSize));
      const engine2AsVault = IVault__factory.connect(await engine2.getAddress(), deployer);
      expect(await engine2AsVault.listedAssets()).to.deep.equal([await usdc.getAddress()]);
      expect(await engine2AsVault.assetConfig(usdc)).to.deep.equal([true, 0n, 6n, HAIRCUTS.USDC]);

      // Another oracle, pool (of the same USDC) or gas asset, in the extension or in its custody facet.
      const otherOracle = await new OracleRouter__factory(deployer).deploy(owner, ethers.ZeroAddress, 0);
      const otherPool = await new LiquidityPool__factory(deployer).deploy(usdc, owner);
      const mismatched = {
        oracle: await factories.extension.deploy(otherOracle, pool, weth, custody, owner),
        pool: await factories.extension.deploy(oracle, otherPool, weth, custody, owner),
        gasAsset: await factories.extension.deploy(oracle, pool, wbtc, custody, owner),
      };
      for (const [what, ext] of Object.entries(mismatched)) {
        await expect(deployEngine(ext), what)
          .to.be.revertedWithCustomError(factories.engine, "ExtensionMismatch")
          .withArgs(await ext.getAddress());
      }
      const otherCustody = await factories.custody.deploy(otherOracle, pool, weth, owner);
      const withOtherCustody = await factories.extension.deploy(oracle, pool, weth, otherCustody, owner);
      await expect(deployEngine(withOtherCustody))
        .to.be.revertedWithCustomError(factories.engine, "ExtensionMismatch")
        .withArgs(await otherCustody.getAddress());
      // An address without code (an EOA) is no extension.
      await expect(deployEngine(alice.address))
        .to.be.revertedWithCustomError(factories.engine, "ExtensionMismatch")
        .withArgs(alice.address);
    });

    it("the deployed engine's facets were built with the engine's oracle, pool and gas asset", async () => {
      const f = await loadFixture(engineFixture);
      const ext = MarginEngineExtension__factory.connect(await f.engine.extension(), f.deployer);
      expect(await ext.getAddress()).to.not.equal(await f.engine.getAddress());
      const custody = MarginEngineCustody__factory.connect(await ext.custody(), f.deployer);
      for (const facet of [ext, custody]) {
        expect(await facet.oracle()).to.equal(await f.oracle.getAddress());
        expect(await facet.pool()).to.equal(await f.pool.getAddress());
        expect(await facet.gasAsset()).to.equal(await f.weth.getAddress());
      }
      expect(await f.rebalancer.gasAsset()).to.equal(await f.weth.getAddress());
      // Custody is served at the engine's address.
      expect(await f.vault.getAddress()).to.equal(await f.engine.getAddress());
    });

    it("the three facets share only the base's getters and ownership: every other selector has one home, and every interface selector is served", async () => {
      const selectors = (abi: InterfaceAbi) => {
        const out = new Set<string>();
        new Interface(abi).forEachFunction((fn) => out.add(fn.format("sighash")));
        return out;
      };
      const engine = selectors(MarginEngine__factory.abi);
      const extension = selectors(MarginEngineExtension__factory.abi);
      const custody = selectors(MarginEngineCustody__factory.abi);
      // What EngineBase (Ownable2Step + its public immutables and flags) declares, served identically by each.
      const base = [
        "acceptOwnership()", "gasAsset()", "guardian()", "oracle()", "owner()", "paused()", "pendingOwner()", "pool()",
        "renounceOwnership()", "settlementAsset()", "transferOwnership(address)",
      ].sort();
      const shared = (a: Set<string>, b: Set<string>) => [...a].filter((x) => b.has(x)).sort();
      expect(shared(engine, extension)).to.deep.equal(base);
      expect(shared(extension, custody)).to.deep.equal(base);
      expect(shared(engine, custody)).to.deep.equal(base);
      for (const [name, abi] of Object.entries({
        IMarginEngine: IMarginEngine__factory.abi,
        IRebalancer: IRebalancer__factory.abi,
        IVault: IVault__factory.abi,
      })) {
        const unserved = [...selectors(abi)].filter((x) => !engine.has(x) && !extension.has(x) && !custody.has(x));
        expect(unserved, name).to.deep.equal([]);
      }
    });

    it("a governance call sent to the extension contract itself acts on the extension's own storage and leaves the engine's untouched", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, rebalancer, deployer, alice, ethMarket } = f;
      const ext = MarginEngineExtension__factory.connect(await engine.extension(), deployer);
      // The extension has the engine's owner, so every owner-only call below succeeds — on the extension.
      expect(await ext.owner()).to.equal(deployer.address);
      const snapshot = async () => ({
        paused: await engine.paused(),
        guardian: await engine.guardian(),
        risk: await engine.riskParams(),
        markets: await engine.marketCount(),
        market0: await engine.marketParams(ethMarket),
        fee: await rebalancer.feeParams(),
        upkeepSize: await rebalancer.upkeepSize(),
        upkeepFeeRecipient: await rebalancer.upkeepFeeRecipient(),
        owner: await engine.owner(),
        pendingOwner: await engine.pendingOwner(),
      });
      const before = await snapshot();
      expect(before.paused).to.equal(false);
      expect(before.markets).to.equal(2n);

      const risk = { ...DEFAULT_RISK, keeperReward: DEFAULT_RISK.keeperReward * 2n };
      await expect(ext.setPaused(true)).to.emit(ext, "PausedSet").withArgs(true);
      await ext.setGuardian(alice.address);
      await ext.setRiskParams(risk);
      await ext.createMarket(await ethParams(f, { feeRate: MAJOR_MARKET.feeRate * 2n }));
      await ext.setFeeParams({ baseFeeUsd: wad("3"), gasUnits: 100_000 });
      await ext.setUpkeepSize(3);
      await ext.setUpkeepFeeRecipient(alice.address);
      await ext.transferOwnership(alice.address);

      // The calls took effect, on the extension's storage …
      expect(await ext.paused()).to.equal(true);
      expect(await ext.guardian()).to.equal(alice.address);
      expect((await ext.riskParams()).keeperReward).to.equal(risk.keeperReward);
      expect(await ext.marketCount()).to.equal(1n);
      expect(await ext.feeParams()).to.deep.equal([wad("3"), 100_000n]);
      expect(await ext.upkeepSize()).to.equal(3n);
      expect(await ext.upkeepFeeRecipient()).to.equal(alice.address);
      expect(await ext.pendingOwner()).to.equal(alice.address);
      // … and none on the engine's.
      expect(await snapshot()).to.deep.equal(before);
      // The engine still trades (not paused) at its own parameters.
      await expect(trade(f, alice, f.aliceId, ethMarket, E18(1))).to.be.revertedWithCustomError(engine, "BelowInitialMargin");
      await f.vault.connect(alice).depositMargin(f.aliceId, f.usdc, USDC(1_000));
      await expect(trade(f, alice, f.aliceId, ethMarket, E18(1))).to.emit(engine, "PositionModified");
    });
  });

  // ------------------------------------------------------------------------------------------ trade checks
  describe("modifyPosition › checks", () => {
    it("reverts UnknownMarket for a market id that does not exist", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, alice, aliceId } = f;
      await expect(trade(f, alice, aliceId, 2n, E18(1))).to.be.revertedWithCustomError(engine, "UnknownMarket").withArgs(2n);
      await expect(engine.setMarketParams(2n, await ethParams(f, {}))).to.be.revertedWithCustomError(engine, "UnknownMarket").withArgs(2n);
      await expect(engine.marketState(2n)).to.be.revertedWithCustomError(engine, "UnknownMarket").withArgs(2n);
      await expect(engine.maintenanceRate(2n, 0n)).to.be.revertedWithCustomError(engine, "UnknownMarket").withArgs(2n);
    });

    it("reverts ZeroSizeDelta for a zero size", async () => {
      const f = await loadFixture(engineFixture);
      await expect(trade(f, f.alice, f.aliceId, f.ethMarket, 0n)).to.be.revertedWithCustomError(f.engine, "ZeroSizeDelta");
    });

    it("reverts PositionTooLarge when a trade's size or the resulting position reaches 2^127 units (sizes are stored in 128 bits), changing nothing", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      const LIMIT = 2n ** 127n - 1n;
      await expect(trade(f, alice, aliceId, ethMarket, LIMIT + 1n))
        .to.be.revertedWithCustomError(engine, "PositionTooLarge")
        .withArgs(ethMarket, LIMIT + 1n);
      await expect(trade(f, alice, aliceId, ethMarket, -(LIMIT + 1n)))
        .to.be.revertedWithCustomError(engine, "PositionTooLarge")
        .withArgs(ethMarket, -(LIMIT + 1n));
      // A short of 1 ETH, then a trade of −LIMIT: the delta fits, the position would not.
      await trade(f, alice, aliceId, ethMarket, -E18(1));
      await expect(trade(f, alice, aliceId, ethMarket, -LIMIT))
        .to.be.revertedWithCustomError(engine, "PositionTooLarge")
        .withArgs(ethMarket, -LIMIT - E18(1));
      // The largest deltas an int256 holds, on top of the short: refused by name, never an arithmetic panic.
      const INT256_MIN = -(2n ** 255n);
      await expect(trade(f, alice, aliceId, ethMarket, INT256_MIN))
        .to.be.revertedWithCustomError(engine, "PositionTooLarge")
        .withArgs(ethMarket, INT256_MIN);
      await expect(trade(f, alice, aliceId, ethMarket, -INT256_MIN - 1n))
        .to.be.revertedWithCustomError(engine, "PositionTooLarge")
        .withArgs(ethMarket, -INT256_MIN - 1n);
      expect((await engine.position(aliceId, ethMarket)).size).to.equal(-E18(1));
    });

    it("reverts NotAuthorized when a stranger trades someone's account; an operator may", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, bob, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(10_000));
      await expect(trade(f, bob, aliceId, ethMarket, E18(1)))
        .to.be.revertedWithCustomError(engine, "NotAuthorized")
        .withArgs(aliceId, bob.address);
      await vault.connect(alice).setOperator(aliceId, bob.address, true);
      await trade(f, bob, aliceId, ethMarket, E18(1));
      expect((await engine.position(aliceId, ethMarket)).size).to.equal(E18(1));
    });

    it("open interest up to min(oiCapUsd, oiCapFraction × pool capital) is allowed; above it reverts OpenInterestCap(marketId, oiUsd, capUsd)", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, aliceId, ethMarket } = f;
      // 100,000 USDC: IM of 500,000 USD of ETH at the 200 % stress volatility is ~93,500 USD (5.3x).
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(100_000));
      // Both limits are 500,000 USD here: oiCapUsd, and 0.5 × the 1,000,000 USDC pool.
      expect(mulDivDown(await poolUsd(f), MAJOR_MARKET.oiCapFraction, WAD)).to.equal(E18(500_000));
      expect(MAJOR_MARKET.oiCapUsd).to.equal(E18(500_000));
      const capUsd = await oiCap(f, MAJOR_MARKET);
      expect(capUsd).to.equal(E18(500_000));
      await expect(trade(f, alice, aliceId, ethMarket, E18(251)))
        .to.be.revertedWithCustomError(engine, "OpenInterestCap")
        .withArgs(ethMarket, notionalOf(E18(251), P2000), capUsd);
      await expect(trade(f, alice, aliceId, ethMarket, E18(250))).to.not.be.reverted; // exactly at the cap
      expect((await engine.marketState(ethMarket)).longOI).to.equal(E18(250));
    });

    it("checks only the side a trade grows: a short that reduces skew is allowed while longs are over the cap", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, alice, bob, aliceId, bobId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(100_000)); // above IM of 500,000 USD of ETH
      await vault.connect(bob).depositMargin(bobId, usdc, USDC(10_000));
      await trade(f, alice, aliceId, ethMarket, E18(250)); // exactly at the 500,000 USD cap
      await f.ethFeed.setAnswer(2100n * 10n ** 8n); // long OI is now worth 525,000 USD, over the cap
      await expect(trade(f, bob, bobId, ethMarket, -E18(1))).to.not.be.reverted;
      expect((await engine.marketState(ethMarket)).shortOI).to.equal(E18(1));
      // Fees have grown the pool a little: the governance cap (500,000 USD) is the lower limit now.
      const capUsd = await oiCap(f, MAJOR_MARKET);
      expect(capUsd).to.equal(MAJOR_MARKET.oiCapUsd);
      await expect(trade(f, bob, bobId, ethMarket, E18(2)))
        .to.be.revertedWithCustomError(engine, "OpenInterestCap")
        .withArgs(ethMarket, notionalOf(E18(251), 2100n * WAD), capUsd);
    });
  });

  // ------------------------------------------------------------------------------------------ views
  describe("views", () => {
    it("healthBatch equals accountState(id).health for every account, max uint without positions", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, weth, alice, bob, carol, aliceId, bobId, carolId, ethMarket, btcMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(5_000));
      await vault.connect(bob).depositMargin(bobId, weth, E18(10));
      await vault.connect(carol).depositMargin(carolId, usdc, USDC(1_000));
      await trade(f, alice, aliceId, ethMarket, E18(10));
      await trade(f, bob, bobId, btcMarket, -E18(1));
      await trade(f, bob, bobId, ethMarket, E18(2));
      await f.ethFeed.setAnswer(1900n * 10n ** 8n);
      const ids = [aliceId, bobId, carolId, 999n];
      const [batch, priced] = await engine.healthBatch(ids);
      expect(batch.length).to.equal(4);
      expect(priced).to.deep.equal([true, true, true, true]);
      for (let i = 0; i < ids.length; i++) expect(batch[i]).to.equal((await engine.accountState(ids[i])).health);
      expect(batch[0]).to.be.lessThan(MAX_UINT);
      expect(batch[1]).to.be.lessThan(MAX_UINT);
      expect(batch[2]).to.equal(MAX_UINT);
      expect(batch[3]).to.equal(MAX_UINT);
    });

    it("a stale market oracle makes accountState and modifyPosition revert OracleUnhealthy(asset); healthBatch reports the account unpriced", async () => {
      const f = await loadFixture(engineFixture);
      const { engine, vault, usdc, weth, alice, carol, aliceId, carolId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(5_000));
      await vault.connect(carol).depositMargin(carolId, usdc, USDC(1_000));
      await trade(f, alice, aliceId, ethMarket, E18(1));
      const updatedAt = (await f.ethFeed.latestRoundData())[3];
      await time.increaseTo(updatedAt + HEARTBEAT); // exactly heartbeat seconds old: still fresh
      await expect(engine.accountState(aliceId)).to.not.be.reverted;
      await time.increase(1);
      await expect(engine.accountState(aliceId)).to.be.revertedWithCustomError(engine, "OracleUnhealthy").withArgs(await weth.getAddress());
      // healthBatch never reverts for one account: alice's position has no price (unpriced, health 0),
      // carol needs no oracle and is valued.
      const [healths, priced] = await engine.healthBatch([carolId, aliceId]);
      expect(priced).to.deep.equal([true, false]);
      expect(healths).to.deep.equal([MAX_UINT, 0n]);
      await expect(trade(f, alice, aliceId, ethMarket, -E18(1)))
        .to.be.revertedWithCustomError(engine, "OracleUnhealthy")
        .withArgs(await weth.getAddress());
      // An account that needs no oracle (USDC only, no position) is still valued.
      expect((await engine.accountState(carolId)).equity).to.equal(E18(1_000));
    });
  });

  describe("settle", () => {
    it("is permissionless and pays an owed settlement balance from USDC margin to the pool, rounded up", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, vault, usdc, weth, pool, alice, keeper, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, weth, E18(10));
      await f.ethFeed.setAnswer(200012345678n);
      await trade(f, alice, aliceId, ethMarket, E18(3));
      const fee = tradeFee(E18(3), px8(200012345678n), NO_FUNDING.feeRate);
      expect((await engine.accountState(aliceId)).settlement).to.equal(-fee);
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(100));
      const poolBefore = await engine.poolBalance();
      await engine.connect(keeper).settle(aliceId);
      const paid = mulDivUp(fee, 1n, USDC_SCALE);
      expect(await vault.marginOf(aliceId, usdc)).to.equal(USDC(100) - paid);
      expect(await engine.poolBalance()).to.equal(poolBefore + paid);
      expect((await engine.accountState(aliceId)).settlement).to.equal(0n);
    });
  });

  // ------------------------------------------------------------------------------------------ releaseMargin
  describe("releaseMargin checks initial margin", () => {
    it("allows a release that keeps equity >= IM and refuses one more unit with BelowInitialMargin", async () => {
      const f = await loadFixture(noFundingFixture);
      const { engine, oracle, vault, usdc, weth, alice, aliceId, ethMarket } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(1_000));
      await trade(f, alice, aliceId, ethMarket, E18(2));
      const margin = USDC(1_000) - mulDivUp(tradeFee(E18(2), P2000, NO_FUNDING.feeRate), 1n, USDC_SCALE);
      const equity = margin * USDC_SCALE;
      const im =
        positionRequirements(NO_FUNDING, E18(2), P2000, await volsOf(f, weth), SQRT_H).im + KEEPER_REWARD;
      expect((await engine.accountState(aliceId)).initialMargin).to.equal(im);
      const releasable = (equity - im) / USDC_SCALE; // whole USDC units that keep equity >= IM
      await expect(vault.connect(alice).releaseMargin(aliceId, usdc, releasable + 1n))
        .to.be.revertedWithCustomError(engine, "BelowInitialMargin")
        .withArgs(aliceId, equity - (releasable + 1n) * USDC_SCALE, im);
      await vault.connect(alice).releaseMargin(aliceId, usdc, releasable);
      expect(await vault.marginOf(aliceId, usdc)).to.equal(margin - releasable);
      expect(await vault.reserveOf(aliceId, usdc)).to.equal(releasable);
      const s = await engine.accountState(aliceId);
      expect(s.equity).to.be.greaterThanOrEqual(s.initialMargin);
      expect(s.equity - s.initialMargin).to.be.lessThan(USDC_SCALE);
    });

    it("an account without positions may release all of its margin", async () => {
      const f = await loadFixture(engineFixture);
      const { vault, usdc, weth, alice, aliceId } = f;
      await vault.connect(alice).depositMargin(aliceId, usdc, USDC(1_000));
      await vault.connect(alice).depositMargin(aliceId, weth, E18(1));
      await vault.connect(alice).releaseMargin(aliceId, usdc, USDC(1_000));
      await vault.connect(alice).releaseMargin(aliceId, weth, E18(1));
      expect(await vault.marginMask(aliceId)).to.equal(0n);
    });
  });
});
