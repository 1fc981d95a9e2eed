/**
 * The keeper's health mirror (keeper/mirror.ts) against the chain: its valuation from one BallastLens read
 * (contracts/periphery/BallastLens.sol) equals `accountState` field by field and `healthBatch` to the wei — long and
 * short, two markets, funding accrued over hours, volatilities moved by new rounds, collateral in three assets with
 * haircuts, a collateral oracle gone stale (counts 0) and a market oracle gone stale (unpriced) — and it re-reads only
 * the accounts the registry saw touched.
 */
import { expect } from "chai";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { MAJOR_MARKET } from "../../deploy/params";
import { fillAtNextRound } from "../../lib/orders";
import { createLogger } from "../../keeper/log";
import { decodeLens, HealthMirror, lensCallData, valueAccount } from "../../keeper/mirror";
import { Eip1193Provider, RpcPool } from "../../keeper/rpc";
import { Indexer } from "../../keeper/indexer";
import { Scanner } from "../../keeper/scanner";
import { Store } from "../../keeper/store";
import { countingEndpoint } from "../../lib/bench/scan";
import { endpoint, ethers, expectMirrorExact as expectExact, world, E18, E8, USDC, type World } from "./world";

/** 10 USDC of reserve: the execution fees of the account's orders. */
async function fund(w: World, id: bigint) {
  await w.usdc.mint(w.bob.address, USDC(10));
  await w.usdc.connect(w.bob).approve(w.vault, USDC(10));
  await w.vault.connect(w.bob).deposit(id, w.usdc, USDC(10));
}

async function mirrorWorld() {
  const w = await world();
  // funding on in the ETH market (the keeper world turns it off), so hours of skew move the funding index
  await w.engine.setMarketParams(w.ethMarket, { asset: await w.weth.getAddress(), ...MAJOR_MARKET });
  // account 6: margin in USDC, WETH and WBTC; short 3 ETH and long 0.1 BTC
  const bob = w.bob;
  await w.vault.connect(bob).createAccount();
  const six = await w.vault.accountCount();
  for (const [t, amount] of [
    [w.usdc, USDC(500)],
    [w.weth, E18(2)],
    [w.wbtc, 5_000_000n], // 0.05 WBTC
  ] as const) {
    await t.mint(bob.address, amount);
    await t.connect(bob).approve(w.vault, amount);
    await w.vault.connect(bob).depositMargin(six, t, amount);
  }
  await fund(w, six); // the orders' execution fees
  await fillAtNextRound(w.engine, bob, w.deployer, w.ethFeed, { accountId: six, marketId: w.ethMarket, sizeDelta: -E18(3) });
  await fillAtNextRound(w.engine, bob, w.deployer, w.btcFeed, { accountId: six, marketId: w.btcMarket, sizeDelta: E18(1) / 10n });
  // account 7: WBTC and USDC margin, long 2 ETH only (a stale BTC oracle zeroes part of its collateral, nothing else)
  await w.vault.connect(bob).createAccount();
  const seven = await w.vault.accountCount();
  for (const [t, amount] of [
    [w.usdc, USDC(800)],
    [w.wbtc, 2_000_000n],
  ] as const) {
    await t.mint(bob.address, amount);
    await t.connect(bob).approve(w.vault, amount);
    await w.vault.connect(bob).depositMargin(seven, t, amount);
  }
  await fund(w, seven);
  await fillAtNextRound(w.engine, bob, w.deployer, w.ethFeed, { accountId: seven, marketId: w.ethMarket, sizeDelta: E18(2) });
  return { ...w, all: [...w.ids, six, seven] };
}

function mirrorOf(w: World) {
  const log = createLogger("silent");
  const pool = new RpcPool([endpoint("primary")], { maxLagBlocks: 0, log });
  return { pool, mirror: new HealthMirror(pool, w.rec.engine, { chunk: 3, resyncBlocks: 0 }) };
}

describe("keeper health mirror (keeper/mirror.ts, BallastLens)", function () {
  it("values every account exactly as accountState and healthBatch, across funding, volatility and oracle outages", async () => {
    const w = await loadFixture(mirrorWorld);
    const { pool, mirror } = mirrorOf(w);
    await pool.refresh();

    // hours of skewed open interest (funding accrues), new rounds that move prices and the volatilities
    for (const [eth, btc] of [
      [1_950n, 30_600n],
      [2_040n, 29_700n],
      [1_910n, 30_100n],
    ]) {
      await time.increase(3_600);
      await w.ethFeed.setAnswer(E8(eth));
      await w.btcFeed.setAnswer(E8(btc));
      await w.oracle.poke(w.weth);
      await w.oracle.poke(w.wbtc);
    }
    await time.increase(1_234); // funding between pokes: the index is accrued to the block's time off chain
    await w.ethFeed.setAnswer(E8(1_890n));
    let block = await w.deployer.provider!.getBlockNumber();
    let v = await mirror.refresh(block, w.all, () => ({ ids: [], seq: 0 }));
    expect(mirror.stats).to.deep.equal({ calls: 3, read: 7 }); // chunks of 3
    expect(v.blockNumber).to.equal(block);
    expect(v.markets.map((m) => m.ok)).to.deep.equal([true, true]);
    expect(v.markets[0].volTarget).to.be.greaterThan(0n);
    expect(v.markets[0].state.longOI).to.not.equal(v.markets[0].state.shortOI); // skewed: funding moves
    await expectExact(w, w.all, v, mirror, block);
    // account 6 holds all three collateral assets, two positions, and is short: the widest valuation
    const six = mirror.value(w.all[5], v)!.state!;
    expect(six.collateral).to.be.greaterThan(USDC(500) * 10n ** 12n);

    // BTC's oracle goes stale (over its 2 h heartbeat), ETH's stays fresh: account 6 (a BTC position) is unpriced,
    // account 7's WBTC margin counts 0
    await time.increase(2 * 3_600 + 60);
    await w.ethFeed.setAnswer(E8(1_900n));
    await w.oracle.poke(w.weth);
    block = await w.deployer.provider!.getBlockNumber();
    v = await mirror.refresh(block, w.all, () => ({ ids: [], seq: 0 }));
    expect(mirror.stats).to.deep.equal({ calls: 1, read: 0 });
    expect(v.markets.map((m) => m.ok)).to.deep.equal([true, false]);
    expect(v.assets.map((a) => a.ok)).to.deep.equal([true, true, false]);
    expect(mirror.value(w.all[5], v)!.priced).to.equal(false);
    await expectExact(w, w.all, v, mirror, block);
    const seven = mirror.value(w.all[6], v)!.state!;
    // the WBTC counts nothing while its oracle is stale: 800 USDC less the open's 2 USD fee (0.05 % × 2 ETH × 2,000)
    expect(seven.collateral).to.equal(USDC(798) * 10n ** 12n);
  });

  it("re-reads only the accounts touched since its last read, unvalued ones and what a reorg may have changed", async () => {
    const w = await loadFixture(mirrorWorld);
    const { pool, mirror } = mirrorOf(w);
    await pool.refresh();
    let block = await w.deployer.provider!.getBlockNumber();
    await mirror.refresh(block, w.all, () => ({ ids: [], seq: 0 }));
    expect(mirror.stats).to.deep.equal({ calls: 3, read: 7 });
    const before = block;

    // account 2 posts 1,000 USDC more margin
    await w.usdc.mint(w.bob.address, USDC(1_000));
    await w.usdc.connect(w.bob).approve(w.vault, USDC(1_000));
    await w.vault.connect(w.bob).depositMargin(w.ids[1], w.usdc, USDC(1_000));
    block = await w.deployer.provider!.getBlockNumber();
    const asked: number[] = [];
    const v = await mirror.refresh(block, w.all, (seq) => (asked.push(seq), { ids: [w.ids[1]], seq: 1 }));
    expect(asked).to.deep.equal([0]); // what the first refresh consumed
    expect(mirror.stats).to.deep.equal({ calls: 1, read: 1 });
    await expectExact(w, w.all, v, mirror, block);

    // a reorg to `before`: account 2 was read above it, the others at it
    mirror.invalidateAbove(before);
    await mirror.refresh(block, w.all, () => ({ ids: [], seq: 0 }));
    expect(mirror.stats).to.deep.equal({ calls: 1, read: 1 });

    // a read over the gas a call may use (here 800,000) is split in halves until each fits: 7 fails, then 4 and 3 pass;
    // one that cannot fit even one account fails with the lens's own error
    const tight = new HealthMirror(pool, w.rec.engine, { chunk: 7, resyncBlocks: 0, callGas: 800_000n });
    const vt = await tight.refresh(block, w.all, () => ({ ids: [], seq: 0 }));
    expect(tight.stats).to.deep.equal({ calls: 3, read: 7 });
    await expectExact(w, w.all, vt, tight, block);
    const none = new HealthMirror(pool, w.rec.engine, { chunk: 7, resyncBlocks: 0, callGas: 100_000n });
    await expect(none.refresh(block, w.all, () => ({ ids: [], seq: 0 }))).to.be.rejectedWith("lens read failed: no revert data is not its Snapshot");

    // an account the mirror could not value (its market oracle down at the read) is read again at the next refresh
    const stale = await valueAccount({ id: 1n, priced: false, settlement: 0n, positionMask: 1n, marginMask: 0n, positions: [], margins: [] }, v);
    expect(stale).to.deep.equal({ priced: false });
  });

  it("answers through the revert data of a call that deploys nothing, and says so when the answer is anything else", async () => {
    const w = await loadFixture(mirrorWorld);
    const lens = await ethers.getContractFactory("BallastLens");
    await expect(w.deployer.call({ data: lensCallData(w.rec.engine, [1n]) })).to.be.revertedWithCustomError(lens, "Snapshot");
    expect(() => decodeLens("0x08c379a0")).to.throw("lens read failed: 0x08c379a0 is not its Snapshot");
    expect(() => decodeLens(undefined)).to.throw("lens read failed: no revert data is not its Snapshot");
    // pointed at something that is not an engine, the read fails with its own reason — not an RPC fault
    const log = createLogger("silent");
    const pool = new RpcPool([endpoint("primary")], { maxLagBlocks: 0, log });
    await pool.refresh();
    const wrong = new HealthMirror(pool, await w.usdc.getAddress(), { chunk: 10, resyncBlocks: 0 });
    const block = await w.deployer.provider!.getBlockNumber();
    await expect(wrong.refresh(block, [], () => ({ ids: [], seq: 0 }))).to.be.rejectedWith("lens read failed: no revert data is not its Snapshot");
    expect(pool.current()).to.equal("primary"); // still trusted
  });

  it("a scan through the mirror reports exactly what a healthBatch scan reports, asking the chain only near a threshold", async () => {
    const w = await loadFixture(mirrorWorld);
    const log = createLogger("silent");
    const counting = countingEndpoint();
    const pool = new RpcPool([{ name: "counting", provider: new Eip1193Provider(counting.eip, 31337) }], { maxLagBlocks: 0, log });
    const store = new Store(":memory:");
    const indexer = new Indexer(store, pool, { engine: w.rec.engine, startBlock: 0, reorgDepth: 4, maxLogRange: 10_000, log });
    const common = { chunk: 3, keeper: w.keeper.address, shard: { index: 0, count: 1 }, log };
    const viaMirror = new Scanner(store, pool, w.rec, { ...common, mirror: { marginBps: 100n, resyncBlocks: 0 } });
    const viaChain = new Scanner(store, pool, w.rec, common);
    const scanBoth = async () => {
      const head = await pool.refresh();
      await indexer.sync(head);
      counting.reset();
      const m = await viaMirror.scan(head);
      const calls = { eth_call: counting.counts.get("eth_call") ?? 0, healthBatch: counting.counts.get("eth_call:healthBatch") ?? 0 };
      const c = await viaChain.scan(head);
      expect(m).to.deep.equal(c);
      return { calls, stats: viaMirror.mirrorStats, accounts: m.accounts };
    };

    // first scan: the mirror reads all 7 accounts (3 lens calls of 3); accounts 1-4 sit between their trigger
    // and release ratios, far from both: nothing is asked of the chain
    let r = await scanBoth();
    expect(r.stats).to.deep.equal({ calls: 3, read: 7 });
    expect(r.calls).to.deep.equal({ eth_call: 3, healthBatch: 0 });
    expect(r.accounts.map((a) => a.health > 0n)).to.deep.equal([true, true, true, true, true, true, true]);

    // nothing changed: one eth_call
    r = await scanBoth();
    expect(r.calls).to.deep.equal({ eth_call: 1, healthBatch: 0 });

    // ETH drops: accounts 1-4 fall under their trigger — the chain is asked about them (one healthBatch of 3, one of
    // 1) and their detail (needsRebalance each); the others are far from 1 and stay the mirror's
    await w.ethFeed.setAnswer(E8(1_634n));
    r = await scanBoth();
    expect(r.calls.healthBatch).to.equal(2);
    expect(r.accounts.filter((a) => a.rebalance !== undefined).map((a) => a.id)).to.deep.equal(w.ids.slice(0, 4));
    expect(r.accounts.slice(0, 4).every((a) => a.health < w.policy.triggerRatio)).to.equal(true);

    // account 2 posts margin: the next scan re-reads it alone, in the same single lens call
    await w.usdc.mint(w.bob.address, USDC(3_000));
    await w.usdc.connect(w.bob).approve(w.vault, USDC(3_000));
    await w.vault.connect(w.bob).depositMargin(w.ids[1], w.usdc, USDC(3_000));
    r = await scanBoth();
    expect(r.stats).to.deep.equal({ calls: 1, read: 1 });
    store.close();
  });

  it("the indexer marks each log new once: its late-log window read again changes no account's state sequence (reorgDepth 0 too)", async () => {
    const w = await loadFixture(mirrorWorld);
    const log = createLogger("silent");
    const pool = new RpcPool([endpoint("primary")], { maxLagBlocks: 0, log });
    const store = new Store(":memory:");
    const indexer = new Indexer(store, pool, { engine: w.rec.engine, startBlock: 0, reorgDepth: 0, maxLogRange: 10_000, log });
    await indexer.sync(await pool.refresh());
    const { seq } = store.changedSince(0);
    expect(seq).to.be.greaterThan(0);
    // a margin post, then two empty blocks: each sync reads the last 2 indexed blocks again
    await w.usdc.mint(w.bob.address, USDC(1));
    await w.usdc.connect(w.bob).approve(w.vault, USDC(1));
    await w.vault.connect(w.bob).depositMargin(w.ids[1], w.usdc, USDC(1));
    await indexer.sync(await pool.refresh());
    const after = store.changedSince(seq);
    expect(after.ids).to.deep.equal([w.ids[1]]);
    for (let i = 0; i < 3; i++) {
      await ethers.provider.send("evm_mine", []);
      await indexer.sync(await pool.refresh());
      expect(store.changedSince(after.seq)).to.deep.equal({ ids: [], seq: after.seq });
    }
    store.close();
  });
});
