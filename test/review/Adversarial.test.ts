import { ethers } from "hardhat";
import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { MAJOR_MARKET } from "../../deploy/params";
import {
  E18,
  E8,
  USDC,
  systemFixture,
  type SystemFixture,
} from "../helpers/fixtures";

/**
 * Independent adversarial review of the core-hardening change (a067e15). Each test performs an attack against the
 * public functions and asserts the behaviour that must hold; each fails on a067e15.
 */

const HOLD = 900n;

type Signer = SystemFixture["alice"];

/** The default system with funding switched off in both markets, so values at a price are exact whatever the block time. */
async function noFundingFixture(): Promise<SystemFixture> {
  const f = await systemFixture();
  const noFunding = { ...MAJOR_MARKET, maxFundingRate: 0n };
  await f.engine.setMarketParams(f.ethMarket, {
    asset: await f.weth.getAddress(),
    ...noFunding,
  });
  await f.engine.setMarketParams(f.btcMarket, {
    asset: await f.wbtc.getAddress(),
    ...noFunding,
  });
  return f;
}

async function newAccount(f: SystemFixture, who: Signer): Promise<bigint> {
  await f.vault.connect(who).createAccount();
  return f.vault.accountCount();
}

async function postMargin(
  f: SystemFixture,
  who: Signer,
  id: bigint,
  token: "usdc" | "weth" | "wbtc",
  amount: bigint
) {
  const t = f[token];
  await t.mint(who.address, amount);
  await t.connect(who).approve(f.vault, amount);
  await f.vault.connect(who).depositMargin(id, t, amount);
}

async function trade(
  f: SystemFixture,
  who: Signer,
  id: bigint,
  market: bigint,
  size: bigint
) {
  await f.engine
    .connect(who)
    .modifyPosition(id, market, size, size > 0n ? ethers.MaxUint256 : 0n);
}

async function setBtc(f: SystemFixture, usd: bigint) {
  await f.btcFeed.setAnswer(E8(usd));
  await f.oracle.poke(f.wbtc);
}

async function fund(
  f: SystemFixture,
  who: Signer,
  spender: { getAddress(): Promise<string> },
  amount: bigint
) {
  await f.usdc.mint(who.address, amount);
  await f.usdc.connect(who).approve(spender, amount);
}

describe("Adversarial review of core hardening (a067e15)", function () {
  describe("LP pool: mint valuation and the share lock", function () {
    it("an LP deposit → redeem round trip around the collection of a realised trader loss returns no more than was put in", async function () {
      // A trader posting only WETH closes a BTC long at a 5,000 USD loss: the loss becomes a negative settlement
      // (a receivable, collected when anyone buys the WETH or adds USDC). While the position was open, mintAssets
      // counted the loss; once realised it counts nowhere, so the mint price drops by 5,027.5 USD at the close
      // with no change in what the pool owns. An LP who deposits then and lets the receivable be collected
      // (here by the attacker itself, through buyCollateral) redeems more than it put in, after the hold period.
      const f = await loadFixture(noFundingFixture);
      const [, , , , , attacker] = await ethers.getSigners();
      const id = await newAccount(f, f.alice);
      await postMargin(f, f.alice, id, "weth", E18(10)); // 20,000 USD of WETH, 18,000 counted
      await trade(f, f.alice, id, f.btcMarket, E18(1)); // 1 BTC long at 30,000: fee 15 USD (a debt, no USDC)
      await setBtc(f, 25_000n); // open loss 5,000 USD: the mint side counts it, and the 15 USD fee owed
      const capital = await f.pool.capital();
      expect(capital).to.equal(USDC(1_000_000));
      expect(await f.pool.mintAssets()).to.equal(capital + USDC(5_015));

      await trade(f, f.alice, id, f.btcMarket, -E18(1)); // closes: loss 5,000 + fees 15 + 12.5, all owed
      const debtUsd = -(await f.engine.accountState(id)).settlement;
      expect(debtUsd).to.equal(E18(5_000) + E18(27) + E18(1) / 2n);
      expect(await f.vault.marginOf(id, f.weth)).to.equal(E18(10)); // the receivable is fully backed

      // The pool owns the same as before the close (capital + a backed 5,027.5 receivable), and a new LP pays for
      // the receivable: realised debts count in the mint valuation like open losses.
      expect(await f.engine.totalDebtUsd()).to.equal(debtUsd);
      expect(await f.pool.mintAssets()).to.equal(capital + USDC(5_027) + 500_000n);
      const deposit = USDC(1_000_000);
      await fund(f, attacker, f.pool, deposit);
      await f.pool.connect(attacker).deposit(deposit, attacker.address);
      const shares = await f.pool.balanceOf(attacker.address);

      // The receivable is collected: anyone may buy an account's collateral once it has debt and no position.
      const repay = USDC(5_027) + 500_000n;
      await fund(f, attacker, f.engine, repay);
      await f.engine.connect(attacker).buyCollateral(id, f.weth, repay, 0n);
      expect(await f.pool.capital()).to.equal(capital + deposit + repay);

      await time.increase(HOLD);
      await f.pool
        .connect(attacker)
        .redeem(shares, attacker.address, attacker.address);
      // a067e15 returns 1,002,513.749999 USDC (+2,513.75): half of the receivable the existing LP owned.
      expect(await f.usdc.balanceOf(attacker.address)).to.be.lessThanOrEqual(
        deposit
      );
    });

    it("an LP deposit → redeem round trip around a write-off the depositor triggers (buying the last collateral) returns no more than was put in", async function () {
      // Same root as above, with the insurance fund: an account left with a bad debt and some WETH is written off
      // only when its margin is empty, i.e. when someone buys the last of it. The depositor chooses that moment:
      // the pool's capital jumps by the WETH sale plus the insurance that covers the rest, none of it priced
      // into the shares it minted just before.
      const f = await loadFixture(noFundingFixture);
      const [, , , , , attacker] = await ethers.getSigners();
      await fund(f, f.deployer, f.pool, USDC(10_000));
      await f.pool.donateInsurance(USDC(10_000));
      const id = await newAccount(f, f.alice);
      // 1.5 WETH: 3,000 USD, 2,700 counted (IM of 15,000 USD of BTC at the 200 % stress volatility is ~2,592)
      await postMargin(f, f.alice, id, "weth", E18(3) / 2n);
      await trade(f, f.alice, id, f.btcMarket, E18(1) / 2n); // 0.5 BTC long at 30,000: fee 7.5 (owed)
      await f.btcFeed.setAnswer(E8(24_000)); // −20 %: loss 3,000, with the fees more than the WETH is worth
      await trade(f, f.alice, id, f.btcMarket, -E18(1) / 2n); // the owner closes: fee 6, all owed
      expect((await f.engine.accountState(id)).settlement).to.equal(
        -(E18(3_013) + E18(1) / 2n)
      );
      expect(await f.vault.marginOf(id, f.weth)).to.equal(E18(3) / 2n); // not empty: nothing written off yet
      const capital = await f.pool.capital();
      expect(await f.pool.mintAssets()).to.equal(capital + USDC(3_013) + 500_000n); // the debt is priced in

      const deposit = USDC(1_000_000);
      await fund(f, attacker, f.pool, deposit);
      await f.pool.connect(attacker).deposit(deposit, attacker.address);
      const shares = await f.pool.balanceOf(attacker.address);

      // Buying all the WETH (1.5 WETH at 2,000 less 5 %: 2,850 USDC) empties the margin: 163.5 USD written off,
      // all of it from the insurance fund.
      await fund(f, attacker, f.engine, USDC(2_850));
      await expect(
        f.engine.connect(attacker).buyCollateral(id, f.weth, USDC(2_850), 0n)
      )
        .to.emit(f.engine, "BadDebt")
        .withArgs(id, E18(163) + E18(1) / 2n, USDC(163) + 500_000n);
      expect(await f.pool.capital()).to.equal(
        capital + deposit + USDC(3_013) + 500_000n
      );

      await time.increase(HOLD);
      await f.pool
        .connect(attacker)
        .redeem(shares, attacker.address, attacker.address);
      // a067e15 returns 1,001,506.749999 USDC (+1,506.75: half of the 3,013.5 collected).
      expect(await f.usdc.balanceOf(attacker.address)).to.be.lessThanOrEqual(
        deposit
      );
    });

    it("deposits a stranger makes to an LP's address never postpone the unlock of the shares the LP already holds", async function () {
      // A stranger depositing 1 USDC unit (or 0) for bob just before each unlock would keep bob's shares frozen if
      // a deposit restarted the receiver's lock whoever made it. Only bob may deposit for bob while his lock runs.
      const f = await loadFixture(noFundingFixture);
      const [, , , , , griefer] = await ethers.getSigners();
      await fund(f, f.bob, f.pool, USDC(10_000));
      await f.pool.connect(f.bob).deposit(USDC(10_000), f.bob.address);
      const t0 = BigInt(await time.latest());
      const shares = await f.pool.balanceOf(f.bob.address);
      expect(await f.pool.lockedShares(f.bob.address)).to.deep.equal([shares, t0 + HOLD]);

      await fund(f, griefer, f.pool, 3n);
      await time.setNextBlockTimestamp(t0 + HOLD - 1n); // one second before the unlock
      await expect(f.pool.connect(griefer).deposit(1n, f.bob.address))
        .to.be.revertedWithCustomError(f.pool, "ReceiverLocked")
        .withArgs(f.bob.address, t0 + HOLD);
      // At the unlock bob's shares are free; a stranger's deposit then locks only the shares it gives bob.
      await time.setNextBlockTimestamp(t0 + HOLD); // exactly at the unlock, whatever the wall clock
      await f.pool.connect(griefer).deposit(1n, f.bob.address);
      const given = (await f.pool.balanceOf(f.bob.address)) - shares;
      expect(await f.pool.lockedShares(f.bob.address)).to.deep.equal([given, t0 + 2n * HOLD]);
      const expected = await f.pool.previewRedeem(shares);
      await f.pool.connect(f.bob).redeem(shares, f.bob.address, f.bob.address);
      expect(await f.usdc.balanceOf(f.bob.address)).to.equal(expected);
      // A deposit that mints nothing leaves the lock alone.
      await f.pool.connect(f.bob).deposit(0n, f.bob.address);
      expect(await f.pool.lockedShares(f.bob.address)).to.deep.equal([given, t0 + 2n * HOLD]);
    });
  });
});
