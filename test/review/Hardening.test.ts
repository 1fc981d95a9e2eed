import { ethers, network } from "hardhat";
import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { ReentrantToken__factory } from "../../typechain-types";
import { MAJOR_MARKET, wad } from "../../deploy/params";
import { E18, E8, USDC, systemFixture, type SystemFixture } from "../helpers/fixtures";

/**
 * Core hardening (issue "Core hardening"): each test performs the attack an independent review found against the
 * public functions, and asserts the behaviour that must hold now. Each failed on the code before the fix.
 */

const WAD = 10n ** 18n;
const USDC_SCALE = 10n ** 12n;
const HOLD = 900n;
const ceilDiv = (a: bigint, b: bigint) => (a + b - 1n) / b;

type Signer = SystemFixture["alice"];

/** The default system with funding switched off in both markets, so values at a price are exact whatever the block time. */
async function hardeningFixture(): Promise<SystemFixture> {
  const f = await systemFixture();
  const noFunding = { ...MAJOR_MARKET, maxFundingRate: 0n };
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...noFunding });
  await f.engine.setMarketParams(f.btcMarket, { asset: await f.wbtc.getAddress(), ...noFunding });
  return f;
}

async function newAccount(f: SystemFixture, who: Signer, marginUsdc: bigint): Promise<bigint> {
  await f.vault.connect(who).createAccount();
  const id = await f.vault.accountCount();
  if (marginUsdc > 0n) {
    await f.usdc.mint(who.address, marginUsdc);
    await f.usdc.connect(who).approve(f.vault, marginUsdc);
    await f.vault.connect(who).depositMargin(id, f.usdc, marginUsdc);
  }
  return id;
}

async function trade(f: SystemFixture, who: Signer, id: bigint, market: bigint, size: bigint) {
  await f.engine.connect(who).modifyPosition(id, market, size, size > 0n ? ethers.MaxUint256 : 0n);
}

async function setEth(f: SystemFixture, usd: bigint) {
  await f.ethFeed.setAnswer(E8(usd));
  await f.oracle.poke(f.weth);
}

async function lpDeposit(f: SystemFixture, who: Signer, amount: bigint) {
  await f.usdc.mint(who.address, amount);
  await f.usdc.connect(who).approve(f.pool, amount);
  await f.pool.connect(who).deposit(amount, who.address);
}

/** OpenZeppelin's conversion with the pool's 1e6 virtual-share offset. */
const sharesFor = (assets: bigint, supply: bigint, valuation: bigint) => (assets * (supply + 10n ** 6n)) / (valuation + 1n);
const assetsFor = (shares: bigint, supply: bigint, valuation: bigint) => (shares * (valuation + 1n)) / (supply + 10n ** 6n);

describe("Core hardening › review attacks", function () {
  describe("1. just-in-time LP deposits", function () {
    it("a deposit before a trader closes at a 2,000 USD loss is priced with that loss, and its shares are locked for the hold period", async function () {
      const f = await loadFixture(hardeningFixture);
      const [, , , , , attacker, other] = await ethers.getSigners();
      const id = await newAccount(f, f.alice, USDC(5_000));
      await trade(f, f.alice, id, f.ethMarket, E18(10)); // 10 ETH long at 2,000
      await setEth(f, 1_800n); // open loss 2,000 USD
      const [ok, profit, loss] = await f.engine.poolExposure();
      expect([ok, profit, loss]).to.deep.equal([true, 0n, E18(2_000)]);

      const capital = await f.pool.capital();
      expect(await f.pool.totalAssets()).to.equal(capital); // redeem side: the loss is not an asset
      expect(await f.pool.mintAssets()).to.equal(capital + USDC(2_000)); // mint side: it is paid for
      const supply = await f.pool.totalSupply();
      const deposit = USDC(9_000_000);
      const shares = sharesFor(deposit, supply, capital + USDC(2_000));
      expect(await f.pool.previewDeposit(deposit)).to.equal(shares);
      await lpDeposit(f, attacker, deposit);
      expect(await f.pool.balanceOf(attacker.address)).to.equal(shares);
      const unlockAt = BigInt(await time.latest()) + HOLD;
      expect(await f.pool.lockedShares(attacker.address)).to.deep.equal([shares, unlockAt]);

      await trade(f, f.alice, id, f.ethMarket, -E18(10)); // closes: pays the 2,000 loss and a 9 USD fee
      const fee = USDC(9); // 10 ETH × 1,800 × 5 bps
      expect(await f.pool.capital()).to.equal(capital + deposit + USDC(2_000) + fee);

      // In the same block, or any block before the hold period ends, the shares cannot leave.
      await expect(f.pool.connect(attacker).redeem(shares, attacker.address, attacker.address))
        .to.be.revertedWithCustomError(f.pool, "SharesLocked")
        .withArgs(attacker.address, shares, unlockAt);
      await expect(f.pool.connect(attacker).transfer(other.address, 1n))
        .to.be.revertedWithCustomError(f.pool, "SharesLocked")
        .withArgs(attacker.address, shares, unlockAt);
      expect(await f.pool.maxRedeem(attacker.address)).to.equal(0n);
      expect(await f.pool.maxWithdraw(attacker.address)).to.equal(0n);

      // After the hold period the round trip returns the deposit plus its share of the 9 USD fee only: none of
      // the 2,000 loss, which the deposit had paid for (the old code returned +1,808 USDC here).
      await time.increaseTo(unlockAt);
      const valuationAfter = await f.pool.totalAssets();
      expect(valuationAfter).to.equal(capital + deposit + USDC(2_000) + fee);
      const supplyAfter = await f.pool.totalSupply();
      const out = assetsFor(shares, supplyAfter, valuationAfter);
      await f.pool.connect(attacker).redeem(shares, attacker.address, attacker.address);
      expect(await f.usdc.balanceOf(attacker.address)).to.equal(out);
      // Its share of the pool (it bought in at capital + 2,000: 9,000,000 of 10,002,009) times the 9 USD fee:
      // 8.098372 USDC; none of the loss.
      expect(out - deposit).to.equal(8_098_372n);
      expect(out - deposit).to.be.lessThan(fee);
    });

    it("no deposit → price step → liquidation → redeem fits inside the hold period: the redeem reverts SharesLocked", async function () {
      const f = await loadFixture(hardeningFixture);
      const [, , , , , attacker] = await ethers.getSigners();
      const id = await newAccount(f, f.alice, USDC(4_000)); // 5x: within IM at the 200 % stress volatility
      await trade(f, f.alice, id, f.ethMarket, E18(10));
      const deposit = USDC(3_000_000);
      await lpDeposit(f, attacker, deposit);
      const shares = await f.pool.balanceOf(attacker.address);
      const unlockAt = BigInt(await time.latest()) + HOLD;
      await setEth(f, 1_620n); // the price step (−19 %, h ≈ 0.74 at σ's floor) realises alice's loss through her liquidation
      await f.engine.connect(f.keeper).liquidate(id);
      await expect(f.pool.connect(attacker).withdraw(1n, attacker.address, attacker.address))
        .to.be.revertedWithCustomError(f.pool, "SharesLocked")
        .withArgs(attacker.address, shares, unlockAt);
      await time.setNextBlockTimestamp(unlockAt - 1n); // the last second of the hold period
      await expect(f.pool.connect(attacker).redeem(shares, attacker.address, attacker.address))
        .to.be.revertedWithCustomError(f.pool, "SharesLocked")
        .withArgs(attacker.address, shares, unlockAt);
      // At unlockAt the shares are free (the failed redeem above mined the block before it).
      expect(await time.latest()).to.equal(Number(unlockAt - 1n));
      await f.pool.connect(attacker).redeem(shares, attacker.address, attacker.address);
      expect(await f.pool.balanceOf(attacker.address)).to.equal(0n);
    });

    it("setHoldPeriod is bounded: 1 minute .. 7 days, HoldPeriodOutOfBounds outside", async function () {
      const f = await loadFixture(hardeningFixture);
      expect(await f.pool.holdPeriod()).to.equal(HOLD);
      await expect(f.pool.setHoldPeriod(59))
        .to.be.revertedWithCustomError(f.pool, "HoldPeriodOutOfBounds")
        .withArgs(59n, 60n, 7n * 86_400n);
      await expect(f.pool.setHoldPeriod(7 * 86_400 + 1))
        .to.be.revertedWithCustomError(f.pool, "HoldPeriodOutOfBounds")
        .withArgs(7n * 86_400n + 1n, 60n, 7n * 86_400n);
      await expect(f.pool.setHoldPeriod(3_600)).to.emit(f.pool, "HoldPeriodSet").withArgs(3_600n);
      await expect(f.pool.connect(f.bob).setHoldPeriod(3_600)).to.be.revertedWithCustomError(f.pool, "OwnableUnauthorizedAccount");
    });
  });

  describe("2. one side's losses never offset another side's profits", function () {
    it("a long at +2,400 and a short at −2,400 make totalAssets capital − 2,400, not capital", async function () {
      const f = await loadFixture(hardeningFixture);
      const a = await newAccount(f, f.alice, USDC(10_000));
      const b = await newAccount(f, f.bob, USDC(10_000));
      await trade(f, f.alice, a, f.ethMarket, E18(10));
      await trade(f, f.bob, b, f.ethMarket, -E18(10));
      await setEth(f, 2_240n);
      // Backing: the larger side, 10 ETH × 2,240 = 22,400 USD, at an OI cap of half the capital: 44,800 USDC.
      expect(await f.engine.poolExposure()).to.deep.equal([true, E18(2_400), E18(2_400), USDC(44_800)]);
      const capital = await f.pool.capital();
      expect(await f.pool.totalAssets()).to.equal(capital - USDC(2_400));
      expect(await f.pool.mintAssets()).to.equal(capital);
    });
  });

  describe("3. no LP action and no other account moves an account's health at constant prices", function () {
    it("an LP withdrawing most of the pool, and another account's trade, leave the account's valuation unchanged", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(8_000));
      await trade(f, f.alice, id, f.ethMarket, E18(20)); // 40,000 USD notional (5x): the size term matters
      const before = await f.engine.accountState(id);
      const rate = await f.engine.maintenanceRate(f.ethMarket, E18(40_000));

      const other = await newAccount(f, f.bob, USDC(20_000));
      await trade(f, f.bob, other, f.ethMarket, -E18(50)); // another account's trade
      expect(await f.engine.accountState(id)).to.deep.equal(before);

      await time.increase(HOLD);
      await setEth(f, 2_000n);
      const max = await f.pool.maxWithdraw(f.lp.address);
      expect(max).to.be.greaterThan(USDC(800_000));
      await f.pool.connect(f.lp).withdraw(max, f.lp.address, f.lp.address); // an LP leaves with most of the pool
      expect(await f.engine.accountState(id)).to.deep.equal(before);
      expect(await f.engine.maintenanceRate(f.ethMarket, E18(40_000))).to.equal(rate);

      await lpDeposit(f, f.lp, USDC(5_000_000));
      expect(await f.engine.accountState(id)).to.deep.equal(before);
    });

    it("pool capital still gates new risk: a trade that grows a side past oiCapFraction × capital reverts OpenInterestCap", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(400_000));
      const capUsd = ((await f.pool.capital()) * USDC_SCALE * MAJOR_MARKET.oiCapFraction) / WAD; // 500,000 USD
      expect(capUsd).to.equal(E18(500_000));
      await expect(trade(f, f.alice, id, f.ethMarket, E18(251)))
        .to.be.revertedWithCustomError(f.engine, "OpenInterestCap")
        .withArgs(f.ethMarket, E18(502_000), capUsd);
    });
  });

  describe("4. a stranger cannot block liquidation; a collateral oracle outage does not", function () {
    it("a stranger may add USDC to someone's margin but no other token (MarginAssetRestricted)", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(1_000));
      await f.wbtc.mint(f.bob.address, 1n);
      await f.wbtc.connect(f.bob).approve(f.vault, 1n);
      await expect(f.vault.connect(f.bob).depositMargin(id, f.wbtc, 1n))
        .to.be.revertedWithCustomError(f.vault, "MarginAssetRestricted")
        .withArgs(id, await f.wbtc.getAddress(), f.bob.address);
      expect(await f.vault.marginMask(id)).to.equal(1n); // USDC only
      await f.usdc.mint(f.bob.address, 1n);
      await f.usdc.connect(f.bob).approve(f.vault, 1n);
      await f.vault.connect(f.bob).depositMargin(id, f.usdc, 1n);
      expect(await f.vault.marginOf(id, f.usdc)).to.equal(USDC(1_000) + 1n);
    });

    it("with BTC's feed stale, an account holding WBTC margin and an ETH position is still liquidated, the WBTC counted as zero", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(2_000));
      await f.wbtc.mint(f.alice.address, 10n ** 6n); // 0.01 WBTC
      await f.wbtc.connect(f.alice).approve(f.vault, 10n ** 6n);
      await f.vault.connect(f.alice).depositMargin(id, f.wbtc, 10n ** 6n);
      await trade(f, f.alice, id, f.ethMarket, E18(5)); // 10,000 USD notional on 2,270 counted (4.4x)
      const withBtc = await f.engine.accountState(id);

      await time.increase(2 * 3600 + 1); // BTC's heartbeat passes; ETH gets a new round
      // −19 %: below 1 by price (σ_mm has moved only seconds' worth toward the new σ); the 270 USD of WBTC, were it
      // counted, would keep the account above 1.
      await setEth(f, 1_620n);
      expect((await f.oracle.tryPrice(f.wbtc))[0]).to.equal(false);
      const st = await f.engine.accountState(id);
      expect(st.collateral).to.equal(withBtc.collateral - (10n ** 6n * E18(30_000) / 10n ** 8n) * 9n / 10n);
      expect(st.health).to.be.lessThan(WAD);
      const wbtcCounted = withBtc.collateral - st.collateral;
      expect(((st.equity + wbtcCounted) * WAD) / st.maintenanceMargin).to.be.gte(WAD); // counted, it would keep h >= 1
      await expect(f.engine.connect(f.keeper).liquidate(id)).to.emit(f.engine, "Liquidated");
      expect(await f.vault.marginOf(id, f.wbtc)).to.equal(10n ** 6n); // not sold at an unknown price
    });

    it("healthBatch reports an account whose position cannot be priced instead of reverting the batch", async function () {
      const f = await loadFixture(hardeningFixture);
      const a = await newAccount(f, f.alice, USDC(10_000));
      const b = await newAccount(f, f.bob, USDC(10_000));
      await trade(f, f.alice, a, f.ethMarket, E18(1));
      await trade(f, f.bob, b, f.btcMarket, E18(1) / 10n);
      await time.increase(2 * 3600 + 1);
      await setEth(f, 2_000n);
      const [healths, priced] = await f.engine.healthBatch([a, b]);
      expect(priced).to.deep.equal([true, false]);
      expect(healths[0]).to.equal((await f.engine.accountState(a)).health);
      expect(healths[1]).to.equal(0n);
      await expect(f.engine.accountState(b))
        .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy")
        .withArgs(await f.wbtc.getAddress());
    });
  });

  describe("5. an account with no positions and no debt can always withdraw everything", function () {
    it("with both collateral feeds stale, the owner releases and withdraws all WETH and WBTC margin", async function () {
      const f = await loadFixture(hardeningFixture);
      await f.vault.connect(f.alice).createAccount();
      const id = await f.vault.accountCount();
      await f.weth.mint(f.alice.address, E18(2));
      await f.wbtc.mint(f.alice.address, 10n ** 7n);
      await f.weth.connect(f.alice).approve(f.vault, E18(2));
      await f.wbtc.connect(f.alice).approve(f.vault, 10n ** 7n);
      await f.vault.connect(f.alice).depositMargin(id, f.weth, E18(2));
      await f.vault.connect(f.alice).depositMargin(id, f.wbtc, 10n ** 7n);
      await time.increase(3 * 3600);
      expect((await f.oracle.tryPrice(f.weth))[0]).to.equal(false);
      expect((await f.oracle.tryPrice(f.wbtc))[0]).to.equal(false);
      await f.vault.connect(f.alice).releaseMargin(id, f.weth, E18(2));
      await f.vault.connect(f.alice).releaseMargin(id, f.wbtc, 10n ** 7n);
      await f.vault.connect(f.alice).withdraw(id, f.weth, E18(2), f.alice.address);
      await f.vault.connect(f.alice).withdraw(id, f.wbtc, 10n ** 7n, f.alice.address);
      expect(await f.weth.balanceOf(f.alice.address)).to.equal(E18(2));
      expect(await f.wbtc.balanceOf(f.alice.address)).to.equal(10n ** 7n);
    });
  });

  describe("6. the oracle serves nothing that skipped validation", function () {
    it("an answer 30 % lower at an unchanged updatedAt trips the breaker instead of being served", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(5_000));
      await trade(f, f.alice, id, f.ethMarket, E18(10));
      const [roundId, , startedAt, updatedAt] = await f.ethFeed.latestRoundData();
      await f.ethFeed.setRound(roundId, E8(1_400), startedAt, updatedAt); // −30 %, same updatedAt
      await expect(f.oracle.price(f.weth))
        .to.be.revertedWithCustomError(f.oracle, "CircuitBreakerTripped")
        .withArgs(await f.weth.getAddress(), updatedAt + 3600n);
      await expect(f.engine.connect(f.keeper).liquidate(id))
        .to.be.revertedWithCustomError(f.engine, "OracleUnhealthy")
        .withArgs(await f.weth.getAddress());
      await f.oracle.poke(f.weth);
      expect((await f.oracle.observation(f.weth)).tripped).to.equal(true);
    });

    it("a round whose updatedAt goes back is refused with UpdatedAtWentBack and poke reports it", async function () {
      const f = await loadFixture(hardeningFixture);
      const [roundId, , , updatedAt] = await f.ethFeed.latestRoundData();
      await f.ethFeed.setRound(roundId + 1n, E8(2_010), updatedAt - 60n, updatedAt - 60n);
      await expect(f.oracle.price(f.weth))
        .to.be.revertedWithCustomError(f.oracle, "UpdatedAtWentBack")
        .withArgs(await f.weth.getAddress(), updatedAt - 60n, updatedAt);
      const selector = f.oracle.interface.getError("UpdatedAtWentBack")!.selector;
      await expect(f.oracle.poke(f.weth)).to.emit(f.oracle, "PriceRejected").withArgs(await f.weth.getAddress(), selector);
      expect((await f.oracle.observation(f.weth)).price).to.equal(E18(2_000));
    });
  });

  describe("7. bad debt is always written off, insurance first", function () {
    it("an owner closing an underwater position leaves no debt: the insurance fund covers it", async function () {
      const f = await loadFixture(hardeningFixture);
      await f.usdc.mint(f.deployer.address, USDC(10_000));
      await f.usdc.approve(f.pool, USDC(10_000));
      await f.pool.donateInsurance(USDC(10_000));
      const id = await newAccount(f, f.alice, USDC(2_000));
      await trade(f, f.alice, id, f.ethMarket, E18(5)); // 5x; fee 5 USD
      // −25 % (the breaker's limit) −2,500: equity 1,995 − 2,500 < 0 (no poke by anyone but the trade)
      await f.ethFeed.setAnswer(E8(1_500));
      const close = f.engine.connect(f.alice).modifyPosition(id, f.ethMarket, -E18(5), 0n);
      // Loss 2,500 + close fee 3.75 against 1,995 of USDC margin: 508.75 USD of bad debt.
      const debtUsd = E18(2_500) + wad("3.75") - E18(1_995);
      await expect(close).to.emit(f.engine, "BadDebt").withArgs(id, debtUsd, USDC(508) + 750_000n);
      expect(await f.vault.marginMask(id)).to.equal(0n);
      expect(await f.pool.insuranceBalance()).to.equal(USDC(10_000) - USDC(508) - 750_000n);
      expect((await f.engine.accountState(id)).settlement).to.equal(0n);
    });
  });

  describe("8. ERC-4626 limits never revert", function () {
    it("while a market with open interest has no valid price: max* are 0, deposits and redemptions revert PoolValuationUnavailable", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(5_000));
      await trade(f, f.alice, id, f.ethMarket, E18(1));
      await time.increase(2 * 3600 + 1);
      expect(await f.pool.maxDeposit(f.lp.address)).to.equal(0n);
      expect(await f.pool.maxMint(f.lp.address)).to.equal(0n);
      expect(await f.pool.maxWithdraw(f.lp.address)).to.equal(0n);
      expect(await f.pool.maxRedeem(f.lp.address)).to.equal(0n);
      expect(await f.pool.freeAssets()).to.equal(0n);
      await expect(f.pool.totalAssets()).to.be.revertedWithCustomError(f.pool, "PoolValuationUnavailable");
      await f.usdc.mint(f.bob.address, USDC(1));
      await f.usdc.connect(f.bob).approve(f.pool, USDC(1));
      await expect(f.pool.connect(f.bob).deposit(USDC(1), f.bob.address)).to.be.revertedWithCustomError(
        f.pool,
        "PoolValuationUnavailable",
      );
      await expect(f.pool.connect(f.lp).redeem(1n, f.lp.address, f.lp.address)).to.be.revertedWithCustomError(
        f.pool,
        "PoolValuationUnavailable",
      );
      await setEth(f, 2_000n); // the feed is back: so are the limits
      expect(await f.pool.maxDeposit(f.lp.address)).to.equal(ethers.MaxUint256);
      // The LP's shares are free (the hold period passed); what backs the 1 ETH of open interest is not.
      const free = await f.pool.freeAssets();
      expect(free).to.equal((await f.pool.totalAssets()) - USDC(4_000));
      expect(await f.pool.maxRedeem(f.lp.address)).to.equal(
        sharesFor(free, await f.pool.totalSupply(), await f.pool.totalAssets()),
      );
    });

    it("maxDeposit and maxMint tell the truth: the deposit they allow succeeds", async function () {
      const f = await loadFixture(hardeningFixture);
      expect(await f.pool.maxDeposit(f.bob.address)).to.equal(ethers.MaxUint256);
      expect(await f.pool.maxMint(f.bob.address)).to.equal(ethers.MaxUint256);
      await lpDeposit(f, f.bob, USDC(123));
      expect(await f.pool.maxRedeem(f.bob.address)).to.equal(0n); // locked for the hold period
    });
  });

  describe("9. one reentrancy lock for the vault, the engine and the pool", function () {
    it("a token hook during a vault deposit cannot call into the engine or the pool", async function () {
      const f = await loadFixture(hardeningFixture);
      const reent = await new ReentrantToken__factory(f.deployer).deploy();
      await f.vault.listAsset(reent, wad("0.5"));
      await f.vault.connect(f.alice).createAccount();
      const id = await f.vault.accountCount();
      await reent.mint(f.alice.address, E18(1));
      await reent.connect(f.alice).approve(f.vault, E18(1));
      for (const [target, data] of [
        [f.engine, f.engine.interface.encodeFunctionData("settle", [id])],
        [f.engine, f.engine.interface.encodeFunctionData("liquidate", [id])],
        [f.pool, f.pool.interface.encodeFunctionData("donateInsurance", [0n])],
        [f.vault, f.vault.interface.encodeFunctionData("deposit", [id, await reent.getAddress(), 1n])],
      ] as const) {
        await reent.setReentry(target, data);
        await expect(f.vault.connect(f.alice).deposit(id, reent, E18(1))).to.be.revertedWithCustomError(
          f.vault,
          "ReentrancyGuardReentrantCall",
        );
      }
      expect(await f.vault.locked()).to.equal(false);
    });
  });

  describe("10. Rebalanced reports each amount in its own field", function () {
    it("a TOP_UP + REDUCE reports the collateral topped up and the notional reduced apart, nothing released", async function () {
      const f = await loadFixture(hardeningFixture);
      const id = await newAccount(f, f.alice, USDC(4_000));
      await trade(f, f.alice, id, f.ethMarket, E18(10)); // 20,000 USD notional (5x)
      await f.usdc.mint(f.alice.address, USDC(100));
      await f.usdc.connect(f.alice).approve(f.vault, USDC(100));
      await f.vault.connect(f.alice).deposit(id, f.usdc, USDC(100));
      await f.engine.connect(f.alice).setRebalancePolicy(id, {
        actions: 3,
        cooldown: 0,
        triggerRatio: wad("1.5"),
        targetRatio: wad("2"),
        releaseRatio: 0,
        maxFeeUsd: wad("1"), // the flat part alone is 1 USD: the fee is exactly 1 USD whatever the base fee
        topUpAssets: [await f.usdc.getAddress()],
      });
      await setEth(f, 1_635n); // −18.25 %: equity 340 on MM ~259 (h ≈ 1.31), the 100 USDC top-up short of 2
      // A REDUCE acts only while its keeper is paid in full (maxFeeUsd ≥ the uncapped fee): at a zero base fee the
      // uncapped fee is the 1 USD flat part, so the 1 USD cap pays it in full whatever ran before this test.
      await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x0"]);
      await network.provider.send("evm_mine");
      await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x0"]);
      const st = await f.engine.accountState(id);
      expect(st.health).to.be.greaterThanOrEqual(WAD);
      expect(st.health).to.be.lessThan(wad("1.5"));
      const [needed, , plan] = await f.rebalancer.needsRebalance(id);
      expect(needed).to.equal(true);
      expect(plan.action).to.equal(3n);
      const reduced = ceilDiv(st.notional * plan.reduceFraction, WAD);
      await expect(f.rebalancer.connect(f.keeper).rebalance(id))
        .to.emit(f.rebalancer, "Rebalanced")
        .withArgs(id, 3n, st.health, (h: bigint) => h >= wad("2"), E18(100), reduced, 0n, E18(1), f.keeper.address);
    });
  });
});
