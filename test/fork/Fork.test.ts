/**
 * Forked-mainnet tests (README "Forked-mainnet tests"). One suite, two upstreams (test/fork/upstream.ts): mainnet at
 * FORK_BLOCK when MAINNET_RPC_URL is set, otherwise a local mainnet replica (a `hardhat node` child with chain id 1,
 * seeded by lib/fork/replica.ts) — forked the same way, over JSON-RPC. With MAINNET_RPC_URL unset nothing here
 * touches the network.
 *
 * In process: hardhat_reset forks the upstream, Ballast is deployed with the mainnet parameters by deployBallast,
 * accounts are funded from holders by impersonation, positions open through two-step orders, the ETH price moves by
 * moving the ETH/USD proxy to a test aggregator through its owner; a top-up, a reduce and a liquidation are checked
 * to the unit against the bigint mirrors of test/helpers. Then the keeper runs as a separate process (`npm run
 * keeper`) against a `hardhat node --fork` child and rebalances in the block after a price push.
 * `after` stops every child process group and resets the in-process network to its configured, unforked state, so
 * the rest of `npm test` runs as if this file had not.
 */
import { expect } from "chai";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { Contract, HDNodeWallet, JsonRpcProvider, JsonRpcSigner, type Signer } from "ethers";
import { ethers, network } from "hardhat";

import { ACTION, DEFAULT_RISK, NARROW_POLICY } from "../../deploy/params";
import { NETWORKS } from "../../deploy/networks";
import { DECIMALS, FEEDS, FORK_BLOCK, TOKENS, UNISWAP } from "../../lib/fork/mainnet";
import { ROUND_FILES, readRounds, sqrtPriceX96, type Round } from "../../lib/fork/replica";
import { fillAtNextRound } from "../../lib/orders";
import { collateralSale } from "../../lib/margin";
import { deployUniswapV3TestHelper, quoteExactOutput } from "../../lib/uniswapV3";
import { ERC20__factory, FlashLiquidator__factory, ForkAggregatorProxy__factory, IUniswapV3PoolMinimal__factory, type MockAggregator } from "../../typechain-types";
import { liquidationFraction } from "../helpers/marginMath";
import { expectedFee, planRestore } from "../helpers/rebalance";
import http from "node:http";
import { runScript, startBackground, stop, waitFor, type Ran } from "../e2e/runbook";
import { ROOT, forkInProcess, nodeEnv, restoreInProcess, startForkNode, startUpstream, type Upstream } from "./upstream";
import {
  USDC,
  WAD,
  alignVolGrid,
  connect,
  deploy,
  fundUsdc,
  fundingOff,
  movePoolDownTo,
  pushEth,
  takeOverEthFeed,
  usdcReserve,
  type Ballast,
  type ForkChain,
} from "./world";

const GWEI = 10n ** 9n;
const ORDER_FEE = NETWORKS.mainnet.keeper.orderFee; // 10 USDC on Ethereum
const ETH_MARKET = NETWORKS.mainnet.markets.find((m) => m.symbol === "ETH")!.params;
const POLICY = { ...NARROW_POLICY, topUpAssets: [TOKENS.USDC] }; // TOP_UP | REDUCE, trigger 1.3 → target 1.6

/** The data's round in effect at `t`: the last one with updatedAt <= t. */
function roundAt(rounds: Round[], t: number): [Round, Round] {
  let i = rounds.length - 1;
  while (rounds[i].updatedAt > BigInt(t)) i--;
  return [rounds[i], rounds[i - 1]];
}
const asTuple = (r: Round) => [r.roundId, r.answer, r.startedAt, r.updatedAt, r.roundId];

/** Trading fee of `size` at `price` (WAD) in USDC units, rounded up as the engine books it against the account. */
const tradeFeeUsdc = (size: bigint, price: bigint) => (((size * price) / WAD) * ETH_MARKET.feeRate + WAD * 10n ** 12n - 1n) / (WAD * 10n ** 12n);

describe("forked mainnet: Ballast against mainnet's contracts (local replica, or MAINNET_RPC_URL)", function () {
  this.timeout(600_000);

  let tmp: string;
  let up: Upstream | undefined;
  const children: ChildProcess[] = [];
  const providers: JsonRpcProvider[] = [];
  const log = (l: string) => console.log(`      ${l}`);

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-fork-"));
    up = await startUpstream(tmp, log);
  });

  after(async () => {
    for (const c of children.reverse()) await stop(c, "SIGTERM");
    for (const p of providers) p.destroy();
    // the in-process network back to its configured, unforked state (and fixtures' snapshots forgotten)
    await restoreInProcess();
    if (up) await up.stop();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  describe("in process (hardhat_reset forking the upstream)", () => {
    const chain: ForkChain = { provider: ethers.provider, signerOf: (a) => ethers.getSigner(a) };
    let owner: Signer, lp: Signer, alice: Signer, bob: Signer, carol: Signer, keeper: Signer;
    let b: Ballast;
    let agg: MockAggregator;
    let p0: bigint; // the ETH/USD answer at the fork (8 decimals), where the positions open
    const ids: Record<"a" | "b" | "c", bigint> = { a: 0n, b: 0n, c: 0n };

    before(async () => {
      await forkInProcess(up!.url, up!.block);
      [owner, lp, alice, bob, carol, keeper] = await ethers.getSigners();
    });

    it("serves mainnet's tokens, Chainlink proxies (real rounds of data/) and Uniswap V3 pool at their addresses", async () => {
      expect(await network.provider.send("hardhat_metadata", [])).to.have.nested.property("forkedNetwork.forkBlockNumber", up!.block);
      expect(up!.block).to.equal(process.env.FORK_BLOCK ? Number(process.env.FORK_BLOCK) : FORK_BLOCK);
      const forkTime = (await ethers.provider.getBlock(up!.block))!.timestamp;
      for (const [sym, file, desc] of [["WETH", ROUND_FILES.WETH, "ETH / USD"], ["WBTC", ROUND_FILES.WBTC, "BTC / USD"]] as const) {
        const proxy = ForkAggregatorProxy__factory.connect(FEEDS[sym], ethers.provider);
        // mainnet: what the real feed had published at the fork block; the replica: what it had when seeded
        const rounds = readRounds(file);
        const [latest, previous] = roundAt(rounds, up!.mode === "replica" ? Number((sym === "WETH" ? up!.replica!.eth : up!.replica!.btc).updatedAt) : forkTime);
        // the round the real feed had published at the fork block, and its predecessor (phase-aware ids, phase 6)
        expect(await proxy.latestRoundData()).to.deep.equal(asTuple(latest));
        expect(await proxy.getRoundData(previous.roundId)).to.deep.equal(asTuple(previous));
        expect(await proxy.phaseId()).to.equal(6n);
        expect([await proxy.decimals(), await proxy.description(), await proxy.version()]).to.deep.equal([8n, desc, 4n]);
      }
      for (const sym of ["USDC", "WETH", "WBTC"] as const) {
        const t = ERC20__factory.connect(TOKENS[sym], ethers.provider);
        expect([await t.symbol(), await t.decimals()]).to.deep.equal([sym, BigInt(DECIMALS[sym])]);
      }
      const factory = new Contract(UNISWAP.factory.address, ["function getPool(address,address,uint24) view returns (address)"], ethers.provider);
      expect(await factory.getPool(TOKENS.WETH, TOKENS.USDC, 500)).to.equal(UNISWAP.wethUsdc500);
      const pool = new Contract(UNISWAP.wethUsdc500, [
        "function token0() view returns (address)", "function token1() view returns (address)", "function fee() view returns (uint24)",
        "function liquidity() view returns (uint128)", "function slot0() view returns (uint160,int24,uint16,uint16,uint16,uint8,bool)",
      ], ethers.provider);
      expect([await pool.token0(), await pool.token1(), await pool.fee()]).to.deep.equal([TOKENS.USDC, TOKENS.WETH, 500n]);
      expect(await pool.liquidity()).to.be.gt(0n);
      if (up!.mode === "replica") {
        // the replica's pool was initialised at the replayed ETH/USD answer and nothing has traded since
        expect((await pool.slot0())[0]).to.equal(sqrtPriceX96(up!.replica!.eth.answer));
      }
    });

    it("swaps 1 WETH for USDC through the SwapRouter and the WETH/USDC 0.05 % pool", async () => {
      const weth = new Contract(TOKENS.WETH, ["function deposit() payable", "function approve(address,uint256) returns (bool)", "function balanceOf(address) view returns (uint256)"], alice);
      await (await weth.deposit({ value: WAD })).wait();
      await (await weth.approve(UNISWAP.swapRouter.address, WAD)).wait();
      const router = new Contract(UNISWAP.swapRouter.address, [
        "function exactInputSingle((address tokenIn,address tokenOut,uint24 fee,address recipient,uint256 deadline,uint256 amountIn,uint256 amountOutMinimum,uint160 sqrtPriceLimitX96)) payable returns (uint256)",
      ], alice);
      const usdc = ERC20__factory.connect(TOKENS.USDC, ethers.provider);
      const who = await alice.getAddress();
      const [u0, poolU0, poolW0] = [await usdc.balanceOf(who), await usdc.balanceOf(UNISWAP.wethUsdc500), await weth.balanceOf(UNISWAP.wethUsdc500)];
      const args = { tokenIn: TOKENS.WETH, tokenOut: TOKENS.USDC, fee: 500, recipient: who, deadline: 2n ** 40n, amountIn: WAD, amountOutMinimum: 0n, sqrtPriceLimitX96: 0n };
      const out: bigint = await router.exactInputSingle.staticCall(args);
      await (await router.exactInputSingle(args)).wait();
      // what the router quoted is what Alice got and what left the pool; the pool got exactly 1 WETH
      expect(await usdc.balanceOf(who)).to.equal(u0 + out);
      expect(await usdc.balanceOf(UNISWAP.wethUsdc500)).to.equal(poolU0 - out);
      expect(await weth.balanceOf(UNISWAP.wethUsdc500)).to.equal(poolW0 + WAD);
      // within the 0.05 % fee and a little price impact of the ETH/USD round the pool sits at (replica: initialised there)
      const [latest] = await ForkAggregatorProxy__factory.connect(FEEDS.WETH, ethers.provider).latestRoundData().then((r) => [r[1]]);
      if (up!.mode === "replica") expect(out).to.be.within((latest / 100n) * 9_980n / 10_000n, latest / 100n);
    });

    it("deploys Ballast with the mainnet parameters through deployBallast (the `npx hardhat deploy` code path)", async () => {
      b = await deploy(chain, owner, tmp);
      expect(b.rec.assets).to.deep.equal({ USDC: TOKENS.USDC, WETH: TOKENS.WETH, WBTC: TOKENS.WBTC });
      expect(b.rec.feeds).to.deep.equal({ WETH: FEEDS.WETH, WBTC: FEEDS.WBTC });
      for (const a of NETWORKS.mainnet.assets) {
        const fp = await b.oracle.feedParams(TOKENS[a.symbol as "WETH" | "WBTC"]);
        expect([fp.feed, fp.heartbeat]).to.deep.equal([FEEDS[a.symbol as "WETH" | "WBTC"], BigInt(a.feedConfig!.heartbeat)]);
      }
      expect(await b.engine.marketCount()).to.equal(2n);
      expect((await b.engine.marketParams(b.ethMarket)).oiCapUsd).to.equal(ETH_MARKET.oiCapUsd);
      await fundingOff(b);
    });

    it("funds an LP and three traders from the USDC holder by impersonation; the LP deposits 250,000 USDC", async () => {
      const usdc = ERC20__factory.connect(TOKENS.USDC, ethers.provider);
      const people = [lp, alice, bob, carol];
      const before = await Promise.all(people.map(async (s) => usdc.balanceOf(await s.getAddress())));
      const amounts = [USDC(250_000), USDC(10_000), USDC(10_000), USDC(10_000)];
      await fundUsdc(chain, await Promise.all(people.map(async (s, i) => [await s.getAddress(), amounts[i]] as [string, bigint])));
      for (let i = 0; i < people.length; i++) expect(await usdc.balanceOf(await people[i].getAddress())).to.equal(before[i] + amounts[i]);
      await (await usdc.connect(lp).approve(b.rec.pool, USDC(250_000))).wait();
      await (await b.pool.connect(lp).deposit(USDC(250_000), await lp.getAddress())).wait();
      expect(await b.pool.totalAssets()).to.equal(USDC(250_000));
    });

    it("moves the ETH/USD proxy to a test aggregator through its owner (propose + confirm): the next phase", async () => {
      const proxy = ForkAggregatorProxy__factory.connect(FEEDS.WETH, ethers.provider);
      const [oldId, oldAnswer, , oldAt] = await proxy.latestRoundData();
      // a stranger cannot (the real proxy's string, the stand-in's named error)
      const stranger = proxy.connect(alice);
      if (up!.mode === "mainnet") await expect(stranger.proposeAggregator(await alice.getAddress())).to.be.revertedWith("Only callable by owner");
      else await expect(stranger.proposeAggregator(await alice.getAddress())).to.be.revertedWithCustomError(proxy, "OnlyOwner").withArgs(await alice.getAddress());
      let phaseBefore: bigint;
      ({ agg, answer: p0, phaseBefore } = await takeOverEthFeed(chain, owner));
      expect(p0).to.equal(oldAnswer);
      expect(await proxy.aggregator()).to.equal(await agg.getAddress());
      expect(await proxy.phaseId()).to.equal(phaseBefore + 1n);
      const [newId, answer] = await proxy.latestRoundData();
      expect([newId, answer]).to.deep.equal([((phaseBefore + 1n) << 64n) | 1n, p0]);
      // the old phase's rounds are still served under their phase-aware ids
      expect((await proxy.getRoundData(oldId)).slice(0, 4)).to.deep.equal([oldId, oldAnswer, (await proxy.getRoundData(oldId))[2], oldAt]);
      await alignVolGrid(chain, b, agg, p0);
      const [sigma, sigmaMm] = await b.oracle.volatilities(TOKENS.WETH);
      expect(sigma).to.equal(sigmaMm); // nothing drifts between blocks: exact values below
    });

    it("opens three 8 ETH longs through two-step orders, filled at the first round after each request", async () => {
      const price = p0 * 10n ** 10n;
      const setups: [keyof typeof ids, Signer, bigint, bigint][] = [["a", alice, USDC(5_000), USDC(3_000)], ["b", bob, USDC(5_000), USDC(20)], ["c", carol, USDC(4_000), USDC(20)]];
      for (const [k, who, margin, reserve] of setups) {
        const usdc = ERC20__factory.connect(TOKENS.USDC, who);
        await (await usdc.approve(b.rec.engine, margin + reserve)).wait();
        await (await b.vault.connect(who).createAccount()).wait();
        const id = await b.vault.accountCount();
        ids[k] = id;
        await (await b.vault.connect(who).depositMargin(id, TOKENS.USDC, margin)).wait();
        await (await b.vault.connect(who).deposit(id, TOKENS.USDC, reserve)).wait();
        const fill = await fillAtNextRound(b.engine, who, keeper, agg, { accountId: id, marketId: b.ethMarket, sizeDelta: 8n * WAD });
        expect(fill.price).to.equal(price);
        const pos = await b.engine.position(id, b.ethMarket);
        expect([pos.size, pos.entryPrice]).to.deep.equal([8n * WAD, price]);
        expect(await b.vault.reserveOf(id, TOKENS.USDC)).to.equal(reserve - ORDER_FEE);
        expect(await b.vault.marginOf(id, TOKENS.USDC)).to.equal(margin - tradeFeeUsdc(8n * WAD, price));
      }
      await (await b.engine.connect(alice).setRebalancePolicy(ids.a, POLICY)).wait();
      await (await b.engine.connect(bob).setRebalancePolicy(ids.b, { ...POLICY, actions: ACTION.REDUCE, topUpAssets: [] })).wait();
    });

    it("ETH falls below the trigger: a rebalance tops Alice up from her reserve and reduces Bob, to the unit", async () => {
      // down in steps of 0.5 % of the fork's price until health < 1.3 (Alice and Bob hold the same position and margin)
      let px = p0;
      for (;;) {
        px -= p0 / 200n;
        await pushEth(b, agg, px);
        if ((await b.engine.accountState(ids.a)).health < POLICY.triggerRatio) break;
      }
      const priceWad = px * 10n ** 10n;
      const R = DEFAULT_RISK.keeperReward;
      expect((await b.engine.accountState(ids.a)).health).to.be.gte(WAD);
      // not opted in / not liquidatable: the named errors
      await expect(b.rebalancer.connect(keeper).rebalance(ids.c)).to.be.revertedWithCustomError(b.rebalancer, "NotOptedIn").withArgs(ids.c);
      await expect(b.engine.connect(keeper).liquidate(ids.a)).to.be.revertedWithCustomError(b.engine, "NotLiquidatable");

      for (const [k, action] of [["a", ACTION.TOP_UP], ["b", ACTION.REDUCE]] as const) {
        const id = ids[k];
        const [inputs, closeFee] = await b.engine.rebalanceInputs(id);
        const reserves = k === "a" ? [await usdcReserve(b, id)] : [];
        await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x" + (10n * GWEI).toString(16)]);
        const fee = expectedFee(priceWad, POLICY.maxFeeUsd, 10n * GWEI);
        const plan = planRestore(POLICY.targetRatio, inputs, closeFee, fee, R, reserves);
        expect(plan.action).to.equal(action);
        const [margin0, reserve0] = [await b.vault.marginOf(id, TOKENS.USDC), await b.vault.reserveOf(id, TOKENS.USDC)];
        const size0 = (await b.engine.position(id, b.ethMarket)).size;
        const rc = (await (await b.rebalancer.connect(keeper).rebalance(id)).wait())!;
        const ev = rc.logs.map((l) => b.rebalancer.interface.parseLog(l)).find((e) => e?.name === "Rebalanced")!;
        expect([ev.args.accountId, ev.args.action, ev.args.toppedUpUsd, ev.args.reducedNotionalUsd, ev.args.feeUsd, ev.args.keeper]).to.deep.equal([
          id, BigInt(action), plan.toppedUpUsd, plan.reducedNotionalUsd, fee, await keeper.getAddress(),
        ]);
        expect(ev.args.healthAfter).to.be.gte(POLICY.targetRatio);
        if (k === "a") {
          expect(await b.vault.reserveOf(id, TOKENS.USDC)).to.equal(reserve0 - plan.amounts[0]);
          expect(await b.vault.marginOf(id, TOKENS.USDC)).to.equal(margin0 + plan.amounts[0] - fee / 10n ** 12n);
          expect((await b.engine.position(id, b.ethMarket)).size).to.equal(size0);
        } else {
          expect(await b.vault.reserveOf(id, TOKENS.USDC)).to.equal(reserve0);
          // every position reduced by the plan's fraction (the close rounded away from zero)
          expect((await b.engine.position(id, b.ethMarket)).size).to.equal(size0 - (size0 * plan.reduceFraction + WAD - 1n) / WAD);
        }
      }
    });

    it("ETH falls further: Carol (no policy) is liquidated by the fraction the mirror gives", async () => {
      let px = (await agg.latestRoundData())[1];
      for (;;) {
        px -= p0 / 200n;
        await pushEth(b, agg, px);
        if ((await b.engine.accountState(ids.c)).health < WAD) break;
      }
      const st = await b.engine.accountState(ids.c);
      const [, , mmNow] = await b.engine.rebalanceInputs(ids.c);
      const state = { collateral: st.collateral, settlement: st.settlement, unrealisedPnl: st.unrealisedPnl, equity: st.equity, notional: st.notional, maintenanceMargin: st.maintenanceMargin, initialMargin: st.initialMargin, health: st.health };
      const expected = liquidationFraction({ ...state, mmNow: mmNow === 0n ? st.maintenanceMargin : mmNow }, DEFAULT_RISK).f;
      expect(await b.engine.liquidationFraction(ids.c)).to.equal(expected);
      const size0 = (await b.engine.position(ids.c, b.ethMarket)).size;
      const rc = (await (await b.engine.connect(keeper).liquidate(ids.c)).wait())!;
      const ev = rc.logs.map((l) => b.engine.interface.parseLog(l)).find((e) => e?.name === "Liquidated")!;
      expect([ev.args.accountId, ev.args.liquidator, ev.args.fraction]).to.deep.equal([ids.c, await keeper.getAddress(), expected]);
      expect((await b.engine.position(ids.c, b.ethMarket)).size).to.equal(size0 - (size0 * expected + WAD - 1n) / WAD);
      await expect(b.engine.connect(keeper).liquidate(ids.c)).to.be.revertedWithCustomError(b.engine, "NotLiquidatable");
    });

    it("ETH falls 25 %: Dave (2 WETH of margin, a 5.4 ETH long) is liquidated; a keeper with no USDC sells his WETH through the deployed FlashLiquidator and the 0.05 % pool", async () => {
      // the FlashLiquidator the project's deploy put on the fork (step 11), over mainnet's factory and pool
      const flashAddress = b.rec.parts.flashLiquidator;
      expect(b.rec.parts.flashLiquidatorPool).to.equal(UNISWAP.wethUsdc500);
      const flash = FlashLiquidator__factory.connect(flashAddress, ethers.provider);
      expect([await flash.engine(), await flash.factory(), await flash.settlementAsset()]).to.deep.equal([b.rec.engine, UNISWAP.factory.address, TOKENS.USDC]);
      const weth = ERC20__factory.connect(TOKENS.WETH, ethers.provider);
      const usdc = b.usdc;
      const pool = IUniswapV3PoolMinimal__factory.connect(UNISWAP.wethUsdc500, ethers.provider);

      // Dave: 2 WETH (wrapped from ETH) of margin, the order fee in reserve, a 5.4 ETH long at the current round
      const [dave] = (await ethers.getSigners()).slice(6);
      const daveAddress = await dave.getAddress();
      await (await new Contract(TOKENS.WETH, ["function deposit() payable"], dave).deposit({ value: 2n * WAD })).wait();
      await fundUsdc(chain, [[daveAddress, ORDER_FEE]]);
      await (await weth.connect(dave).approve(b.rec.engine, 2n * WAD)).wait();
      await (await usdc.connect(dave).approve(b.rec.engine, ORDER_FEE)).wait();
      await (await b.vault.connect(dave).createAccount()).wait();
      const id = await b.vault.accountCount();
      await (await b.vault.connect(dave).depositMargin(id, TOKENS.WETH, 2n * WAD)).wait();
      await (await b.vault.connect(dave).deposit(id, TOKENS.USDC, ORDER_FEE)).wait();
      const pc = (await agg.latestRoundData())[1];
      const fill = await fillAtNextRound(b.engine, dave, keeper, agg, { accountId: id, marketId: b.ethMarket, sizeDelta: (54n * WAD) / 10n });
      expect(fill.price).to.equal(pc * 10n ** 10n);

      // the drop, through the proxy's (test) aggregator, in two rounds of 12.5 % (under the feed's 25 % jump guard);
      // a full liquidation leaves Dave owing USDC with his WETH
      await pushEth(b, agg, (pc * 7n) / 8n);
      await pushEth(b, agg, (pc * 3n) / 4n);
      // arbitrage moves the pool along: its price is the feed's now (the profit is the discount less fee and impact)
      const limit = await movePoolDownTo(chain, (pc * 3n) / 4n);
      expect((await pool.slot0()).sqrtPriceX96).to.equal(limit);
      expect((await b.engine.accountState(id)).health).to.be.lt(DEFAULT_RISK.fullLiquidationHealth);
      expect(await b.engine.liquidationFraction(id)).to.equal(WAD);
      await (await b.engine.connect(keeper).liquidate(id)).wait();
      expect(await b.engine.positionMask(id)).to.equal(0n);
      const st = await b.engine.accountState(id);
      expect(st.settlement).to.be.lt(0n);
      expect(await b.vault.marginOf(id, TOKENS.WETH)).to.equal(2n * WAD);

      // the sale, from the engine's views (lib/margin.ts collateralSale mirrors LiquidationLogic._quote): the debt in
      // USDC units rounded up, or all the WETH at oracle × (1 − discount) if that is less; WETH out rounded down
      const priceWad = await b.oracle.price(TOKENS.WETH);
      expect(priceWad).to.equal(((pc * 3n) / 4n) * 10n ** 10n);
      const discount = (await b.engine.riskParams()).collateralDiscount;
      expect(discount).to.equal(DEFAULT_RISK.collateralDiscount);
      const sale = collateralSale({ debtUsd: -st.settlement, available: 2n * WAD, priceWad, decimals: 18, collateralDiscount: discount, settlementScale: 10n ** 12n });
      expect(await flash.repayFor(id, TOKENS.WETH, 0n)).to.equal(sale.repay);
      // what the pool takes for exactly that USDC out, by its own arithmetic (a swap reverted in the helper's callback)
      const helper = await deployUniswapV3TestHelper(owner);
      const quote = await quoteExactOutput(helper, pool, TOKENS.USDC, sale.repay);
      expect(quote.amountOut).to.equal(sale.repay);
      const profit = sale.amountOut - quote.amountIn;
      expect(profit).to.be.gt(0n);
      log(`flash sale: repay ${sale.repay} USDC units, bought ${sale.amountOut} wei WETH, paid the pool ${quote.amountIn}, profit ${profit}`);

      // the keeper: a fresh key with gas and nothing else
      const k = HDNodeWallet.createRandom().connect(ethers.provider);
      await network.provider.send("hardhat_setBalance", [k.address, "0x" + WAD.toString(16)]);
      expect([await usdc.balanceOf(k.address), await weth.balanceOf(k.address)]).to.deep.equal([0n, 0n]);
      const params = { accountId: id, collateral: TOKENS.WETH, pool: UNISWAP.wethUsdc500, maxRepay: 0n, minProfit: profit + 1n, recipient: k.address, liquidateFirst: false };
      // one wei more than the pool leaves: the exact shortfall, named
      await expect(flash.connect(k).flashLiquidate(params)).to.be.revertedWithCustomError(flash, "InsufficientProfit").withArgs(profit, profit + 1n);

      const [engineU0, poolU0, poolW0] = [await usdc.balanceOf(b.rec.engine), await usdc.balanceOf(UNISWAP.wethUsdc500), await weth.balanceOf(UNISWAP.wethUsdc500)];
      const rc = (await (await flash.connect(k).flashLiquidate({ ...params, minProfit: profit })).wait())!;
      log(`flashLiquidate on the fork: ${rc.gasUsed} gas`);
      const ev = rc.logs.filter((l) => l.address === flashAddress).map((l) => flash.interface.parseLog(l)!).find((e) => e.name === "FlashLiquidation")!;
      expect([...ev.args]).to.deep.equal([id, k.address, k.address, UNISWAP.wethUsdc500, TOKENS.WETH, sale.repay, sale.amountOut, quote.amountIn, profit, 0n]);
      // the engine got the repay, the pool lent it and was paid in WETH, the keeper kept the rest and holds no USDC
      expect(await usdc.balanceOf(b.rec.engine)).to.equal(engineU0 + sale.repay);
      expect(await usdc.balanceOf(UNISWAP.wethUsdc500)).to.equal(poolU0 - sale.repay);
      expect(await weth.balanceOf(UNISWAP.wethUsdc500)).to.equal(poolW0 + quote.amountIn);
      expect([await weth.balanceOf(k.address), await usdc.balanceOf(k.address)]).to.deep.equal([profit, 0n]);
      // Dave: the repay credited (up to his debt), the WETH sold gone from his margin
      const credit = sale.repay * 10n ** 12n;
      expect((await b.engine.accountState(id)).settlement).to.equal(credit > -st.settlement ? 0n : st.settlement + credit);
      expect(await b.vault.marginOf(id, TOKENS.WETH)).to.equal(2n * WAD - sale.amountOut);
      // nothing stays in the FlashLiquidator: no token, no allowance
      expect([await usdc.balanceOf(flashAddress), await weth.balanceOf(flashAddress), await usdc.allowance(flashAddress, b.rec.engine)]).to.deep.equal([0n, 0n, 0n]);
    });
  });

  describe("npx hardhat fork:replica", () => {
    const task = (url: string) => runScript(`npx hardhat fork:replica --url ${url}`, { cwd: ROOT, env: nodeEnv(), timeoutMs: 120_000 });
    /** The task failed with `message` on one line and no stack trace. */
    const oneLine = (r: Ran, message: RegExp) => {
      expect(r.code, r.stdout + r.stderr).to.not.equal(0);
      expect(r.code).to.equal(1);
      expect(r.stderr.trim(), r.stdout + r.stderr).to.match(new RegExp(`^Error: [^\n]*${message.source}[^\n]*$`));
    };

    it("refuses a URL that is not a loopback address, and a node whose chain id is not 1, in one line each", async () => {
      oneLine(await task("https://eth.example.org"), /seeds only a local node .*not https:\/\/eth\.example\.org/);
      // a local JSON-RPC endpoint answering as Hardhat's default chain 31337
      const srv = http.createServer((req, res) => {
        let body = "";
        req.on("data", (d) => (body += d));
        req.on("end", () => {
          const { id, method } = JSON.parse(body);
          const result = method === "eth_chainId" ? "0x7a69" : method === "web3_clientVersion" ? "HardhatNetwork/2.29.1/@nomicfoundation/edr/0" : null;
          res.setHeader("content-type", "application/json");
          res.end(JSON.stringify({ jsonrpc: "2.0", id, result }));
        });
      });
      await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
      try {
        const port = (srv.address() as { port: number }).port;
        oneLine(await task(`http://127.0.0.1:${port}`), /has chain id 31337; the replica needs chain id 1: start it with BALLAST_NODE_CHAIN_ID=1/);
      } finally {
        srv.close();
      }
    });

    it("reports a node that already is a replica instead of seeding it twice (mainnet mode: refuses the mainnet URL)", async () => {
      if (up!.mode === "mainnet") {
        oneLine(await task(up!.url), /seeds only a local node/);
        return;
      }
      const r = await task(up!.url);
      expect(r.code, r.stdout + r.stderr).to.equal(0);
      expect(r.stdout, r.stdout + r.stderr).to.contain(`already a replica: fork ${up!.url} at block ${up!.block}`);
    });
  });

  describe("the keeper as a separate process against a `hardhat node --fork` child", () => {
    let provider: JsonRpcProvider;
    let chain: ForkChain;
    let b: Ballast;
    let agg: MockAggregator;
    let p0: bigint;
    let id: bigint;
    let keeperProc: ChildProcess | undefined;
    let keeperLog: string;
    const mnemonic = "test test test test test test test test test test test junk";
    const keeperWallet = HDNodeWallet.fromPhrase(mnemonic, undefined, "m/44'/60'/0'/0/9");

    before(async () => {
      const node = await startForkNode(up!.url, up!.block, path.join(tmp, "fork-node.log"));
      children.push(node.child);
      provider = new JsonRpcProvider(node.url, 1, { staticNetwork: true, pollingInterval: 100 });
      providers.push(provider);
      chain = { provider, signerOf: async (a) => new JsonRpcSigner(provider, a) };
      await provider.send("evm_mine", []); // the hardfork quirk (test/fork/upstream.ts)
    });

    it("deploys, opens a position with a TOP_UP policy, and the keeper (npm run keeper) tops it up in the block after the price push", async () => {
      const [ownerA, traderA, lpA] = (await provider.send("eth_accounts", [])) as string[];
      const owner = await chain.signerOf(ownerA);
      const trader = await chain.signerOf(traderA);
      const lpS = await chain.signerOf(lpA);
      const dir = path.join(tmp, "node-deployments");
      b = await deploy(chain, owner, dir);
      expect(b.rec.chainId).to.equal(1);
      await fundingOff(b);
      await fundUsdc(chain, [[lpA, USDC(100_000)], [traderA, USDC(10_000)]]);
      await (await ERC20__factory.connect(TOKENS.USDC, lpS).approve(b.rec.pool, USDC(100_000))).wait();
      await (await b.pool.connect(lpS).deposit(USDC(100_000), lpA)).wait();
      ({ agg, answer: p0 } = await takeOverEthFeed(chain, owner));
      await alignVolGrid(chain, b, agg, p0);

      const t = connect(b.rec, trader);
      await (await ERC20__factory.connect(TOKENS.USDC, trader).approve(b.rec.engine, USDC(8_000))).wait();
      await (await t.vault.createAccount()).wait();
      id = await t.vault.accountCount();
      await (await t.vault.depositMargin(id, TOKENS.USDC, USDC(5_000))).wait();
      await (await t.vault.deposit(id, TOKENS.USDC, USDC(3_000))).wait();
      await fillAtNextRound(t.engine, trader, owner, agg, { accountId: id, marketId: b.ethMarket, sizeDelta: 8n * WAD });
      await (await t.engine.setRebalancePolicy(id, POLICY)).wait();

      // the first price (in steps of 0.5 %) that puts the account below its trigger, found on a snapshot
      const snap = await provider.send("evm_snapshot", []);
      let px = p0;
      for (;;) {
        px -= p0 / 200n;
        await (await agg.setAnswer(px)).wait();
        if ((await b.engine.accountState(id)).health < POLICY.triggerRatio) break;
      }
      expect(await provider.send("evm_revert", [snap])).to.equal(true);

      const cfgFile = path.join(tmp, "keeper.json");
      fs.writeFileSync(cfgFile, JSON.stringify({
        network: "mainnet", deploymentsDir: dir, rpcUrls: [provider._getConnection().url], chainId: 1, pollIntervalMs: 200,
        reorgDepth: 0, metricsPort: 0, dbPath: path.join(tmp, "keeper.db"), logLevel: "debug", minProfitUsd: "0",
        maxFeePerGasGwei: "1000", priorityFeeGwei: "1",
      }, null, 2));
      keeperLog = path.join(tmp, "keeper.log");
      const env: NodeJS.ProcessEnv = { ...process.env, KEEPER_PRIVATE_KEY: keeperWallet.privateKey, FORCE_COLOR: "0", NO_COLOR: "1" };
      for (const k of Object.keys(env)) if ((k.startsWith("KEEPER_") && k !== "KEEPER_PRIVATE_KEY") || k === "HARDHAT_NETWORK" || k.startsWith("BALLAST_NODE_")) delete env[k];
      keeperProc = startBackground(`exec npm run keeper -- --config ${cfgFile}`, { cwd: ROOT, env, logFile: keeperLog });
      children.push(keeperProc);
      const logOf = () => (fs.existsSync(keeperLog) ? fs.readFileSync(keeperLog, "utf8") : "");
      await waitFor("the keeper's first cycle", () => {
        if (keeperProc!.exitCode !== null) throw new Error(`the keeper exited ${keeperProc!.exitCode}:\n${logOf()}`);
        return /"msg":"cycle done"/.test(logOf()) ? true : undefined;
      }, 120_000, 200).catch((e) => {
        throw new Error(`${(e as Error).message}\n${logOf()}`);
      });

      // the push: a new round on the test aggregator at 1 gwei base fee; nothing else is sent
      await provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x" + GWEI.toString(16)]);
      const push = (await (await agg.setAnswer(px)).wait())!;
      const ev = await waitFor("the keeper's rebalance", async () => {
        const logs = await b.rebalancer.queryFilter(b.rebalancer.filters.Rebalanced(id), push.blockNumber);
        return logs[0];
      }, 60_000, 100);
      // within one block of the push: mined in the block right after it
      expect(ev.blockNumber).to.equal(push.blockNumber + 1);
      const block = (await provider.getBlock(ev.blockNumber))!;
      const [inputs, closeFee] = await b.engine.rebalanceInputs(id, { blockTag: push.blockNumber });
      const reserve = { ...(await usdcReserve(b, id)), available: await b.vault.reserveOf(id, TOKENS.USDC, { blockTag: push.blockNumber }) };
      const fee = expectedFee(px * 10n ** 10n, POLICY.maxFeeUsd, block.baseFeePerGas!);
      const plan = planRestore(POLICY.targetRatio, inputs, closeFee, fee, DEFAULT_RISK.keeperReward, [reserve]);
      expect([ev.args.action, ev.args.toppedUpUsd, ev.args.reducedNotionalUsd, ev.args.feeUsd, ev.args.keeper]).to.deep.equal([
        BigInt(ACTION.TOP_UP), plan.toppedUpUsd, 0n, fee, keeperWallet.address,
      ]);
      expect(await b.vault.reserveOf(id, TOKENS.USDC)).to.equal(reserve.available - plan.amounts[0]);
      // SIGTERM (what Ctrl-C / a supervisor sends) to its process group: the keeper finishes and says so
      await stop(keeperProc, "SIGTERM");
      expect(logOf()).to.match(/"msg":"keeper stopped"/);
    });
  });
});
