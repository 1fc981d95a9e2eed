import { expect } from "chai";
import { ethers } from "hardhat";
import { MaxUint256 } from "ethers";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { E18, systemFixture, USDC, deployTestSystem } from "../helpers/fixtures";
import { DEFAULT_RISK, MAJOR_MARKET, wad } from "../../deploy/params";
import { mulDivDown, mulDivUp, USDC_SCALE, WAD } from "../helpers/marginMath";
import { openAccount, PX8, toWad8 } from "../helpers/book";

/*
 * LiquidityPool (README "Liquidity providers", ILiquidityPool NatSpec): ERC-4626 over USDC with a virtual
 * share offset of 6 decimals, i.e. OpenZeppelin's conversions
 *   shares = assets × (supply + 10^6) / (totalAssets + 1)   (deposit: down, withdraw: up)
 *   assets = shares × (totalAssets + 1) / (supply + 10^6)   (redeem: down, mint: up)
 * computed here independently. Redemptions (and totalAssets) value the pool at capital − open trader profits,
 * deposits (previewDeposit/previewMint) at capital − profits + losses; the two coincide while no position is
 * open. Shares minted by a deposit are locked for holdPeriod (900 s): tests whose point is not the lock let it
 * pass before redeeming.
 */

const OFFSET = 10n ** 6n;
const toShares = (assets: bigint, supply: bigint, total: bigint, up = false) =>
  up ? mulDivUp(assets, supply + OFFSET, total + 1n) : mulDivDown(assets, supply + OFFSET, total + 1n);
const toAssets = (shares: bigint, supply: bigint, total: bigint, up = false) =>
  up ? mulDivUp(shares, total + 1n, supply + OFFSET) : mulDivDown(shares, total + 1n, supply + OFFSET);

const ETH0 = toWad8(PX8(2000));

/** Pool assets (USDC units, up) that `oiUsd` of open interest requires: oiUsd / oiCapFraction. */
const backingOf = (oiUsd: bigint) => mulDivUp(mulDivUp(oiUsd, WAD, MAJOR_MARKET.oiCapFraction), 1n, USDC_SCALE);

/** Lets every share minted so far leave its holding period. */
async function passHoldPeriod(pool: { holdPeriod(): Promise<bigint> }) {
  await time.increase(await pool.holdPeriod());
}

/** systemFixture with funding off (trader PnL then depends on prices only, not on block times). */
async function poolFixture() {
  const f = await systemFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  return f;
}

/** A pool with an engine and no deposit at all. */
async function emptyPoolFixture() {
  const [deployer, attacker, victim] = await ethers.getSigners();
  const sys = await deployTestSystem(deployer);
  for (const who of [attacker, victim]) {
    await sys.usdc.mint(who.address, USDC(2_000_000));
    await sys.usdc.connect(who).approve(sys.pool, USDC(2_000_000));
  }
  return { ...sys, attacker, victim };
}

describe("LiquidityPool › ERC-4626 shares", function () {
  it("mints 10^6 shares per asset unit to the first depositor of an empty pool", async function () {
    const f = await loadFixture(poolFixture);
    // 1,000,000 USDC = 1e12 units into an empty pool: 1e12 × (0 + 1e6) / (0 + 1).
    expect(await f.pool.balanceOf(f.lp)).to.equal(10n ** 18n);
    expect(await f.pool.totalAssets()).to.equal(USDC(1_000_000));
    expect(await f.pool.decimals()).to.equal(12n); // 6 (USDC) + 6 (offset)
  });

  it("deposits, withdraws and redeems with exact, protocol-favouring rounding", async function () {
    const f = await loadFixture(poolFixture);
    // Make the share price uneven first: bob's 7.777777 ETH long at 2,000 pays a 5 bps fee of 7.777777 USDC into
    // capital (funding is off and the price does not move: no open PnL).
    await openAccount(f, f.bob, { usdc: USDC(20_000) }, [{ market: f.ethMarket, size: 7_777_777n * 10n ** 12n }], () => ETH0);

    let supply = await f.pool.totalSupply();
    let total = await f.pool.totalAssets();
    expect(total).to.equal(USDC(1_000_000) + 7_777_777n);

    await f.usdc.mint(f.alice.address, USDC(1000));
    await f.usdc.connect(f.alice).approve(f.pool, USDC(1000));
    const shares = toShares(USDC(1000), supply, total);
    await expect(f.pool.connect(f.alice).deposit(USDC(1000), f.alice.address))
      .to.emit(f.pool, "Deposit")
      .withArgs(f.alice.address, f.alice.address, USDC(1000), shares);
    expect(await f.pool.balanceOf(f.alice)).to.equal(shares);
    supply += shares;
    total += USDC(1000);
    await passHoldPeriod(f.pool);

    // Withdraw 400 USDC: burns shares rounded up.
    const burned = toShares(USDC(400), supply, total, true);
    await expect(f.pool.connect(f.alice).withdraw(USDC(400), f.alice.address, f.alice.address))
      .to.emit(f.pool, "Withdraw")
      .withArgs(f.alice.address, f.alice.address, f.alice.address, USDC(400), burned);
    supply -= burned;
    total -= USDC(400);

    // Redeem the rest: assets rounded down.
    const rest = shares - burned;
    const out = toAssets(rest, supply, total);
    await expect(f.pool.connect(f.alice).redeem(rest, f.alice.address, f.alice.address)).to.changeTokenBalance(f.usdc, f.alice, out);
    // Promise 7: the round trip returns no more than was put in (here exactly 1 unit less at most).
    const returned = USDC(400) + out;
    expect(returned).to.be.lte(USDC(1000));
    expect(USDC(1000) - returned).to.be.lte(1n);
    expect(await f.pool.balanceOf(f.alice)).to.equal(0n);
  });
});

describe("LiquidityPool › counterparty accounting", function () {
  it("accrues trading fees to LPs: totalAssets and the share price rise", async function () {
    const f = await loadFixture(poolFixture);
    const supply = await f.pool.totalSupply();
    const price0 = await f.pool.convertToAssets(10n ** 18n);
    expect(price0).to.equal(toAssets(10n ** 18n, supply, USDC(1_000_000)));

    // 5 ETH at 2,000: fee 10,000 × 0.05 % = 5 USDC, settled from margin into the pool.
    await openAccount(f, f.alice, { usdc: USDC(2000) }, [{ market: f.ethMarket, size: E18(5) }], () => ETH0);
    expect(await f.pool.totalAssets()).to.equal(USDC(1_000_005));
    const price1 = await f.pool.convertToAssets(10n ** 18n);
    expect(price1).to.equal(toAssets(10n ** 18n, supply, USDC(1_000_005)));
    expect(price1).to.be.gt(price0);
  });

  it("counts open trader profit against LPs and not open trader losses", async function () {
    const f = await loadFixture(poolFixture);
    await openAccount(f, f.alice, { usdc: USDC(2000) }, [{ market: f.ethMarket, size: E18(5) }], () => ETH0);
    const capital = await f.pool.capital();
    expect(capital).to.equal(USDC(1_000_005));

    await f.ethFeed.setAnswer(PX8(2100));
    // Long 5 ETH, +100: trader profit 500 USD, owed by the pool, rounded up into USDC.
    expect(await f.engine.poolExposure()).to.deep.equal([true, E18(500), 0n, backingOf(E18(5) * 2100n)]);
    expect(await f.pool.totalAssets()).to.equal(capital - USDC(500));
    expect(await f.pool.capital()).to.equal(capital);

    // An odd price: profit 5 × 100.00000001 = 500.00000005 USD → 500.000001 USDC owed (rounded up).
    await f.ethFeed.setAnswer(PX8(2100) + 1n);
    const odd = toWad8(PX8(2100) + 1n);
    expect(await f.engine.poolExposure()).to.deep.equal([
      true,
      E18(500) + 5n * 10n ** 10n,
      0n,
      backingOf(mulDivUp(E18(5), odd, WAD)),
    ]);
    expect(await f.pool.totalAssets()).to.equal(capital - USDC(500) - 1n);

    // Trader loss: not a receivable, totalAssets (the redemption valuation) stays at capital; only a new
    // depositor's price (mintAssets) counts the loss that will be paid in.
    await f.ethFeed.setAnswer(PX8(1900));
    expect(await f.engine.poolExposure()).to.deep.equal([true, 0n, E18(500), backingOf(E18(5) * 1900n)]);
    expect(await f.pool.totalAssets()).to.equal(capital);
    expect(await f.pool.mintAssets()).to.equal(capital + USDC(500));
  });

  it("locks the assets that back open interest: maxWithdraw = totalAssets − backing", async function () {
    const f = await loadFixture(poolFixture);
    await passHoldPeriod(f.pool); // the LP's shares are free: only the backing limits the withdrawal
    // 200 ETH long at 2,000 = 400,000 USD of open interest (on 80,000 USDC: 5x, within IM at the 200 % stress
    // volatility); cap fraction 0.5 ⇒ 800,000 USDC backing.
    await openAccount(f, f.alice, { usdc: USDC(80_000) }, [{ market: f.ethMarket, size: E18(200) }], () => ETH0);
    const backing = backingOf(E18(400_000));
    expect(backing).to.equal(USDC(800_000));
    expect((await f.engine.poolExposure())[3]).to.equal(backing);
    const total = await f.pool.totalAssets();
    expect(total).to.equal(USDC(1_000_200)); // + 200 USDC fee
    const free = total - backing;
    expect(await f.pool.freeAssets()).to.equal(free);
    expect(await f.pool.maxWithdraw(f.lp)).to.equal(free);
    expect(await f.pool.maxRedeem(f.lp)).to.equal(toShares(free, await f.pool.totalSupply(), total));

    await expect(f.pool.connect(f.lp).withdraw(free + 1n, f.lp.address, f.lp.address))
      .to.be.revertedWithCustomError(f.pool, "ERC4626ExceededMaxWithdraw")
      .withArgs(f.lp.address, free + 1n, free);
    await expect(f.pool.connect(f.lp).withdraw(free, f.lp.address, f.lp.address)).to.changeTokenBalance(f.usdc, f.lp, free);
    expect(await f.pool.maxWithdraw(f.lp)).to.equal(0n);

    // Closing the position frees the backing again.
    await f.engine.connect(f.alice).modifyPosition(1n, f.ethMarket, -E18(200), 0n);
    expect((await f.engine.poolExposure())[3]).to.equal(0n);
    expect(await f.pool.maxWithdraw(f.lp)).to.equal(
      toAssets(await f.pool.balanceOf(f.lp), await f.pool.totalSupply(), await f.pool.totalAssets()),
    );
  });
});

describe("LiquidityPool › first-depositor (donation) attack", function () {
  it("is void: tokens sent straight to the pool or the engine are not capital, so the victim keeps exactly its 1,000 USDC", async function () {
    const f = await loadFixture(emptyPoolFixture);
    // Attacker: 1 unit in, then 900,000 USDC straight to the pool and 900,000 to the engine that holds its tokens.
    await f.pool.connect(f.attacker).deposit(1n, f.attacker.address);
    expect(await f.pool.balanceOf(f.attacker)).to.equal(OFFSET); // 1 × (0 + 1e6) / (0 + 1)
    await f.usdc.connect(f.attacker).transfer(f.pool, USDC(900_000));
    await f.usdc.connect(f.attacker).transfer(f.engine, USDC(900_000));
    // LP capital is what the pool deposited through the engine, not a token balance.
    expect(await f.pool.totalAssets()).to.equal(1n);
    expect(await f.engine.poolBalance()).to.equal(1n);
    expect(await f.vault.totalTracked(f.usdc)).to.equal(1n);

    // Victim: 1,000 USDC ⇒ 1e9 × (1e6 + 1e6) / (1 + 1) = 1e15 shares, worth 1e15 × (1e9 + 2) / (1e15 + 1e6).
    const victimShares = toShares(USDC(1000), OFFSET, 1n);
    expect(victimShares).to.equal(10n ** 15n);
    await f.pool.connect(f.victim).deposit(USDC(1000), f.victim.address);
    expect(await f.pool.balanceOf(f.victim)).to.equal(victimShares);
    const victimValue = toAssets(victimShares, OFFSET + victimShares, USDC(1000) + 1n);
    expect(victimValue).to.equal(USDC(1000));
    expect(await f.pool.previewRedeem(victimShares)).to.equal(victimValue);
    expect(await f.pool.previewRedeem(OFFSET)).to.equal(1n);

    await passHoldPeriod(f.pool);
    await expect(f.pool.connect(f.victim).redeem(victimShares, f.victim.address, f.victim.address)).to.changeTokenBalance(
      f.usdc,
      f.victim,
      USDC(1000),
    );
    // The donations stay where they were sent, untracked: nobody's balance.
    expect(await f.usdc.balanceOf(f.pool)).to.equal(USDC(900_000));
    expect(await f.usdc.balanceOf(f.engine)).to.equal(USDC(900_000) + 1n);
    expect(await f.vault.totalTracked(f.usdc)).to.equal(1n);
  });
});

describe("LiquidityPool › engine-only entry points", function () {
  it("the engine's pool side (poolReceive, poolPay, enterLock, exitLock) reverts NotPool(caller) for anyone but the pool, and changes nothing", async function () {
    const f = await loadFixture(poolFixture);
    const capital = await f.pool.capital();
    // Tokens sent to the engine are not the pool's until the pool says so: a stranger cannot claim them as LP capital.
    await f.usdc.mint(f.alice.address, USDC(5));
    await f.usdc.connect(f.alice).transfer(f.engine, USDC(5));
    await expect(f.engine.connect(f.alice).poolReceive(f.alice.address, USDC(5), false))
      .to.be.revertedWithCustomError(f.engine, "NotPool")
      .withArgs(f.alice.address);
    await expect(f.engine.connect(f.alice).poolPay(f.alice.address, 1n))
      .to.be.revertedWithCustomError(f.engine, "NotPool")
      .withArgs(f.alice.address);
    await expect(f.engine.connect(f.deployer).enterLock())
      .to.be.revertedWithCustomError(f.engine, "NotPool")
      .withArgs(f.deployer.address);
    await expect(f.engine.connect(f.deployer).exitLock())
      .to.be.revertedWithCustomError(f.engine, "NotPool")
      .withArgs(f.deployer.address);
    expect(await f.pool.capital()).to.equal(capital);
    expect(await f.engine.poolCapital()).to.equal(capital);
    expect(await f.vault.totalTracked(f.usdc)).to.equal(capital);
  });

  it("keeps donated insurance out of LP capital", async function () {
    const f = await loadFixture(poolFixture);
    await f.usdc.mint(f.alice.address, USDC(100));
    await f.usdc.connect(f.alice).approve(f.pool, USDC(100));
    await expect(f.pool.connect(f.alice).donateInsurance(USDC(100)))
      .to.emit(f.pool, "InsuranceDonated")
      .withArgs(f.alice.address, USDC(100));
    expect(await f.pool.insuranceBalance()).to.equal(USDC(100));
    expect(await f.pool.capital()).to.equal(USDC(1_000_000));
    expect(await f.pool.totalAssets()).to.equal(USDC(1_000_000));
  });
});

describe("LiquidityPool › unclaimed keeper rewards", function () {
  it("holds them outside capital (exact values); a claim leaves capital unchanged and lowers the pool's balance by exactly the claim", async function () {
    const f = await loadFixture(poolFixture);
    // Alice: 2,000 USDC, 5 ETH long at 2,000 (fee 5 USDC). A full liquidation at 1,622 (health ≈ 0.81, below a
    // fullLiquidationHealth of 0.9): loss 5 × 378 = 1,890, reward 5, penalty 1 % × 8,110 = 81.1, of which the
    // keeper's half 40.55 and insurance's 40.55. Alice owes 1,976.1 and pays it from her 1,995 USDC margin.
    await f.engine.setRiskParams({ ...DEFAULT_RISK, fullLiquidationHealth: wad("0.9") });
    const book = await openAccount(f, f.alice, { usdc: USDC(2000) }, [{ market: f.ethMarket, size: E18(5) }], () => ETH0);
    expect(await f.engine.poolBalance()).to.equal(USDC(1_000_005));
    expect(await f.pool.capital()).to.equal(USDC(1_000_005));
    expect(await f.engine.totalKeeperRewards()).to.equal(0n);

    await time.setNextBlockTimestamp((await time.latest()) + 1);
    await f.ethFeed.setAnswer(PX8(1622));
    await f.oracle.poke(f.weth);
    const reward = USDC(45) + 550_000n; // 5 + 40.55
    const tx = f.engine.connect(f.keeper).liquidate(book.id);
    await expect(tx)
      .to.emit(f.engine, "Liquidated")
      .withArgs(book.id, f.keeper.address, WAD, E18(5) * 1622n, wad("81.1"), wad("45.55"), (h: bigint) => h < wad("0.9"), MaxUint256);
    await expect(tx).to.emit(f.engine, "KeeperRewardCredited").withArgs(f.keeper.address, reward, reward);
    // No token moves: the pool's balance receives alice's 1,976.1 inside the engine and keeps the keeper's 45.55 for
    // the keeper.
    await expect(tx).to.changeTokenBalances(f.usdc, [f.engine, f.pool, f.keeper], [0n, 0n, 0n]);
    expect(await f.vault.marginOf(book.id, f.usdc)).to.equal(USDC(18) + 900_000n);

    const balance = USDC(1_001_981) + 100_000n; // 1,000,005 + 1,976.1
    const insurance = USDC(40) + 550_000n;
    expect(await f.engine.poolBalance()).to.equal(balance);
    expect(await f.pool.insuranceBalance()).to.equal(insurance);
    expect(await f.engine.totalKeeperRewards()).to.equal(reward);
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(reward);
    // capital = balance − insurance − unclaimed rewards = 1,001,981.1 − 40.55 − 45.55 = 1,001,895: what it was
    // when the pool paid the keeper at once. No position is open: the LP's redemption value is capital.
    expect(balance - insurance - reward).to.equal(USDC(1_001_895));
    expect(await f.pool.capital()).to.equal(USDC(1_001_895));
    expect(await f.pool.totalAssets()).to.equal(USDC(1_001_895));
    expect(await f.pool.mintAssets()).to.equal(USDC(1_001_895));
    const sharePrice = await f.pool.convertToAssets(10n ** 18n);
    expect(sharePrice).to.equal(toAssets(10n ** 18n, await f.pool.totalSupply(), USDC(1_001_895)));

    // The claim: the pool's balance falls by exactly 45.55, capital, insurance and the share price do not move.
    const claim = f.engine.connect(f.keeper).claimKeeperRewards(f.keeper.address);
    await expect(claim).to.emit(f.engine, "KeeperRewardsClaimed").withArgs(f.keeper.address, f.keeper.address, reward);
    await expect(claim).to.changeTokenBalances(f.usdc, [f.engine, f.keeper], [-reward, reward]);
    expect(await f.engine.poolBalance()).to.equal(balance - reward);
    expect(await f.engine.poolBalance()).to.equal(USDC(1_001_935) + 550_000n);
    expect(await f.pool.capital()).to.equal(USDC(1_001_895));
    expect(await f.pool.totalAssets()).to.equal(USDC(1_001_895));
    expect(await f.pool.insuranceBalance()).to.equal(insurance);
    expect(await f.pool.convertToAssets(10n ** 18n)).to.equal(sharePrice);
    expect(await f.engine.totalKeeperRewards()).to.equal(0n);
    expect(await f.engine.keeperRewardsOf(f.keeper)).to.equal(0n);
  });
});
