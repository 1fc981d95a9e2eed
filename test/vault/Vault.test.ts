import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";

import {
  FeeOnTransferToken__factory,
  IERC20__factory,
  LiquidityPool__factory,
  MockERC20__factory,
  NoReturnToken__factory,
  OracleRouter__factory,
  ReentrantToken__factory,
  TwentyFourDecimalsToken__factory,
  ZeroDecimalsToken__factory,
} from "../../typechain-types";
import type { IVault, MockERC20, NoReturnToken } from "../../typechain-types";
import { deployEngine } from "../../deploy/system";

// ------------------------------------------------------------------------------------------ constants

const WAD = 10n ** 18n;
const MAX_ASSETS = 16n;
const USDC_HAIRCUT = WAD; // 100 %
const WBTC_HAIRCUT = (WAD * 85n) / 100n; // 85 %
const WETH_HAIRCUT = (WAD * 90n) / 100n; // 90 %

/** Starting wallet of every funded user, per token: 1,000,000 whole units. */
const units = (n: bigint, decimals: bigint) => n * 10n ** decimals;
const FUNDING = 1_000_000n;

const ALICE_ACCOUNT = 1n;
const BOB_ACCOUNT = 2n;

// ------------------------------------------------------------------------------------------ fixtures

/**
 * Custody (IVault) as the MarginEngine serves it at its own address, over an oracle without feeds and an empty pool:
 * three listed MockERC20 (6, 8 and 18 decimals; USDC, the pool's asset, listed first by the engine itself) and no
 * accounts. No market: nothing here needs a price.
 */
async function listedFixture() {
  const [admin, alice, bob, carol, dave, stranger, receiver] = await ethers.getSigners();
  const mockFactory = new MockERC20__factory(admin);
  const usdc = await mockFactory.deploy("USD Coin", "USDC", 6);
  const wbtc = await mockFactory.deploy("Wrapped BTC", "WBTC", 8);
  const weth = await mockFactory.deploy("Wrapped Ether", "WETH", 18);
  const oracle = await new OracleRouter__factory(admin).deploy(admin.address, ethers.ZeroAddress, 0);
  const pool = await new LiquidityPool__factory(admin).deploy(usdc, admin.address);
  const { vault, engine } = await deployEngine(admin, oracle, pool, await weth.getAddress(), USDC_HAIRCUT);
  await vault.listAsset(wbtc, WBTC_HAIRCUT);
  await vault.listAsset(weth, WETH_HAIRCUT);
  return { vault, engine, pool, usdc, wbtc, weth, admin, alice, bob, carol, dave, stranger, receiver };
}

/**
 * Adds: alice owns account 1 with operator carol, bob owns account 2 with operator dave. alice, bob,
 * carol, dave and stranger hold FUNDING of every token (and of a no-return token) and approved the vault.
 */
async function accountsFixture() {
  const base = await listedFixture();
  const { vault, usdc, wbtc, weth, admin, alice, bob, carol, dave, stranger } = base;
  const noReturn = await new NoReturnToken__factory(admin).deploy();
  await vault.listAsset(noReturn, USDC_HAIRCUT);

  await vault.connect(alice).createAccount();
  await vault.connect(bob).createAccount();
  await vault.connect(alice).setOperator(ALICE_ACCOUNT, carol.address, true);
  await vault.connect(bob).setOperator(BOB_ACCOUNT, dave.address, true);

  for (const user of [alice, bob, carol, dave, stranger]) {
    for (const token of [usdc, wbtc, weth] as MockERC20[]) {
      await token.mint(user.address, units(FUNDING, await token.decimals()));
      await token.connect(user).approve(vault, ethers.MaxUint256);
    }
    await noReturn.mint(user.address, units(FUNDING, 6n));
    await noReturn.connect(user).approve(vault, ethers.MaxUint256);
  }
  return { ...base, noReturn };
}

/**
 * accountsFixture, named for what it shows: the engine's settlement asset, USDC, may be posted by anyone as any
 * account's margin (other tokens only the owner or an operator may post).
 */
async function settlementFixture() {
  const f = await accountsFixture();
  expect(await f.vault.settlementAsset()).to.equal(await f.usdc.getAddress());
  return f;
}

// ------------------------------------------------------------------------------------------ helpers

type Addressable = { getAddress(): Promise<string> };

/**
 * Every balance the vault could move: token balances of the given holders and of the vault, and
 * reserve, margin and mask of the given accounts, plus totalTracked per token.
 */
async function snapshot(vault: IVault, tokens: Addressable[], holders: string[], accountIds: bigint[]) {
  const out: Record<string, bigint> = {};
  const vaultAddress = await vault.getAddress();
  for (const t of tokens) {
    const token = await t.getAddress();
    const erc20 = IERC20__factory.connect(token, ethers.provider);
    for (const h of [...holders, vaultAddress]) out[`balance:${token}:${h}`] = await erc20.balanceOf(h);
    out[`tracked:${token}`] = await vault.totalTracked(token);
    for (const id of accountIds) {
      out[`reserve:${id}:${token}`] = await vault.reserveOf(id, token);
      out[`margin:${id}:${token}`] = await vault.marginOf(id, token);
    }
  }
  for (const id of accountIds) out[`mask:${id}`] = await vault.marginMask(id);
  return out;
}

/** INV_SOLVENCY: each token's balance in the vault covers Σ reserves + Σ margins (totalTracked). */
async function expectSolvent(vault: IVault, tokens: Addressable[], exact = true) {
  for (const t of tokens) {
    const token = await t.getAddress();
    const held = await IERC20__factory.connect(token, ethers.provider).balanceOf(vault);
    const tracked = await vault.totalTracked(token);
    if (exact) expect(held, `INV_SOLVENCY (no donations: held == tracked) for ${token}`).to.equal(tracked);
    else expect(held >= tracked, `INV_SOLVENCY held ${held} >= tracked ${tracked} for ${token}`).to.equal(true);
  }
}

// ================================================================================================== tests

describe("Vault", function () {
  // ---------------------------------------------------------------------------------------- accounts
  describe("createAccount", function () {
    it("assigns ids 1, 2, 3 in order, emits AccountCreated(id, caller) and makes the caller the owner", async function () {
      const { vault, alice, bob } = await loadFixture(listedFixture);
      expect(await vault.accountCount()).to.equal(0n);
      expect(await vault.connect(alice).createAccount.staticCall()).to.equal(1n);

      await expect(vault.connect(alice).createAccount()).to.emit(vault, "AccountCreated").withArgs(1n, alice.address);
      await expect(vault.connect(bob).createAccount()).to.emit(vault, "AccountCreated").withArgs(2n, bob.address);
      await expect(vault.connect(alice).createAccount()).to.emit(vault, "AccountCreated").withArgs(3n, alice.address);

      expect(await vault.accountCount()).to.equal(3n);
      expect(await vault.ownerOf(1n)).to.equal(alice.address);
      expect(await vault.ownerOf(2n)).to.equal(bob.address);
      expect(await vault.ownerOf(3n)).to.equal(alice.address);
    });

    it("reports the zero address as owner of an id that was never created, and nobody as authorized", async function () {
      const { vault, alice } = await loadFixture(listedFixture);
      await vault.connect(alice).createAccount();
      expect(await vault.ownerOf(0n)).to.equal(ethers.ZeroAddress);
      expect(await vault.ownerOf(2n)).to.equal(ethers.ZeroAddress);
      expect(await vault.isAuthorized(2n, ethers.ZeroAddress)).to.equal(false);
      expect(await vault.isAuthorized(0n, ethers.ZeroAddress)).to.equal(false);
      expect(await vault.isAuthorized(1n, alice.address)).to.equal(true);
    });
  });

  describe("setOperator", function () {
    it("lets the owner approve an operator: emits OperatorSet and the operator becomes authorized", async function () {
      const { vault, alice, stranger } = await loadFixture(accountsFixture);
      expect(await vault.isAuthorized(ALICE_ACCOUNT, stranger.address)).to.equal(false);
      await expect(vault.connect(alice).setOperator(ALICE_ACCOUNT, stranger.address, true))
        .to.emit(vault, "OperatorSet")
        .withArgs(ALICE_ACCOUNT, stranger.address, true);
      expect(await vault.isOperator(ALICE_ACCOUNT, stranger.address)).to.equal(true);
      expect(await vault.isAuthorized(ALICE_ACCOUNT, stranger.address)).to.equal(true);
      // Operator of account 1 only.
      expect(await vault.isAuthorized(BOB_ACCOUNT, stranger.address)).to.equal(false);
    });

    it("lets the owner remove an operator, who then cannot withdraw (NotAuthorized)", async function () {
      const { vault, usdc, alice, carol } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, usdc, 100_000000n);
      await expect(vault.connect(alice).setOperator(ALICE_ACCOUNT, carol.address, false))
        .to.emit(vault, "OperatorSet")
        .withArgs(ALICE_ACCOUNT, carol.address, false);
      expect(await vault.isOperator(ALICE_ACCOUNT, carol.address)).to.equal(false);
      expect(await vault.isAuthorized(ALICE_ACCOUNT, carol.address)).to.equal(false);
      await expect(vault.connect(carol).withdraw(ALICE_ACCOUNT, usdc, 1n, carol.address))
        .to.be.revertedWithCustomError(vault, "NotAuthorized")
        .withArgs(ALICE_ACCOUNT, carol.address);
      expect(await vault.reserveOf(ALICE_ACCOUNT, usdc)).to.equal(100_000000n);
    });

    it("rejects a caller who is not the owner with NotAccountOwner, even the account's own operator", async function () {
      const { vault, carol, stranger } = await loadFixture(accountsFixture);
      await expect(vault.connect(carol).setOperator(ALICE_ACCOUNT, stranger.address, true))
        .to.be.revertedWithCustomError(vault, "NotAccountOwner")
        .withArgs(ALICE_ACCOUNT, carol.address);
      await expect(vault.connect(stranger).setOperator(ALICE_ACCOUNT, stranger.address, true))
        .to.be.revertedWithCustomError(vault, "NotAccountOwner")
        .withArgs(ALICE_ACCOUNT, stranger.address);
      expect(await vault.isOperator(ALICE_ACCOUNT, stranger.address)).to.equal(false);
    });

    it("rejects the zero address as operator with ZeroAddress", async function () {
      const { vault, alice } = await loadFixture(accountsFixture);
      await expect(
        vault.connect(alice).setOperator(ALICE_ACCOUNT, ethers.ZeroAddress, true)
      ).to.be.revertedWithCustomError(vault, "ZeroAddress");
    });

    it("rejects an account that does not exist with AccountNotFound", async function () {
      const { vault, alice, stranger } = await loadFixture(accountsFixture);
      await expect(vault.connect(alice).setOperator(3n, stranger.address, true))
        .to.be.revertedWithCustomError(vault, "AccountNotFound")
        .withArgs(3n);
    });

    it("lets an operator withdraw, post and release on the owner's account with exact balances", async function () {
      const { vault, weth, alice, carol, receiver } = await loadFixture(accountsFixture);
      const amount = units(10n, 18n);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, weth, amount);

      await expect(vault.connect(carol).postMargin(ALICE_ACCOUNT, weth, units(4n, 18n)))
        .to.emit(vault, "MarginPosted")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), units(4n, 18n));
      expect(await vault.reserveOf(ALICE_ACCOUNT, weth)).to.equal(units(6n, 18n));
      expect(await vault.marginOf(ALICE_ACCOUNT, weth)).to.equal(units(4n, 18n));

      await expect(vault.connect(carol).releaseMargin(ALICE_ACCOUNT, weth, units(1n, 18n)))
        .to.emit(vault, "MarginReleased")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), units(1n, 18n));
      expect(await vault.reserveOf(ALICE_ACCOUNT, weth)).to.equal(units(7n, 18n));
      expect(await vault.marginOf(ALICE_ACCOUNT, weth)).to.equal(units(3n, 18n));

      await expect(vault.connect(carol).withdraw(ALICE_ACCOUNT, weth, units(7n, 18n), receiver.address))
        .to.emit(vault, "Withdrawn")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), receiver.address, units(7n, 18n));
      expect(await weth.balanceOf(receiver.address)).to.equal(units(7n, 18n));
      expect(await vault.reserveOf(ALICE_ACCOUNT, weth)).to.equal(0n);
      expect(await weth.balanceOf(vault)).to.equal(units(3n, 18n));
      expect(await vault.totalTracked(weth)).to.equal(units(3n, 18n));
    });
  });

  // ---------------------------------------------------------------------------------------- listing
  describe("listAsset", function () {
    it("reads and stores decimals 6, 8 and 18 with indexes 0, 1, 2 and the haircut", async function () {
      const { vault, usdc, wbtc, weth } = await loadFixture(listedFixture);
      const expected = [
        [usdc, 0n, 6n, USDC_HAIRCUT],
        [wbtc, 1n, 8n, WBTC_HAIRCUT],
        [weth, 2n, 18n, WETH_HAIRCUT],
      ] as const;
      for (const [token, index, decimals, haircut] of expected) {
        const cfg = await vault.assetConfig(token);
        expect(cfg.listed).to.equal(true);
        expect(cfg.index).to.equal(index);
        expect(cfg.decimals).to.equal(decimals);
        expect(cfg.haircut).to.equal(haircut);
      }
      expect(await vault.listedAssets()).to.deep.equal([
        await usdc.getAddress(),
        await wbtc.getAddress(),
        await weth.getAddress(),
      ]);
    });

    it("emits AssetListed(token, index, decimals, haircut)", async function () {
      const { vault, admin } = await loadFixture(listedFixture);
      const dai = await new MockERC20__factory(admin).deploy("Dai", "DAI", 18);
      await expect(vault.listAsset(dai, WAD))
        .to.emit(vault, "AssetListed")
        .withArgs(await dai.getAddress(), 3n, 18n, WAD);
    });

    it("accepts a haircut of exactly 1e18 and a zero haircut, rejects 1e18 + 1 with InvalidHaircut", async function () {
      const { vault, admin } = await loadFixture(listedFixture);
      const factory = new MockERC20__factory(admin);
      const a = await factory.deploy("A", "A", 18);
      const b = await factory.deploy("B", "B", 18);
      const c = await factory.deploy("C", "C", 18);
      await expect(vault.listAsset(a, WAD + 1n))
        .to.be.revertedWithCustomError(vault, "InvalidHaircut")
        .withArgs(await a.getAddress(), WAD + 1n);
      expect((await vault.assetConfig(a)).listed).to.equal(false);
      await vault.listAsset(b, WAD);
      await vault.listAsset(c, 0n);
      expect((await vault.assetConfig(b)).haircut).to.equal(WAD);
      expect((await vault.assetConfig(c)).haircut).to.equal(0n);
    });

    it("rejects a token that is already listed with AssetAlreadyListed", async function () {
      const { vault, weth } = await loadFixture(listedFixture);
      await expect(vault.listAsset(weth, WAD))
        .to.be.revertedWithCustomError(vault, "AssetAlreadyListed")
        .withArgs(await weth.getAddress());
    });

    it("rejects 0 and 24 decimals with InvalidDecimals(token, decimals)", async function () {
      const { vault, admin } = await loadFixture(listedFixture);
      const zero = await new ZeroDecimalsToken__factory(admin).deploy();
      const big = await new TwentyFourDecimalsToken__factory(admin).deploy();
      await expect(vault.listAsset(zero, WAD))
        .to.be.revertedWithCustomError(vault, "InvalidDecimals")
        .withArgs(await zero.getAddress(), 0n);
      await expect(vault.listAsset(big, WAD))
        .to.be.revertedWithCustomError(vault, "InvalidDecimals")
        .withArgs(await big.getAddress(), 24n);
      expect((await vault.listedAssets()).length).to.equal(3);
    });

    it("accepts 1 decimal, the smallest valid value", async function () {
      const { vault, admin } = await loadFixture(listedFixture);
      const one = await new MockERC20__factory(admin).deploy("One", "ONE", 1);
      await vault.listAsset(one, WAD);
      expect((await vault.assetConfig(one)).decimals).to.equal(1n);
    });

    it("lists 16 assets and rejects the 17th with TooManyAssets(16)", async function () {
      const { vault, admin } = await loadFixture(listedFixture);
      const factory = new MockERC20__factory(admin);
      for (let i = 3n; i < MAX_ASSETS; i++) {
        const t = await factory.deploy(`T${i}`, `T${i}`, 18);
        await vault.listAsset(t, WAD);
        expect((await vault.assetConfig(t)).index).to.equal(i);
      }
      expect((await vault.listedAssets()).length).to.equal(16);
      const extra = await factory.deploy("T16", "T16", 18);
      await expect(vault.listAsset(extra, WAD)).to.be.revertedWithCustomError(vault, "TooManyAssets").withArgs(16n);
      expect((await vault.assetConfig(extra)).listed).to.equal(false);
    });

    it("rejects a caller who is not the vault owner with OwnableUnauthorizedAccount", async function () {
      const { vault, admin, stranger } = await loadFixture(listedFixture);
      const t = await new MockERC20__factory(admin).deploy("T", "T", 18);
      await expect(vault.connect(stranger).listAsset(t, WAD))
        .to.be.revertedWithCustomError(vault, "OwnableUnauthorizedAccount")
        .withArgs(stranger.address);
    });

    it("rejects the zero address with ZeroAddress", async function () {
      const { vault } = await loadFixture(listedFixture);
      await expect(vault.listAsset(ethers.ZeroAddress, WAD)).to.be.revertedWithCustomError(vault, "ZeroAddress");
    });

    it("lists a fee-on-transfer token (the mismatch is caught at deposit)", async function () {
      const { vault, admin } = await loadFixture(listedFixture);
      const fot = await new FeeOnTransferToken__factory(admin).deploy();
      await expect(vault.listAsset(fot, WAD))
        .to.emit(vault, "AssetListed")
        .withArgs(await fot.getAddress(), 3n, 18n, WAD);
    });
  });

  describe("setHaircut", function () {
    it("updates the haircut and emits HaircutSet, keeping index and decimals", async function () {
      const { vault, wbtc } = await loadFixture(listedFixture);
      const haircut = (WAD * 70n) / 100n;
      await expect(vault.setHaircut(wbtc, haircut))
        .to.emit(vault, "HaircutSet")
        .withArgs(await wbtc.getAddress(), haircut);
      const cfg = await vault.assetConfig(wbtc);
      expect(cfg.haircut).to.equal(haircut);
      expect(cfg.index).to.equal(1n);
      expect(cfg.decimals).to.equal(8n);
      expect(cfg.listed).to.equal(true);
    });

    it("rejects a haircut above 1e18 with InvalidHaircut and an unlisted token with AssetNotListed", async function () {
      const { vault, wbtc, admin } = await loadFixture(listedFixture);
      await expect(vault.setHaircut(wbtc, WAD + 1n))
        .to.be.revertedWithCustomError(vault, "InvalidHaircut")
        .withArgs(await wbtc.getAddress(), WAD + 1n);
      const t = await new MockERC20__factory(admin).deploy("T", "T", 18);
      await expect(vault.setHaircut(t, WAD))
        .to.be.revertedWithCustomError(vault, "AssetNotListed")
        .withArgs(await t.getAddress());
      expect((await vault.assetConfig(wbtc)).haircut).to.equal(WBTC_HAIRCUT);
    });

    it("rejects a caller who is not the vault owner with OwnableUnauthorizedAccount", async function () {
      const { vault, wbtc, stranger } = await loadFixture(listedFixture);
      await expect(vault.connect(stranger).setHaircut(wbtc, 0n))
        .to.be.revertedWithCustomError(vault, "OwnableUnauthorizedAccount")
        .withArgs(stranger.address);
    });
  });

  // ---------------------------------------------------------------------------------------- round trips
  describe("round trips", function () {
    const cases = [
      { name: "usdc", decimals: 6n, bit: 1n << 0n },
      { name: "wbtc", decimals: 8n, bit: 1n << 1n },
      { name: "weth", decimals: 18n, bit: 1n << 2n },
    ] as const;

    for (const c of cases) {
      it(`deposit → postMargin → releaseMargin → withdraw returns exactly what went in (${c.decimals} decimals)`, async function () {
        const f = await loadFixture(accountsFixture);
        const { vault, alice } = f;
        const token = f[c.name];
        const tokenAddress = await token.getAddress();
        const start = units(FUNDING, c.decimals);
        // 1234.5 tokens, then odd fractions to show no rounding anywhere.
        const deposited = units(12345n, c.decimals) / 10n;
        const posted = deposited / 3n;
        const released = posted / 7n;

        await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, token, deposited))
          .to.emit(vault, "Deposited")
          .withArgs(ALICE_ACCOUNT, tokenAddress, alice.address, deposited);
        expect(await token.balanceOf(alice.address)).to.equal(start - deposited);
        expect(await token.balanceOf(vault)).to.equal(deposited);
        expect(await vault.reserveOf(ALICE_ACCOUNT, token)).to.equal(deposited);
        expect(await vault.marginOf(ALICE_ACCOUNT, token)).to.equal(0n);
        expect(await vault.totalTracked(token)).to.equal(deposited);
        expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0n);

        await expect(vault.connect(alice).postMargin(ALICE_ACCOUNT, token, posted))
          .to.emit(vault, "MarginPosted")
          .withArgs(ALICE_ACCOUNT, tokenAddress, posted);
        expect(await vault.reserveOf(ALICE_ACCOUNT, token)).to.equal(deposited - posted);
        expect(await vault.marginOf(ALICE_ACCOUNT, token)).to.equal(posted);
        expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(c.bit);
        expect(await vault.totalTracked(token)).to.equal(deposited);
        expect(await token.balanceOf(vault)).to.equal(deposited);

        // Partial release keeps the bit.
        await expect(vault.connect(alice).releaseMargin(ALICE_ACCOUNT, token, released))
          .to.emit(vault, "MarginReleased")
          .withArgs(ALICE_ACCOUNT, tokenAddress, released);
        expect(await vault.marginOf(ALICE_ACCOUNT, token)).to.equal(posted - released);
        expect(await vault.reserveOf(ALICE_ACCOUNT, token)).to.equal(deposited - posted + released);
        expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(c.bit);

        // Releasing the rest clears it.
        await vault.connect(alice).releaseMargin(ALICE_ACCOUNT, token, posted - released);
        expect(await vault.marginOf(ALICE_ACCOUNT, token)).to.equal(0n);
        expect(await vault.reserveOf(ALICE_ACCOUNT, token)).to.equal(deposited);
        expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0n);

        await expect(vault.connect(alice).withdraw(ALICE_ACCOUNT, token, deposited, alice.address))
          .to.emit(vault, "Withdrawn")
          .withArgs(ALICE_ACCOUNT, tokenAddress, alice.address, deposited);
        expect(await token.balanceOf(alice.address)).to.equal(start);
        expect(await token.balanceOf(vault)).to.equal(0n);
        expect(await vault.reserveOf(ALICE_ACCOUNT, token)).to.equal(0n);
        expect(await vault.totalTracked(token)).to.equal(0n);
      });
    }

    it("keeps one mask bit per asset with margin: 6-, 8- and 18-decimal margin set bits 0, 1 and 2", async function () {
      const { vault, usdc, wbtc, weth, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, usdc, 1n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0b001n);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, 1n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0b101n);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, wbtc, 1n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0b111n);
      await vault.connect(alice).releaseMargin(ALICE_ACCOUNT, usdc, 1n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0b110n);
      // Other accounts are untouched.
      expect(await vault.marginMask(BOB_ACCOUNT)).to.equal(0n);
    });

    it("marginState lists only the assets with margin, in listing order, with their amounts and listings", async function () {
      const { vault, usdc, wbtc, weth, alice } = await loadFixture(accountsFixture);
      let [tokens, amounts, configs] = await vault.marginState(ALICE_ACCOUNT);
      expect(tokens).to.deep.equal([]);
      expect(amounts).to.deep.equal([]);
      expect(configs).to.deep.equal([]);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, 3n * WAD);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, usdc, 1_500_000000n);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, wbtc, 100_000000n); // reserve only: not listed
      [tokens, amounts, configs] = await vault.marginState(ALICE_ACCOUNT);
      expect(tokens).to.deep.equal([await usdc.getAddress(), await weth.getAddress()]);
      expect(amounts).to.deep.equal([1_500_000000n, 3n * WAD]);
      expect(configs.map((c) => [c.listed, c.index, c.decimals, c.haircut])).to.deep.equal([
        [true, 0n, 6n, USDC_HAIRCUT],
        [true, 2n, 18n, WETH_HAIRCUT],
      ]);
      // Releasing all USDC margin drops it from the list; the reserve keeps what was released.
      await vault.connect(alice).releaseMargin(ALICE_ACCOUNT, usdc, 1_500_000000n);
      [tokens, amounts] = await vault.marginState(ALICE_ACCOUNT);
      expect(tokens).to.deep.equal([await weth.getAddress()]);
      expect(amounts).to.deep.equal([3n * WAD]);
      expect(await vault.reserveOf(ALICE_ACCOUNT, usdc)).to.equal(1_500_000000n);
    });

    it("reserve and margin share a slot: each is capped at 2^128 − 1 units (BalanceTooLarge), and a move between them keeps both exact", async function () {
      const { vault, weth, alice } = await loadFixture(accountsFixture);
      const MAX128 = 2n ** 128n - 1n;
      await weth.mint(alice.address, 2n * MAX128);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, weth, MAX128 - 5n);
      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, weth, 6n))
        .to.be.revertedWithCustomError(vault, "BalanceTooLarge")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), MAX128 + 1n);
      await vault.connect(alice).postMargin(ALICE_ACCOUNT, weth, MAX128 - 10n);
      expect(await vault.reserveOf(ALICE_ACCOUNT, weth)).to.equal(5n);
      expect(await vault.marginOf(ALICE_ACCOUNT, weth)).to.equal(MAX128 - 10n);
      // The margin side has 10 units of room: a deposit of 11 straight into margin is refused, of 10 accepted.
      await expect(vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, 11n))
        .to.be.revertedWithCustomError(vault, "BalanceTooLarge")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), MAX128 + 1n);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, 10n);
      expect(await vault.marginOf(ALICE_ACCOUNT, weth)).to.equal(MAX128);
      expect(await vault.reserveOf(ALICE_ACCOUNT, weth)).to.equal(5n);
      expect(await vault.totalTracked(weth)).to.equal(MAX128 + 5n);
    });

    it("never returns more than was put in: withdrawing one unit past the reserve reverts InsufficientReserve", async function () {
      const { vault, usdc, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, usdc, 500_000000n);
      await expect(vault.connect(alice).withdraw(ALICE_ACCOUNT, usdc, 500_000001n, alice.address))
        .to.be.revertedWithCustomError(vault, "InsufficientReserve")
        .withArgs(ALICE_ACCOUNT, await usdc.getAddress(), 500_000000n, 500_000001n);
    });
  });

  // ---------------------------------------------------------------------------------------- deposit
  describe("deposit", function () {
    it("lets a stranger add collateral to someone else's reserve; Deposited names the payer", async function () {
      const { vault, wbtc, alice, stranger } = await loadFixture(accountsFixture);
      const amount = 2_50000000n; // 2.5 WBTC
      await expect(vault.connect(stranger).deposit(ALICE_ACCOUNT, wbtc, amount))
        .to.emit(vault, "Deposited")
        .withArgs(ALICE_ACCOUNT, await wbtc.getAddress(), stranger.address, amount);
      expect(await vault.reserveOf(ALICE_ACCOUNT, wbtc)).to.equal(amount);
      expect(await wbtc.balanceOf(stranger.address)).to.equal(units(FUNDING, 8n) - amount);
      expect(await wbtc.balanceOf(alice.address)).to.equal(units(FUNDING, 8n));
      expect(await wbtc.balanceOf(vault)).to.equal(amount);
      // The payer gains no rights over the account.
      expect(await vault.isAuthorized(ALICE_ACCOUNT, stranger.address)).to.equal(false);
    });

    it("rejects an account that does not exist with AccountNotFound (id 0 and id 3)", async function () {
      // With a settlement asset set: anyone may post USDC margin, so only the missing account stops it.
      const { vault, usdc, alice } = await loadFixture(settlementFixture);
      for (const id of [0n, 3n]) {
        await expect(vault.connect(alice).deposit(id, usdc, 1n))
          .to.be.revertedWithCustomError(vault, "AccountNotFound")
          .withArgs(id);
        await expect(vault.connect(alice).depositMargin(id, usdc, 1n))
          .to.be.revertedWithCustomError(vault, "AccountNotFound")
          .withArgs(id);
      }
      expect(await usdc.balanceOf(vault)).to.equal(0n);
    });

    it("rejects a zero amount with ZeroAmount", async function () {
      const { vault, usdc, alice } = await loadFixture(accountsFixture);
      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, usdc, 0n)).to.be.revertedWithCustomError(
        vault,
        "ZeroAmount"
      );
      await expect(vault.connect(alice).depositMargin(ALICE_ACCOUNT, usdc, 0n)).to.be.revertedWithCustomError(
        vault,
        "ZeroAmount"
      );
    });

    it("rejects an unlisted token with AssetNotListed", async function () {
      const { vault, admin, alice } = await loadFixture(accountsFixture);
      const t = await new MockERC20__factory(admin).deploy("T", "T", 18);
      await t.mint(alice.address, WAD);
      await t.connect(alice).approve(vault, WAD);
      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, t, WAD))
        .to.be.revertedWithCustomError(vault, "AssetNotListed")
        .withArgs(await t.getAddress());
      await expect(vault.connect(alice).depositMargin(ALICE_ACCOUNT, t, WAD))
        .to.be.revertedWithCustomError(vault, "AssetNotListed")
        .withArgs(await t.getAddress());
      expect(await t.balanceOf(alice.address)).to.equal(WAD);
    });

    it("rejects a fee-on-transfer token with TransferAmountMismatch(token, amount, received) and changes nothing", async function () {
      const { vault, admin, alice } = await loadFixture(accountsFixture);
      const fot = await new FeeOnTransferToken__factory(admin).deploy();
      await vault.listAsset(fot, WAD);
      const amount = units(1000n, 18n);
      await fot.mint(alice.address, amount);
      await fot.connect(alice).approve(vault, amount);
      const received = units(990n, 18n); // 1 % burnt

      const before = await snapshot(vault, [fot], [alice.address], [ALICE_ACCOUNT]);
      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, fot, amount))
        .to.be.revertedWithCustomError(vault, "TransferAmountMismatch")
        .withArgs(await fot.getAddress(), amount, received);
      await expect(vault.connect(alice).depositMargin(ALICE_ACCOUNT, fot, amount))
        .to.be.revertedWithCustomError(vault, "TransferAmountMismatch")
        .withArgs(await fot.getAddress(), amount, received);
      expect(await snapshot(vault, [fot], [alice.address], [ALICE_ACCOUNT])).to.deep.equal(before);
      expect(await fot.balanceOf(alice.address)).to.equal(amount);
      expect(await fot.balanceOf(vault)).to.equal(0n);
      expect(await vault.totalTracked(fot)).to.equal(0n);
    });

    it("depositMargin by a stranger credits margin, sets the mask bit and emits Deposited then MarginPosted", async function () {
      // A stranger may post the settlement asset (USDC) as anyone's margin.
      const { vault, usdc, weth, stranger } = await loadFixture(settlementFixture);
      const amount = units(3n, 6n) + 7n;
      const usdcAddress = await usdc.getAddress();
      const tx = vault.connect(stranger).depositMargin(BOB_ACCOUNT, usdc, amount);
      await expect(tx).to.emit(vault, "Deposited").withArgs(BOB_ACCOUNT, usdcAddress, stranger.address, amount);
      await expect(tx).to.emit(vault, "MarginPosted").withArgs(BOB_ACCOUNT, usdcAddress, amount);
      expect(await vault.marginOf(BOB_ACCOUNT, usdc)).to.equal(amount);
      expect(await vault.reserveOf(BOB_ACCOUNT, usdc)).to.equal(0n);
      expect(await vault.marginMask(BOB_ACCOUNT)).to.equal(1n << 0n);
      expect(await vault.totalTracked(usdc)).to.equal(amount);
      expect(await usdc.balanceOf(vault)).to.equal(amount);
      expect(await usdc.balanceOf(stranger.address)).to.equal(units(FUNDING, 6n) - amount);

      // Any other token only the owner or an operator may post as margin: MarginAssetRestricted, nothing moves.
      await expect(vault.connect(stranger).depositMargin(BOB_ACCOUNT, weth, 1n))
        .to.be.revertedWithCustomError(vault, "MarginAssetRestricted")
        .withArgs(BOB_ACCOUNT, await weth.getAddress(), stranger.address);
      expect(await vault.marginOf(BOB_ACCOUNT, weth)).to.equal(0n);
      expect(await vault.marginMask(BOB_ACCOUNT)).to.equal(1n << 0n);
    });
  });

  // ---------------------------------------------------------------------------------------- withdraw / post / release
  describe("withdraw", function () {
    it("rejects a caller who is neither owner nor operator with NotAuthorized", async function () {
      const { vault, usdc, alice, stranger } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, usdc, 10n);
      await expect(vault.connect(stranger).withdraw(ALICE_ACCOUNT, usdc, 10n, stranger.address))
        .to.be.revertedWithCustomError(vault, "NotAuthorized")
        .withArgs(ALICE_ACCOUNT, stranger.address);
    });

    it("rejects an account that does not exist with AccountNotFound", async function () {
      const { vault, usdc, alice } = await loadFixture(accountsFixture);
      await expect(vault.connect(alice).withdraw(3n, usdc, 1n, alice.address))
        .to.be.revertedWithCustomError(vault, "AccountNotFound")
        .withArgs(3n);
    });

    it("rejects a zero amount with ZeroAmount and the zero recipient with ZeroAddress", async function () {
      const { vault, usdc, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, usdc, 10n);
      await expect(vault.connect(alice).withdraw(ALICE_ACCOUNT, usdc, 0n, alice.address)).to.be.revertedWithCustomError(
        vault,
        "ZeroAmount"
      );
      await expect(
        vault.connect(alice).withdraw(ALICE_ACCOUNT, usdc, 10n, ethers.ZeroAddress)
      ).to.be.revertedWithCustomError(vault, "ZeroAddress");
      expect(await vault.reserveOf(ALICE_ACCOUNT, usdc)).to.equal(10n);
    });

    it("cannot take margin: only the reserve is withdrawable (InsufficientReserve with available 0)", async function () {
      const { vault, usdc, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, usdc, 100_000000n);
      await expect(vault.connect(alice).withdraw(ALICE_ACCOUNT, usdc, 1n, alice.address))
        .to.be.revertedWithCustomError(vault, "InsufficientReserve")
        .withArgs(ALICE_ACCOUNT, await usdc.getAddress(), 0n, 1n);
      expect(await vault.marginOf(ALICE_ACCOUNT, usdc)).to.equal(100_000000n);
    });

    it("cannot take another account's reserve of the same token", async function () {
      const { vault, usdc, alice, bob } = await loadFixture(accountsFixture);
      await vault.connect(bob).deposit(BOB_ACCOUNT, usdc, 100_000000n);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, usdc, 1_000000n);
      await expect(vault.connect(alice).withdraw(ALICE_ACCOUNT, usdc, 2_000000n, alice.address))
        .to.be.revertedWithCustomError(vault, "InsufficientReserve")
        .withArgs(ALICE_ACCOUNT, await usdc.getAddress(), 1_000000n, 2_000000n);
      expect(await vault.reserveOf(BOB_ACCOUNT, usdc)).to.equal(100_000000n);
    });

    it("sends to any recipient the owner names", async function () {
      const { vault, wbtc, alice, receiver } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, wbtc, 1_00000000n);
      await vault.connect(alice).withdraw(ALICE_ACCOUNT, wbtc, 40000000n, receiver.address);
      expect(await wbtc.balanceOf(receiver.address)).to.equal(40000000n);
      expect(await wbtc.balanceOf(alice.address)).to.equal(units(FUNDING, 8n) - 1_00000000n);
      expect(await vault.reserveOf(ALICE_ACCOUNT, wbtc)).to.equal(60000000n);
      expect(await vault.totalTracked(wbtc)).to.equal(60000000n);
    });
  });

  describe("postMargin", function () {
    it("rejects more than the reserve with InsufficientReserve(id, token, available, requested)", async function () {
      const { vault, wbtc, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, wbtc, 5n);
      await expect(vault.connect(alice).postMargin(ALICE_ACCOUNT, wbtc, 6n))
        .to.be.revertedWithCustomError(vault, "InsufficientReserve")
        .withArgs(ALICE_ACCOUNT, await wbtc.getAddress(), 5n, 6n);
    });

    it("rejects zero with ZeroAmount, an unlisted token with AssetNotListed and a stranger with NotAuthorized", async function () {
      const { vault, wbtc, admin, alice, stranger } = await loadFixture(accountsFixture);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, wbtc, 5n);
      await expect(vault.connect(alice).postMargin(ALICE_ACCOUNT, wbtc, 0n)).to.be.revertedWithCustomError(
        vault,
        "ZeroAmount"
      );
      const t = await new MockERC20__factory(admin).deploy("T", "T", 18);
      await expect(vault.connect(alice).postMargin(ALICE_ACCOUNT, t, 1n))
        .to.be.revertedWithCustomError(vault, "AssetNotListed")
        .withArgs(await t.getAddress());
      await expect(vault.connect(stranger).postMargin(ALICE_ACCOUNT, wbtc, 1n))
        .to.be.revertedWithCustomError(vault, "NotAuthorized")
        .withArgs(ALICE_ACCOUNT, stranger.address);
      await expect(vault.connect(alice).postMargin(3n, wbtc, 1n))
        .to.be.revertedWithCustomError(vault, "AccountNotFound")
        .withArgs(3n);
    });
  });

  describe("releaseMargin", function () {
    it("rejects more than the margin with InsufficientMargin(id, token, available, requested)", async function () {
      const { vault, weth, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, WAD);
      await expect(vault.connect(alice).releaseMargin(ALICE_ACCOUNT, weth, WAD + 1n))
        .to.be.revertedWithCustomError(vault, "InsufficientMargin")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), WAD, WAD + 1n);
    });

    it("rejects zero with ZeroAmount, an unlisted token with AssetNotListed and a stranger with NotAuthorized", async function () {
      const { vault, weth, admin, alice, stranger } = await loadFixture(accountsFixture);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, WAD);
      await expect(vault.connect(alice).releaseMargin(ALICE_ACCOUNT, weth, 0n)).to.be.revertedWithCustomError(
        vault,
        "ZeroAmount"
      );
      const t = await new MockERC20__factory(admin).deploy("T", "T", 18);
      await expect(vault.connect(alice).releaseMargin(ALICE_ACCOUNT, t, 1n))
        .to.be.revertedWithCustomError(vault, "AssetNotListed")
        .withArgs(await t.getAddress());
      await expect(vault.connect(stranger).releaseMargin(ALICE_ACCOUNT, weth, 1n))
        .to.be.revertedWithCustomError(vault, "NotAuthorized")
        .withArgs(ALICE_ACCOUNT, stranger.address);
    });

    it("an account without positions or debt releases all of it without a price (no oracle is even configured here)", async function () {
      const { vault, weth, alice } = await loadFixture(accountsFixture);
      await vault.connect(alice).depositMargin(ALICE_ACCOUNT, weth, WAD);
      await expect(vault.connect(alice).releaseMargin(ALICE_ACCOUNT, weth, WAD))
        .to.emit(vault, "MarginReleased")
        .withArgs(ALICE_ACCOUNT, await weth.getAddress(), WAD);
      expect(await vault.reserveOf(ALICE_ACCOUNT, weth)).to.equal(WAD);
      expect(await vault.marginOf(ALICE_ACCOUNT, weth)).to.equal(0n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0n);
      // A release that would leave an account with positions below initial margin reverts BelowInitialMargin:
      // test/engine/MarginEngine.test.ts, "releaseMargin checks initial margin".
    });
  });

  // ---------------------------------------------------------------------------------------- weird tokens
  describe("no-return token (USDT-like)", function () {
    it("deposits, posts, releases and withdraws with exact balances", async function () {
      const { vault, noReturn, alice, receiver } = await loadFixture(accountsFixture);
      const start = units(FUNDING, 6n);
      const nrt = await noReturn.getAddress();

      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, noReturn, 750_123456n))
        .to.emit(vault, "Deposited")
        .withArgs(ALICE_ACCOUNT, nrt, alice.address, 750_123456n);
      expect(await noReturn.balanceOf(alice.address)).to.equal(start - 750_123456n);
      expect(await noReturn.balanceOf(vault)).to.equal(750_123456n);
      expect(await vault.reserveOf(ALICE_ACCOUNT, noReturn)).to.equal(750_123456n);

      await vault.connect(alice).postMargin(ALICE_ACCOUNT, noReturn, 500_000000n);
      expect(await vault.marginOf(ALICE_ACCOUNT, noReturn)).to.equal(500_000000n);
      expect(await vault.reserveOf(ALICE_ACCOUNT, noReturn)).to.equal(250_123456n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(1n << 3n);

      await vault.connect(alice).releaseMargin(ALICE_ACCOUNT, noReturn, 500_000000n);
      expect(await vault.marginOf(ALICE_ACCOUNT, noReturn)).to.equal(0n);
      expect(await vault.reserveOf(ALICE_ACCOUNT, noReturn)).to.equal(750_123456n);
      expect(await vault.marginMask(ALICE_ACCOUNT)).to.equal(0n);

      await expect(vault.connect(alice).withdraw(ALICE_ACCOUNT, noReturn, 700_000000n, receiver.address))
        .to.emit(vault, "Withdrawn")
        .withArgs(ALICE_ACCOUNT, nrt, receiver.address, 700_000000n);
      expect(await noReturn.balanceOf(receiver.address)).to.equal(700_000000n);
      expect(await noReturn.balanceOf(vault)).to.equal(50_123456n);
      expect(await vault.reserveOf(ALICE_ACCOUNT, noReturn)).to.equal(50_123456n);
      expect(await vault.totalTracked(noReturn)).to.equal(50_123456n);

      await vault.connect(alice).withdraw(ALICE_ACCOUNT, noReturn, 50_123456n, alice.address);
      expect(await noReturn.balanceOf(alice.address)).to.equal(start - 700_000000n);
      expect(await noReturn.balanceOf(vault)).to.equal(0n);
      expect(await vault.totalTracked(noReturn)).to.equal(0n);
    });

    it("is listed with 6 decimals read from the token", async function () {
      const { vault, noReturn } = await loadFixture(accountsFixture);
      const cfg = await vault.assetConfig(noReturn);
      expect(cfg.decimals).to.equal(6n);
      expect(cfg.index).to.equal(3n);
    });

    it("still reverts when the no-return transfer itself fails (insufficient allowance)", async function () {
      const { vault, noReturn, alice } = await loadFixture(accountsFixture);
      await noReturn.connect(alice).approve(vault, 1n);
      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, noReturn, 2n)).to.be.revertedWithCustomError(
        noReturn as NoReturnToken,
        "InsufficientAllowance"
      );
      expect(await vault.reserveOf(ALICE_ACCOUNT, noReturn)).to.equal(0n);
    });
  });

  describe("reentrancy", function () {
    it("a token that calls back into the vault during withdraw makes it revert with ReentrancyGuardReentrantCall", async function () {
      const { vault, admin, alice } = await loadFixture(accountsFixture);
      const reent = await new ReentrantToken__factory(admin).deploy();
      await vault.listAsset(reent, WAD);
      await reent.mint(alice.address, 2n * WAD);
      await reent.connect(alice).approve(vault, ethers.MaxUint256);
      await vault.connect(alice).deposit(ALICE_ACCOUNT, reent, WAD);

      // The hook tries to deposit the token's own balance into alice's account mid-transfer.
      const reentry = vault.interface.encodeFunctionData("deposit", [ALICE_ACCOUNT, await reent.getAddress(), 1n]);
      await reent.setReentry(vault, reentry);
      await expect(
        vault.connect(alice).withdraw(ALICE_ACCOUNT, reent, WAD, alice.address)
      ).to.be.revertedWithCustomError(vault, "ReentrancyGuardReentrantCall");
      await expect(vault.connect(alice).deposit(ALICE_ACCOUNT, reent, 1n)).to.be.revertedWithCustomError(
        vault,
        "ReentrancyGuardReentrantCall"
      );
      expect(await vault.reserveOf(ALICE_ACCOUNT, reent)).to.equal(WAD);
      expect(await reent.balanceOf(vault)).to.equal(WAD);

      // Disarmed, the same withdrawal goes through: the revert above came from the re-entry.
      await reent.setReentry(vault, "0x");
      await vault.connect(alice).withdraw(ALICE_ACCOUNT, reent, WAD, alice.address);
      expect(await reent.balanceOf(alice.address)).to.equal(2n * WAD);
      expect(await vault.reserveOf(ALICE_ACCOUNT, reent)).to.equal(0n);
    });
  });

  describe("custody: nothing the vault holds can leave except to its account's owner/operator", function () {
    /** alice's account 1 holds reserve and margin in every token; bob's account 2 holds some too. */
    async function fundedFixture() {
      const f = await accountsFixture();
      const { vault, usdc, wbtc, weth, noReturn, alice, bob } = f;
      for (const token of [usdc, wbtc, weth, noReturn] as const) {
        const one = 10n ** (await token.decimals());
        await vault.connect(alice).deposit(ALICE_ACCOUNT, token, 100n * one);
        await vault.connect(alice).depositMargin(ALICE_ACCOUNT, token, 50n * one);
        await vault.connect(bob).deposit(BOB_ACCOUNT, token, 7n * one);
        await vault.connect(bob).depositMargin(BOB_ACCOUNT, token, 3n * one);
      }
      return f;
    }

    type F = Awaited<ReturnType<typeof fundedFixture>>;
    const attackers: { label: string; pick: (f: F) => HardhatEthersSigner }[] = [
      { label: "a stranger", pick: (f) => f.stranger },
      { label: "another account's owner", pick: (f) => f.bob },
      { label: "the operator of another account", pick: (f) => f.dave },
      { label: "the vault owner (admin)", pick: (f) => f.admin },
    ];
    const actions: {
      label: string;
      error: "NotAuthorized" | "NotAccountOwner";
      run: (f: F, attacker: HardhatEthersSigner) => Promise<unknown>;
    }[] = [
      {
        label: "withdraw",
        error: "NotAuthorized",
        run: (f, a) => f.vault.connect(a).withdraw(ALICE_ACCOUNT, f.weth, WAD, a.address),
      },
      {
        label: "postMargin",
        error: "NotAuthorized",
        run: (f, a) => f.vault.connect(a).postMargin(ALICE_ACCOUNT, f.wbtc, 1n),
      },
      {
        label: "releaseMargin",
        error: "NotAuthorized",
        run: (f, a) => f.vault.connect(a).releaseMargin(ALICE_ACCOUNT, f.usdc, 1n),
      },
      {
        label: "setOperator",
        error: "NotAccountOwner",
        run: (f, a) => f.vault.connect(a).setOperator(ALICE_ACCOUNT, a.address, true),
      },
    ];

    for (const attacker of attackers) {
      for (const action of actions) {
        it(`${action.label} by ${attacker.label} on alice's account reverts ${action.error} and moves nothing`, async function () {
          const f = await loadFixture(fundedFixture);
          const a = attacker.pick(f);
          const tokens = [f.usdc, f.wbtc, f.weth, f.noReturn];
          const holders = [
            f.alice.address,
            f.bob.address,
            f.carol.address,
            f.dave.address,
            f.stranger.address,
            f.admin.address,
          ];
          const before = await snapshot(f.vault, tokens, holders, [ALICE_ACCOUNT, BOB_ACCOUNT]);

          await expect(action.run(f, a))
            .to.be.revertedWithCustomError(f.vault, action.error)
            .withArgs(ALICE_ACCOUNT, a.address);

          expect(await snapshot(f.vault, tokens, holders, [ALICE_ACCOUNT, BOB_ACCOUNT])).to.deep.equal(before);
          expect(await f.vault.isOperator(ALICE_ACCOUNT, a.address)).to.equal(false);
          await expectSolvent(f.vault, tokens);
        });
      }
    }

    it("the fixture really holds funds, so the table above guards something (alice 150 WETH, bob 10 WETH)", async function () {
      const f = await loadFixture(fundedFixture);
      expect(await f.vault.reserveOf(ALICE_ACCOUNT, f.weth)).to.equal(units(100n, 18n));
      expect(await f.vault.marginOf(ALICE_ACCOUNT, f.weth)).to.equal(units(50n, 18n));
      expect(await f.weth.balanceOf(f.vault)).to.equal(units(160n, 18n));
      expect(await f.vault.marginMask(ALICE_ACCOUNT)).to.equal(0b1111n);
      expect(await f.vault.marginMask(BOB_ACCOUNT)).to.equal(0b1111n);
      // And the same calls by alice succeed, so the reverts above are about the caller alone.
      await f.vault.connect(f.alice).withdraw(ALICE_ACCOUNT, f.weth, WAD, f.alice.address);
      await f.vault.connect(f.alice).postMargin(ALICE_ACCOUNT, f.wbtc, 1n);
      await f.vault.connect(f.alice).releaseMargin(ALICE_ACCOUNT, f.usdc, 1n);
      await f.vault.connect(f.alice).setOperator(ALICE_ACCOUNT, f.stranger.address, true);
      await expectSolvent(f.vault, [f.usdc, f.wbtc, f.weth, f.noReturn]);
    });

    it("INV_SOLVENCY: balanceOf(vault) == totalTracked after a mixed sequence, and >= after a donation", async function () {
      const f = await loadFixture(fundedFixture);
      const { vault, usdc, wbtc, weth, noReturn, alice, bob, carol, dave, stranger, receiver } = f;
      const tokens = [usdc, wbtc, weth, noReturn];
      await expectSolvent(vault, tokens);

      await vault.connect(carol).postMargin(ALICE_ACCOUNT, usdc, 30_000000n);
      await vault.connect(dave).withdraw(BOB_ACCOUNT, wbtc, 7_00000000n, receiver.address);
      // Bob's operator posts WETH margin (a stranger may post only the settlement asset, and this vault has none).
      await vault.connect(dave).depositMargin(BOB_ACCOUNT, weth, 123n);
      await vault.connect(bob).releaseMargin(BOB_ACCOUNT, noReturn, 3_000000n);
      await vault.connect(alice).withdraw(ALICE_ACCOUNT, noReturn, 100_000000n, alice.address);
      await expectSolvent(vault, tokens);

      // Exact totals: Σ reserve + Σ margin per token.
      for (const token of tokens) {
        let sum = 0n;
        for (const id of [ALICE_ACCOUNT, BOB_ACCOUNT])
          sum += (await vault.reserveOf(id, token)) + (await vault.marginOf(id, token));
        expect(await vault.totalTracked(token)).to.equal(sum);
      }
      expect(await vault.totalTracked(wbtc)).to.equal(150_00000000n + 3_00000000n);

      await weth.connect(stranger).transfer(vault, 5n); // donation: untracked, not anyone's
      expect(await weth.balanceOf(vault)).to.equal((await vault.totalTracked(weth)) + 5n);
      await expectSolvent(vault, tokens, false);
    });
  });
});
