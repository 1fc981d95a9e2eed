/**
 * Every Ballast task end to end, in process (`hre.run`) on the hardhat network, against the system deploy/ deploys
 * (deployLocalSystem, 1,000,000 USDC of LP capital) recorded in a temporary BALLAST_DEPLOYMENTS_DIR: the on-chain
 * result of each task to the unit, and each kind of user mistake as its exact one-line message.
 * The steps share one chain and run in order (LP first, while no position is open, so share prices are exact).
 */
import { expect } from "chai";
import { execFile } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";
import { time } from "@nomicfoundation/hardhat-network-helpers";
import { Network } from "ethers";

import { ACTION } from "../../deploy/params";
import { formatUnits } from "../../lib/units";
import { recordOfLocalSystem, saveDeployment, type DeploymentRecord } from "../../lib/deployment";
import { productionFixture, type ProductionFixture, USDC, E18 } from "../helpers/fixtures";

const WETH = (n: bigint) => n * 10n ** 18n;

/** Runs a task and returns the message of the one-line error it must fail with. */
async function failure(task: string, args: Record<string, unknown>): Promise<string> {
  try {
    await hre.run(task, args);
  } catch (e) {
    expect((e as Error).constructor.name, (e as Error).stack).to.equal("HardhatPluginError");
    const msg = (e as Error).message;
    expect(msg.split("\n")).to.have.length(1);
    return msg;
  }
  throw new Error(`${task} did not fail`);
}

describe("Hardhat tasks", function () {
  let f: ProductionFixture;
  let rec: DeploymentRecord;
  let dir: string;
  const saved = { dir: process.env.BALLAST_DEPLOYMENTS_DIR, quiet: process.env.BALLAST_TASKS_QUIET };
  let carol: ProductionFixture["alice"];
  let dave: ProductionFixture["alice"];
  // signer indices: 0 deployer, 1 lp, 2 alice, 3 bob, 4 keeper, 5 carol, 6 dave
  const ALICE = "2", BOB = "3", KEEPER = "4", CAROL = "5", DAVE = "6";

  before(async () => {
    f = await productionFixture();
    const signers = await hre.ethers.getSigners();
    carol = signers[5];
    dave = signers[6];
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-tasks-"));
    rec = await recordOfLocalSystem(f, { network: "hardhat", chainId: 31337, startBlock: 0, deployer: f.deployer.address });
    saveDeployment(rec, dir);
    process.env.BALLAST_DEPLOYMENTS_DIR = dir;
    process.env.BALLAST_TASKS_QUIET = "true";
    for (const s of [f.alice, f.bob, carol]) await f.usdc.mint(s.address, USDC(20_000));
    await f.weth.mint(f.alice.address, WETH(10n));
    await f.usdc.mint(dave.address, USDC(1_000));
  });

  after(() => {
    for (const [k, v] of [["BALLAST_DEPLOYMENTS_DIR", saved.dir], ["BALLAST_TASKS_QUIET", saved.quiet]] as const) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  describe("lp:deposit, lp:redeem", () => {
    it("deposits at the pool's exact share price and locks the shares", async () => {
      const [supply, assets] = [await f.pool.totalSupply(), await f.pool.totalAssets()];
      const expected = (USDC(1_000) * (supply + 10n ** 6n)) / (assets + 1n);
      const out = await hre.run("lp:deposit", { amount: "1000", from: DAVE });
      expect(out.shares).to.equal(expected);
      expect(expected).to.equal(10n ** 15n); // 1,000 shares of 12 decimals: the pool has earned nothing yet
      expect(await f.pool.balanceOf(dave.address)).to.equal(expected);
      expect(await f.usdc.balanceOf(dave.address)).to.equal(0n);
      const [locked, unlockAt] = await f.pool.lockedShares(dave.address);
      expect(locked).to.equal(expected);
      expect(out.unlockAt).to.equal(unlockAt);
      expect(unlockAt).to.equal(BigInt(await time.latest()) + 900n);
    });

    it("refuses to redeem locked shares, naming the unlock time", async () => {
      const [locked, unlockAt] = await f.pool.lockedShares(dave.address);
      expect(await failure("lp:redeem", { all: true, from: DAVE })).to.equal(
        `SharesLocked: ${dave.address}'s ${formatUnits(locked, 12)} newest shares are locked until ${new Date(Number(unlockAt) * 1000).toISOString().replace(".000Z", "Z")} (the pool's hold period): redeem after that`,
      );
    });

    it("refuses a bad --shares, both or neither of --shares/--all, and more than held", async () => {
      expect(await failure("lp:redeem", { from: DAVE })).to.equal("give either --shares <amount> or --all");
      expect(await failure("lp:redeem", { shares: "1", all: true, from: DAVE })).to.equal("give either --shares <amount> or --all");
      expect(await failure("lp:redeem", { shares: "0.0000000000001", from: DAVE })).to.equal(
        '--shares "0.0000000000001" has 13 decimals, at most 12 allowed: round it to 12 decimals',
      );
      expect(await failure("lp:redeem", { shares: "5000", from: DAVE })).to.equal(
        `${dave.address} holds 1000 shares, 5000 asked: redeem at most what it holds`,
      );
      expect(await failure("lp:deposit", { amount: "1", from: DAVE })).to.equal(
        `${dave.address} holds 0 USDC, 1 USDC needed: fund the wallet first`,
      );
    });

    it("redeems every share after the hold period at the exact price", async () => {
      await time.increase(900);
      const shares = await f.pool.balanceOf(dave.address);
      const [supply, assets] = [await f.pool.totalSupply(), await f.pool.totalAssets()];
      const expected = (shares * (assets + 1n)) / (supply + 10n ** 6n);
      const out = await hre.run("lp:redeem", { all: true, from: DAVE });
      expect(out).to.deep.equal({ shares, assets: expected });
      expect(expected).to.equal(USDC(1_000));
      expect(await f.usdc.balanceOf(dave.address)).to.equal(expected);
      expect(await f.pool.balanceOf(dave.address)).to.equal(0n);
    });
  });

  describe("accounts and collateral", () => {
    it("account:create creates accounts owned by the signer", async () => {
      expect(await hre.run("account:create", { from: ALICE })).to.equal(1n);
      expect(await hre.run("account:create", { from: BOB })).to.equal(2n);
      expect(await hre.run("account:create", { from: CAROL })).to.equal(3n);
      expect(await f.vault.ownerOf(1n)).to.equal(f.alice.address);
      expect(await f.vault.ownerOf(2n)).to.equal(f.bob.address);
      expect(await f.vault.ownerOf(3n)).to.equal(carol.address);
    });

    it("collateral:deposit into the reserve, and --margin straight into margin", async () => {
      await hre.run("collateral:deposit", { account: "1", asset: "USDC", amount: "5000", from: ALICE });
      await hre.run("collateral:deposit", { account: "1", asset: "weth", amount: "1.5", margin: true, from: ALICE });
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(5_000));
      expect(await f.vault.marginOf(1n, f.usdc)).to.equal(0n);
      expect(await f.vault.marginOf(1n, f.weth)).to.equal(E18(3) / 2n);
      expect(await f.usdc.balanceOf(f.alice.address)).to.equal(USDC(15_000));
      expect(await f.weth.balanceOf(f.alice.address)).to.equal(E18(17) / 2n);
      for (const who of [BOB, CAROL]) {
        const id = who === BOB ? "2" : "3";
        await hre.run("collateral:deposit", { account: id, asset: "USDC", amount: "10000", from: who });
      }
    });

    it("collateral:post moves reserve to margin, collateral:release back", async () => {
      await hre.run("collateral:post", { account: "1", asset: "USDC", amount: "3000", from: ALICE });
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(2_000));
      expect(await f.vault.marginOf(1n, f.usdc)).to.equal(USDC(3_000));
      await hre.run("collateral:release", { account: "1", asset: "USDC", amount: "499.999999", from: ALICE });
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(2_500) - 1n);
      expect(await f.vault.marginOf(1n, f.usdc)).to.equal(USDC(2_500) + 1n);
      for (const id of ["2", "3"]) {
        await hre.run("collateral:post", { account: id, asset: "USDC", amount: "2000", from: id === "2" ? BOB : CAROL });
      }
    });

    it("collateral:withdraw sends reserve to the signer or --to", async () => {
      await hre.run("collateral:withdraw", { account: "1", asset: "USDC", amount: "100", to: dave.address, from: ALICE });
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(2_400) - 1n);
      expect(await f.usdc.balanceOf(dave.address)).to.equal(USDC(1_100));
      await hre.run("collateral:withdraw", { account: "1", asset: "USDC", amount: "400", from: f.alice.address });
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(2_000) - 1n);
      expect(await f.usdc.balanceOf(f.alice.address)).to.equal(USDC(15_400));
    });

    it("mistakes: unknown account, asset, bad amounts, wrong signer, too little reserve or margin, empty wallet", async () => {
      const base = { account: "1", asset: "USDC", amount: "1", from: ALICE };
      expect(await failure("collateral:deposit", { asset: "USDC", amount: "1", from: ALICE })).to.equal("--account is required, e.g. --account 1");
      expect(await failure("collateral:deposit", { account: "1", amount: "1", from: ALICE })).to.equal("--asset is required, e.g. --asset USDC");
      expect(await failure("collateral:deposit", { account: "1", asset: "USDC", from: ALICE })).to.equal("--amount is required, e.g. --amount 250");
      expect(await failure("collateral:deposit", { ...base, account: "9" })).to.equal(
        "account 9 does not exist (accounts are 1..3): create one with account:create",
      );
      expect(await failure("collateral:deposit", { ...base, account: "one" })).to.equal(
        '--account "one" is not a whole number: write it like 0 or 3600',
      );
      expect(await failure("collateral:deposit", { ...base, asset: "DOGE" })).to.equal(
        'unknown asset "DOGE": use one of USDC, WETH, WBTC',
      );
      expect(await failure("collateral:deposit", { ...base, amount: "1.0000001" })).to.equal(
        '--amount "1.0000001" has 7 decimals, at most 6 allowed: round it to 6 decimals',
      );
      expect(await failure("collateral:deposit", { ...base, amount: "-5" })).to.equal('--amount "-5" is negative: give a positive number');
      expect(await failure("collateral:deposit", { ...base, amount: "0" })).to.equal('--amount "0" is zero: give a positive number');
      expect(await failure("collateral:deposit", { ...base, amount: "1e6" })).to.equal(
        '--amount "1e6" is not a decimal number: write it like 1.5 or 250',
      );
      expect(await failure("collateral:deposit", { ...base, from: "99" })).to.equal(
        "--from 99: the network has 20 signers, use an index 0..19 or an address",
      );
      expect(await failure("collateral:deposit", { ...base, asset: "WBTC" })).to.equal(
        `${f.alice.address} holds 0 WBTC, 1 WBTC needed: fund the wallet first`,
      );
      expect(await failure("collateral:withdraw", { ...base, amount: "5000" })).to.equal(
        "InsufficientReserve: account 1 has 1999.999999 USDC in reserve, 5000 USDC needed: deposit more with collateral:deposit or release margin with collateral:release",
      );
      expect(await failure("collateral:withdraw", { ...base, from: BOB })).to.equal(
        `NotAuthorized: ${f.bob.address} is not the owner or an operator of account 1: run it --from the account's owner`,
      );
      expect(await failure("collateral:release", { ...base, asset: "WETH", amount: "2" })).to.equal(
        "InsufficientMargin: account 1 has 1.5 WETH of margin, 2 WETH requested: release at most what it has",
      );
      expect(await failure("collateral:deposit", { ...base, account: "2", asset: "WETH", margin: true })).to.equal(
        `MarginAssetRestricted: only the owner or an operator of account 2 may post WETH as margin: run it --from the account's owner, or deposit USDC`,
      );
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(2_000) - 1n);
    });
  });

  describe("orders: position:open, oracle:push, order:execute, position:close", () => {
    let filledAt: bigint;

    it("position:open requests a long at the oracle price + slippage; order:execute fills it at the next round", async () => {
      const orderFee = await f.engine.orderFee();
      const out = await hre.run("position:open", { account: "1", market: "ETH", size: "1.5", from: ALICE });
      expect(out.orderId).to.equal(1n);
      expect(out.sizeDelta).to.equal(E18(3) / 2n);
      expect(out.acceptablePrice).to.equal(E18(2_010)); // 2,000 + 50 bps
      const o = await f.engine.order(1n);
      expect([o.accountId, o.marketId, o.sizeDelta, o.acceptablePrice, o.deadline, o.reduceOnly]).to.deep.equal([
        1n, 0n, E18(3) / 2n, E18(2_010), out.deadline, false,
      ]);
      const [latestRound] = await f.ethFeed.latestRoundData();
      expect(o.afterRound).to.equal(latestRound); // the feed's latest round at the request: the order fills at the next
      expect(await f.vault.reserveOf(1n, f.usdc)).to.equal(USDC(2_000) - 1n - orderFee);

      expect(await failure("order:execute", { id: "1" })).to.equal(
        `OrderNotReady: order 1 fills at the feed's round after ${latestRound}, not published yet: a keeper fills it then (on a local network: oracle:push)`,
      );

      const pushed = await hre.run("oracle:push", { asset: "WETH", price: "1850" });
      expect(pushed.answer).to.equal(1850n * 10n ** 8n);
      expect((await f.ethFeed.latestRoundData())[1]).to.equal(1850n * 10n ** 8n);
      filledAt = E18(1_850);
      expect(await hre.run("order:execute", { id: "1", from: KEEPER })).to.deep.equal({ filled: true, price: filledAt });
      const p = await f.engine.position(1n, 0n);
      expect([p.size, p.entryPrice]).to.deep.equal([E18(3) / 2n, filledAt]);
      expect(await f.engine.keeperRewardsOf(f.keeper.address)).to.equal(orderFee);
      expect(await f.engine.pendingOrders(1n)).to.deep.equal([]);
    });

    it("shorts with --side short and an --acceptable-price; a cancelled fill prints its reason", async () => {
      const out = await hre.run("position:open", {
        account: "1", market: "BTC", size: "0.1", side: "short", acceptablePrice: "31000", from: ALICE,
      });
      expect(out.sizeDelta).to.equal(-E18(1) / 10n);
      expect(out.acceptablePrice).to.equal(E18(31_000));
      await hre.run("oracle:push", { asset: "BTC", price: "30000" });
      expect(await hre.run("order:execute", { id: String(out.orderId) })).to.deep.equal({ filled: false, reason: "PriceNotAcceptable" });
      expect((await f.engine.position(1n, 1n)).size).to.equal(0n);
    });

    it("opens bob's and carol's 5 ETH longs, one round for both", async () => {
      const a = await hre.run("position:open", { account: "2", market: "ETH", size: "5", slippageBps: "100", from: BOB });
      const b = await hre.run("position:open", { account: "3", market: "ETH", size: "5", slippageBps: "0", deadlineSeconds: "60", from: CAROL });
      expect(a.acceptablePrice).to.equal(E18(18_685) / 10n); // 1,850 + 1 %
      expect(b.acceptablePrice).to.equal(E18(1_850));
      await hre.run("oracle:push", { asset: "ETH", price: "1850" });
      for (const id of [a.orderId, b.orderId]) {
        expect(await hre.run("order:execute", { id: String(id) })).to.deep.equal({ filled: true, price: E18(1_850) });
      }
      expect((await f.engine.position(2n, 0n)).size).to.equal(E18(5));
      expect((await f.engine.position(3n, 0n)).size).to.equal(E18(5));
    });

    it("an order the account cannot back is refused at the request: BelowInitialMargin, one line, nothing requested", async () => {
      const before = await f.engine.lastOrderId();
      const msg = await failure("position:open", { account: "1", market: "ETH", size: "100", from: ALICE });
      expect(msg).to.match(/^BelowInitialMargin: account 1 would have equity [\d,.]+ USD, below its initial margin [\d,.]+ USD: post more margin \(collateral:post\), trade a smaller size, or reduce with position:close \(reduce-only, needs no margin\)$/);
      expect(await f.engine.lastOrderId()).to.equal(before);
    });

    it("mistakes: unknown market, bad size, side, slippage, deadline, both prices, unknown order, no reserve for the fee", async () => {
      const base = { account: "1", market: "ETH", size: "1", from: ALICE };
      expect(await failure("position:open", { ...base, market: "SOL" })).to.equal('unknown market "SOL": use one of ETH, BTC');
      expect(await failure("position:open", { account: "1", size: "1", from: ALICE })).to.equal("--market is required, e.g. --market ETH");
      expect(await failure("position:open", { account: "1", market: "ETH", from: ALICE })).to.equal("--size is required, e.g. --size 1.5");
      expect(await failure("order:execute", {})).to.equal("--id is required, e.g. --id 3");
      expect(await failure("position:open", { ...base, size: "0" })).to.equal('--size "0" is zero: give a positive number');
      expect(await failure("position:open", { ...base, size: "-1" })).to.equal('--size "-1" is negative: give a positive number');
      expect(await failure("position:open", { ...base, side: "up" })).to.equal('--side "up": use long or short');
      expect(await failure("position:open", { ...base, slippageBps: "10001" })).to.equal("--slippage-bps 10001 is too large: at most 10000");
      expect(await failure("position:open", { ...base, slippageBps: "1", acceptablePrice: "2000" })).to.equal(
        "give --slippage-bps or --acceptable-price, not both",
      );
      expect(await failure("position:open", { ...base, deadlineSeconds: "86401" })).to.equal(
        "--deadline-seconds 86401 is too large: at most 86400",
      );
      expect(await failure("position:open", { ...base, deadlineSeconds: "0" })).to.equal("--deadline-seconds 0: give 1 to 86400 seconds");
      expect(await failure("position:close", { ...base, market: "BTC" })).to.equal("account 1 has no BTC position: nothing to close");
      expect(await failure("position:open", { ...base, from: BOB })).to.equal(
        `NotAuthorized: ${f.bob.address} is not the owner or an operator of account 1: run it --from the account's owner`,
      );
      expect(await failure("order:execute", { id: "999" })).to.equal(
        "OrderNotFound: order 999 is not pending (never requested, or already filled or cancelled)",
      );
      // dave's account has no USDC reserve for the order fee
      expect(await hre.run("account:create", { from: DAVE })).to.equal(4n);
      expect(await failure("position:open", { ...base, account: "4", from: DAVE })).to.equal(
        `InsufficientReserve: account 4 has 0 USDC in reserve, 0.5 USDC needed: deposit more with collateral:deposit or release margin with collateral:release`,
      );
    });

    it("--wait polls until a keeper settles the order, and gives up after --timeout", async () => {
      const before = await f.engine.lastOrderId();
      let settled = false;
      const waiting = hre.run("position:close", { account: "1", market: "ETH", wait: true, timeout: "30", from: ALICE });
      waiting.then(() => (settled = true), () => (settled = true));
      const giveUp = Date.now() + 20_000;
      while ((await f.engine.lastOrderId()) === before) {
        if (settled || Date.now() > giveUp) return expect(await waiting, "position:close ended without a request").to.equal("an order");
        await new Promise((r) => setTimeout(r, 50));
      }
      const id = before + 1n;
      const o = await f.engine.order(id);
      expect([o.sizeDelta, o.reduceOnly]).to.deep.equal([-E18(3) / 2n, true]);
      expect(o.acceptablePrice).to.equal((E18(1_850) * 9_950n) / 10_000n);
      await hre.run("oracle:push", { asset: "WETH", price: "1860" });
      await hre.run("order:execute", { id: String(id), from: KEEPER });
      const out = await waiting;
      expect(out.orderId).to.equal(id);
      expect(out.outcome).to.deep.equal({ filled: true, price: E18(1_860) });
      expect((await f.engine.position(1n, 0n)).size).to.equal(0n);

      const msg = await failure("position:open", { account: "1", market: "ETH", size: "0.5", wait: true, timeout: "1", from: ALICE });
      const pending = await f.engine.lastOrderId();
      expect(msg).to.equal(
        `order ${pending} is still pending after 1 s: a keeper fills it at the next oracle round (order:execute --id ${pending})`,
      );
      await hre.run("oracle:push", { asset: "WETH", price: "1850" });
      expect(await hre.run("order:execute", { id: String(pending) })).to.deep.equal({ filled: true, price: E18(1_850) });
      expect((await f.engine.position(1n, 0n)).size).to.equal(E18(1) / 2n);
    });
  });

  describe("policy:set, policy:show, account:status, rebalance, liquidate", () => {
    it("policy:set writes the policy exactly; policy:show reads it back", async () => {
      await hre.run("policy:set", {
        account: "2", trigger: "1.6", target: "2", release: "3", actions: "top-up,reduce,release", assets: "USDC,WETH",
        maxFee: "50", cooldown: "0", from: BOB,
      });
      const p = await f.engine.rebalancePolicy(2n);
      expect([p.actions, p.cooldown, p.triggerRatio, p.targetRatio, p.releaseRatio, p.maxFeeUsd]).to.deep.equal([
        BigInt(ACTION.ALL), 0n, E18(16) / 10n, E18(2), E18(3), E18(50),
      ]);
      expect(p.topUpAssets).to.deep.equal([await f.usdc.getAddress(), await f.weth.getAddress()]);
      expect(await hre.run("policy:show", { account: "2" })).to.equal(
        "account 2: TOP_UP+REDUCE+RELEASE, trigger 1.600, target 2.000, release 3.000, max fee 50.00 USD, cooldown 0 s, assets USDC,WETH",
      );
      expect(await hre.run("policy:show", { account: "3" })).to.equal("account 3: no rebalancing policy (policy:set opts in)");
    });

    it("policy:set --actions none opts out", async () => {
      await hre.run("policy:set", { account: "1", trigger: "1.3", target: "1.6", from: ALICE });
      expect((await f.engine.rebalancePolicy(1n)).actions).to.equal(BigInt(ACTION.TOP_UP | ACTION.REDUCE));
      await hre.run("policy:set", { account: "1", actions: "none", from: ALICE });
      const p = await f.engine.rebalancePolicy(1n);
      expect([p.actions, p.triggerRatio, p.topUpAssets.length]).to.deep.equal([0n, 0n, 0n]);
    });

    it("policy mistakes: unknown action, missing ratios, the engine's Policy* rules", async () => {
      const base = { account: "1", trigger: "1.6", target: "2", from: ALICE };
      expect(await failure("policy:set", { ...base, actions: "top-up,hedge" })).to.equal(
        '--actions: unknown action "hedge", use top-up, reduce, release, reduce-first (comma-separated) or none',
      );
      expect(await failure("policy:set", { account: "1", target: "2", from: ALICE })).to.equal("--trigger is required, e.g. --trigger 1.6");
      expect(await failure("policy:set", { ...base, trigger: "1.6.1" })).to.equal('--trigger "1.6.1" is not a decimal number: write it like 1.5 or 250');
      expect(await failure("policy:set", { ...base, target: "1.62" })).to.equal(
        "PolicyBandTooNarrow: ratios 1.600 and 1.620 are closer than 0.050: keep --target ≥ --trigger + 0.050 and --release ≥ --target + 0.050",
      );
      expect(await failure("policy:set", { ...base, trigger: "1" })).to.equal("PolicyTriggerTooLow: --trigger 1.000 must be above 1");
      expect(await failure("policy:set", { ...base, trigger: "1.6000001" })).to.equal(
        "PolicyRatioPrecision: ratio 1.6000001 has more than 6 decimals: give --trigger, --target and --release to at most 6 decimals",
      );
      expect(await failure("policy:set", { ...base, release: "16.5" })).to.equal("PolicyReleaseTooHigh: --release 16.500 is above the maximum 16.000");
      expect(await failure("policy:set", { ...base, actions: "release" })).to.equal(
        "PolicyReleaseRatioMissing: the release action needs a release ratio: give --release (≥ target + 0.05)",
      );
      expect(await failure("policy:set", { ...base, assets: "USDC,usdc" })).to.equal(
        "PolicyDuplicateAsset: USDC is given twice in --assets: list each asset once",
      );
      expect(await failure("policy:set", { ...base, assets: "USDC,PEPE" })).to.equal('unknown asset "PEPE": use one of USDC, WETH, WBTC');
      expect(await failure("policy:set", { ...base, maxFee: "1000.01" })).to.equal(
        "PolicyFeeTooHigh: --max-fee 1,000.01 USD is above the maximum 1,000.00 USD",
      );
      expect(await failure("policy:set", { ...base, account: "2", from: ALICE })).to.equal(
        `NotAuthorized: ${f.alice.address} is not the owner or an operator of account 2: run it --from the account's owner`,
      );
    });

    it("account:status shows the valuation, positions, balances, policy, pending orders and the next rebalance", async () => {
      const st = await hre.run("account:status", { account: "2" });
      const s = await f.engine.accountState(2n);
      expect([st.equity, st.maintenanceMargin, st.initialMargin, st.health]).to.deep.equal([
        s.equity, s.maintenanceMargin, s.initialMargin, s.health,
      ]);
      expect(st.owner).to.equal(f.bob.address);
      expect(st.positions).to.deep.equal([{ market: "ETH", size: E18(5), entryPrice: E18(1_850) }]);
      expect(st.balances).to.deep.equal([
        { asset: "USDC", reserve: await f.vault.reserveOf(2n, f.usdc), margin: await f.vault.marginOf(2n, f.usdc) },
        { asset: "WETH", reserve: 0n, margin: 0n },
        { asset: "WBTC", reserve: 0n, margin: 0n },
      ]);
      expect(st.policyActions).to.equal(ACTION.ALL);
      expect(st.pendingOrders).to.deep.equal([]);
      // 2,000 USDC of margin for 9,250 USD of ETH: health far above the release ratio 3
      expect(s.health).to.be.gt(E18(3));
      expect(st.rebalance).to.deep.equal({ needed: true, status: "Ready", action: ACTION.RELEASE });
      const pending = await hre.run("position:open", { account: "2", market: "ETH", size: "0.1", side: "short", from: BOB });
      expect((await hre.run("account:status", { account: "2" })).pendingOrders).to.deep.equal([pending.orderId]);
      await hre.run("oracle:push", { asset: "WETH", price: "1850" });
      expect(await hre.run("order:execute", { id: String(pending.orderId) })).to.deep.equal({ filled: true, price: E18(1_850) });
      expect(await failure("account:status", { account: "0" })).to.equal(
        "account 0 does not exist (accounts are 1..4): create one with account:create",
      );
    });

    /** bob's USDC reserve and margin, and the keeper's rewards, to compare a rebalance's event with. */
    const balances = async () => ({
      reserve: await f.vault.reserveOf(2n, f.usdc),
      margin: await f.vault.marginOf(2n, f.usdc),
      rewards: await f.engine.keeperRewardsOf(f.keeper.address),
    });

    it("rebalance releases account 2's excess margin to its reserve, down to IM", async () => {
      const before = await balances();
      expect(await hre.run("rebalance", { accounts: "2", from: KEEPER })).to.deep.equal([
        { accountId: 2n, rebalanced: true, detail: "RELEASE" },
      ]);
      const [ev] = await f.rebalancer.queryFilter(f.rebalancer.filters.Rebalanced(2n), -1);
      const after = await balances();
      const released = after.reserve - before.reserve;
      expect(ev.args.action).to.equal(BigInt(ACTION.RELEASE));
      expect(released * 10n ** 12n).to.equal(ev.args.releasedUsd); // USDC counts 1:1
      expect((after.rewards - before.rewards) * 10n ** 12n).to.equal(ev.args.feeUsd);
      expect(before.margin - after.margin).to.equal(released + (after.rewards - before.rewards));
      const s = await f.engine.accountState(2n);
      expect(s.equity).to.be.gte(BigInt(s.initialMargin));
      expect(s.equity - BigInt(s.initialMargin)).to.be.lt(E18(1)); // released down to IM (plus rounding)
    });

    it("rebalance tops account 2 up after a fall; a list uses rebalanceBatch and names the skipped", async () => {
      expect(await failure("rebalance", { accounts: "2" })).to.equal(
        "NothingToRebalance: the account needs no rebalance now (inside its band, in cooldown, or nothing its policy allows would help): account:status shows why",
      );
      expect(await failure("rebalance", { accounts: "3" })).to.equal("NotOptedIn: account 3 has no rebalancing policy: set one with policy:set");
      // the price at which bob's health is about 1.3 (between 1 and its trigger 1.6): E − Δ·size = 1.3 · MM
      const s = await f.engine.accountState(2n);
      const size = (await f.engine.position(2n, 0n)).size;
      const mmRate = ((BigInt(s.maintenanceMargin) - E18(5)) * E18(1)) / BigInt(s.notional);
      const p0 = E18(1_850);
      // E − size·(p0 − P) = 1.3·(size·P·mmRate + 5)  →  P = (size·p0 − E + 6.5) / (size − 1.3·size·mmRate)
      const num = (size * p0) / E18(1) - BigInt(s.equity) + E18(65) / 10n;
      const den = size - (13n * size * mmRate) / E18(10);
      const price = (num * E18(1)) / den / E18(1);
      await hre.run("oracle:push", { asset: "WETH", price: String(price) });
      const h = (await f.engine.accountState(2n)).health;
      expect(h).to.be.gt(E18(1)).and.lt(E18(16) / 10n);
      const st = await hre.run("account:status", { account: "2" });
      expect(st.rebalance).to.deep.equal({ needed: true, status: "Ready", action: ACTION.TOP_UP });

      const before = await balances();
      const out = await hre.run("rebalance", { accounts: "2, 3", from: KEEPER });
      expect(out).to.deep.equal([
        { accountId: 2n, rebalanced: true, detail: "TOP_UP" },
        { accountId: 3n, rebalanced: false, detail: "NotOptedIn" },
      ]);
      const [ev] = await f.rebalancer.queryFilter(f.rebalancer.filters.Rebalanced(2n), -1);
      const after = await balances();
      const topUp = before.reserve - after.reserve;
      expect(topUp * 10n ** 12n).to.equal(ev.args.toppedUpUsd);
      const fee = after.rewards - before.rewards;
      expect(fee * 10n ** 12n).to.equal(ev.args.feeUsd);
      expect(after.margin - before.margin).to.equal(topUp - fee);
      expect(ev.args.healthBefore).to.be.gt(E18(1)).and.lt(E18(16) / 10n); // a block later than the view of h (funding moved it)
      expect(ev.args.healthAfter).to.be.gte(E18(2));
    });

    it("liquidate: refuses a healthy account and one its reserve can rescue, liquidates carol's below health 1", async () => {
      expect(await failure("liquidate", { account: "3" })).to.match(
        /^NotLiquidatable: account 3 is not liquidatable: its health \d+\.\d{3} is not below 1$/,
      );
      expect(await failure("rebalance", { accounts: "2,2" })).to.equal("--accounts lists an account twice: list each once");
      await hre.run("oracle:push", { asset: "WETH", price: "1440" });
      expect((await f.engine.accountState(3n)).health).to.be.lt(E18(1) / 2n);
      expect(await f.engine.rescueAvailable(2n)).to.equal(true);
      expect(await failure("liquidate", { account: "2" })).to.equal(
        "RescueAvailable: account 2 can be rescued from its own reserve, which comes before liquidation: rebalance it (rebalance --accounts 2)",
      );
      const rewards = await f.engine.keeperRewardsOf(f.keeper.address);
      const out = await hre.run("liquidate", { account: "3", from: KEEPER });
      expect(out.fraction).to.equal(E18(1)); // below fullLiquidationHealth 0.5: everything
      expect((await f.engine.position(3n, 0n)).size).to.equal(0n);
      expect((await f.engine.keeperRewardsOf(f.keeper.address)) - rewards).to.equal(out.keeperPaid / 10n ** 12n);
      // and bob's reserve rescues his account
      expect(await hre.run("rebalance", { accounts: "2", from: KEEPER })).to.deep.equal([
        { accountId: 2n, rebalanced: true, detail: "TOP_UP" },
      ]);
      expect((await f.engine.accountState(2n)).health).to.be.gte(E18(2));
    });

    it("collateral:release refuses to leave an account with positions below its initial margin", async () => {
      const s = await f.engine.accountState(2n);
      expect(BigInt(s.equity)).to.be.lt(BigInt(s.initialMargin)); // topped up to health 2, below IM
      const margin = await f.vault.marginOf(2n, f.usdc);
      expect(await failure("collateral:release", { account: "2", asset: "USDC", amount: "1", from: BOB })).to.match(
        /^BelowInitialMargin: account 2 would have equity [\d,]+\.\d\d USD, below its initial margin [\d,]+\.\d\d USD: post more margin \(collateral:post\), trade a smaller size, or reduce with position:close \(reduce-only, needs no margin\)$/,
      );
      expect(await f.vault.marginOf(2n, f.usdc)).to.equal(margin);
    });
  });

  describe("markets:list and oracle:push", () => {
    it("markets:list reports each market's price and open interest", async () => {
      const out = await hre.run("markets:list", {});
      expect(out).to.deep.equal([
        { symbol: "ETH", id: 0, price: E18(1_440), longOI: E18(49) / 10n + E18(1) / 2n, shortOI: 0n },
        { symbol: "BTC", id: 1, price: E18(30_000), longOI: 0n, shortOI: 0n },
      ]);
    });

    it("oracle:push refuses a price finer than the feed and an unknown feed; accepts a market symbol", async () => {
      expect(await failure("oracle:push", { asset: "WETH", price: "1850.000000001" })).to.equal(
        '--price "1850.000000001" has 9 decimals, at most 8 allowed: round it to 8 decimals',
      );
      expect(await failure("oracle:push", { asset: "USDC", price: "1" })).to.equal('no feed for "USDC": use one of WETH, WBTC');
      const out = await hre.run("oracle:push", { asset: "btc", price: "30100.5" });
      expect(out.answer).to.equal(3_010_050_000_000n);
      expect((await f.btcFeed.latestRoundData())[1]).to.equal(3_010_050_000_000n);
    });

    it("oracle:push and --wait refuse a network that is not local", async () => {
      const lastOrder = await f.engine.lastOrderId();
      const provider = hre.ethers.provider;
      const original = provider.getNetwork.bind(provider);
      provider.getNetwork = async () => new Network("sepolia", 11155111n);
      try {
        expect(await failure("oracle:push", { asset: "WETH", price: "1850" })).to.equal(
          'oracle:push runs on local networks only (chain id 31337); "hardhat" is chain 11155111',
        );
        expect(await failure("position:open", { account: "1", market: "ETH", size: "1", wait: true, from: ALICE })).to.equal(
          '--wait runs on local networks only (chain id 31337); "hardhat" is chain 11155111',
        );
        expect(await failure("position:close", { account: "1", market: "ETH", wait: true, from: ALICE })).to.equal(
          '--wait runs on local networks only (chain id 31337); "hardhat" is chain 11155111',
        );
      } finally {
        provider.getNetwork = original;
      }
      expect((await f.ethFeed.latestRoundData())[1]).to.equal(1440n * 10n ** 8n);
      expect(await f.engine.lastOrderId()).to.equal(lastOrder);
    });
  });

  describe("deployment mistakes", () => {
    it("a missing deployment names the file and the deploy command", async () => {
      const empty = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-empty-"));
      process.env.BALLAST_DEPLOYMENTS_DIR = empty;
      try {
        expect(await failure("account:create", {})).to.equal(
          `no deployment for network "hardhat" (${path.join(empty, "hardhat.json")}): run \`npx hardhat deploy --network hardhat\` first`,
        );
      } finally {
        process.env.BALLAST_DEPLOYMENTS_DIR = dir;
      }
    });

    it("a record pointing at no contract, or at another chain, is stale", async () => {
      const stale = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-stale-"));
      const nowhere = "0x000000000000000000000000000000000000dEaD";
      saveDeployment({ ...rec, engine: nowhere }, stale);
      process.env.BALLAST_DEPLOYMENTS_DIR = stale;
      try {
        expect(await failure("markets:list", {})).to.equal(
          `no engine at ${nowhere} on network "hardhat": the deployment record is stale (a restarted node?), redeploy (npx hardhat deploy --network hardhat)`,
        );
        saveDeployment({ ...rec, chainId: 1 }, stale);
        expect(await failure("markets:list", {})).to.equal(
          'the deployment of "hardhat" is for chain 1, but the network is chain 31337: redeploy (npx hardhat deploy --network hardhat)',
        );
      } finally {
        process.env.BALLAST_DEPLOYMENTS_DIR = dir;
      }
    });

    it("from the command line a mistake is one line on stderr and exit code 1, no stack trace", async function () {
      this.timeout(120_000);
      const empty = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-cli-"));
      const { code, stderr } = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = execFile(
          "npx",
          ["hardhat", "account:status", "--account", "1"],
          { cwd: path.resolve(__dirname, "..", ".."), env: { ...process.env, BALLAST_DEPLOYMENTS_DIR: empty, BALLAST_TASKS_QUIET: "", CI: "" } },
          (_err, _stdout, stderrText) => resolve({ code: child.exitCode, stderr: stderrText }),
        );
      });
      expect(code).to.equal(1);
      expect(stderr.trim()).to.equal(
        `Error: no deployment for network "hardhat" (${path.join(empty, "hardhat.json")}): run \`npx hardhat deploy --network hardhat\` first`,
      );
    });
  });
});
