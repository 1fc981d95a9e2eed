/**
 * Review of the keeper's health mirror (keeper/mirror.ts, contracts/periphery/BallastLens.sol, keeper/scanner.ts
 * mirrorScan, the indexer's EVENTS): attacks by a trader, an LP, a competing keeper, an operator and governance.
 *
 * "FIXED" tests failed on the reviewed code (they state what a correct mirror does) and pass since the fixes (the
 * keeper's pending reorg, the registry's state sequence, the indexer's re-read window, the lens's volatilities
 * try/catch); "RESISTED" tests pin an attack the code withstood.
 */
import { expect } from "chai";
import { network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import { DEFAULT_RISK, MAJOR_MARKET } from "../../deploy/params";
import { fillAtNextRound } from "../../lib/orders";
import { createLogger } from "../../keeper/log";
import { HealthMirror, type LensView } from "../../keeper/mirror";
import { Eip1193Provider, RpcPool, type Eip1193, type Endpoint } from "../../keeper/rpc";
import { Indexer } from "../../keeper/indexer";
import { Scanner } from "../../keeper/scanner";
import { Store } from "../../keeper/store";
import { countingEndpoint } from "../../lib/bench/scan";
import { baseFee, E18, E8, ethers, expectMirrorExact, GWEI, keeper, setEth, USDC, world, endpoint, type World } from "../keeper/world";

const head = () => network.provider.send("eth_blockNumber", []).then(Number);
const hex = (n: number) => "0x" + n.toString(16);

/** The in-process network with a switchable fault: `failIf` decides (per request) whether to answer with an RPC error. */
function faultyEndpoint(name: string) {
  const fault: { failIf?: (method: string, params: unknown[]) => boolean; failed: number; dropLogsIf?: (params: unknown[]) => boolean } = { failed: 0 };
  const eip: Eip1193 = {
    async request({ method, params }) {
      const p = (params ?? []) as unknown[];
      if (fault.failIf?.(method, p)) {
        fault.failIf = undefined; // once
        fault.failed++;
        throw Object.assign(new Error(`upstream timeout (${name})`), { code: -32000 });
      }
      if (method === "eth_getLogs" && fault.dropLogsIf?.(p)) {
        fault.dropLogsIf = undefined; // once: a load-balanced backend that had not indexed the newest block yet
        return [];
      }
      return network.provider.request({ method, params: p });
    },
  };
  const ep: Endpoint = { name, provider: new Eip1193Provider(eip, 31337) };
  return { ep, fault };
}

/** A mirror scanner, a chain scanner and an indexer over one store; `both()` indexes to the head and scans with each. */
function scanners(w: World, opts: { endpoint?: Endpoint; chunk?: number } = {}) {
  const log = createLogger("silent");
  const counting = countingEndpoint();
  const pool = new RpcPool([opts.endpoint ?? { name: "counting", provider: new Eip1193Provider(counting.eip, 31337) }], { maxLagBlocks: 0, log });
  const store = new Store(":memory:");
  const indexer = new Indexer(store, pool, { engine: w.rec.engine, startBlock: 0, reorgDepth: 4, maxLogRange: 10_000, log });
  const common = { chunk: opts.chunk ?? 3, keeper: w.keeper.address, shard: { index: 0, count: 1 }, log };
  const viaMirror = new Scanner(store, pool, w.rec, { ...common, mirror: { marginBps: 100n, resyncBlocks: 0 } });
  const viaChain = new Scanner(store, pool, w.rec, common);
  const both = async () => {
    const h = await pool.refresh();
    const synced = await indexer.sync(h);
    counting.reset();
    const m = await viaMirror.scan(h, { reorgTo: synced.reorgTo });
    const c = await viaChain.scan(h);
    return { m, c, stats: viaMirror.mirrorStats!, head: h };
  };
  return { pool, store, indexer, viaMirror, viaChain, both, counting };
}

/** Every account's mirror valuation against accountState field by field and healthBatch, at `block`. */
const expectExact = (w: World, mirror: HealthMirror, v: LensView, ids: bigint[], block: number) => expectMirrorExact(w, ids, v, mirror, block);

async function give(w: World, who: Awaited<ReturnType<typeof ethers.getSigners>>[number], token: World["usdc"], amount: bigint) {
  await token.mint(who.address, amount);
  await token.connect(who).approve(w.vault, amount);
}

/** A new account of bob's: `usdc` USDC, 1 WETH and `wbtc` WBTC of margin, 10 USDC of reserve (order fees), and
 *  positions of `eth` and `btc` filled at the next round. */
async function bobsAccount(w: World, a: { usdc: bigint; wbtc: bigint; eth: bigint; btc: bigint }): Promise<bigint> {
  await w.vault.connect(w.bob).createAccount();
  const id = await w.vault.accountCount();
  await give(w, w.bob, w.usdc, a.usdc + USDC(10));
  await w.vault.connect(w.bob).depositMargin(id, w.usdc, a.usdc);
  await w.vault.connect(w.bob).deposit(id, w.usdc, USDC(10));
  await give(w, w.bob, w.weth, E18(1));
  await w.vault.connect(w.bob).depositMargin(id, w.weth, E18(1));
  if (a.wbtc > 0n) {
    await give(w, w.bob, w.wbtc as unknown as World["usdc"], a.wbtc);
    await w.vault.connect(w.bob).depositMargin(id, w.wbtc, a.wbtc);
  }
  await fillAtNextRound(w.engine, w.bob, w.deployer, w.ethFeed, { accountId: id, marketId: w.ethMarket, sizeDelta: a.eth });
  await fillAtNextRound(w.engine, w.bob, w.deployer, w.btcFeed, { accountId: id, marketId: w.btcMarket, sizeDelta: a.btc });
  return id;
}

describe("review: keeper health mirror", function () {
  // ------------------------------------------------------------------------------------------------ fixed

  /**
   * The keeper (mirror mode) builds its mirror; in a block that a reorg will drop, account 5's owner posts 6,000 USDC
   * of margin and the keeper reads it; on the new chain the deposit never happens and ETH falls to 1,640 USD (account
   * 5: 5 ETH long on 1,800 USDC — liquidatable). `failOnce`: the cycle in which the indexer sees the reorg fails after
   * the indexer rewound (the scan's first read, the head's header, times out once).
   */
  async function reorgWithDroppedMargin(failOnce: boolean) {
    const w = await loadFixture(world);
    const { ep, fault } = faultyEndpoint("primary");
    const { k } = await keeper(w, { endpoints: [ep] }); // scan: "mirror" (the default)
    await baseFee(GWEI / 10n);
    await k.prepare(); // the mirror's build: all five accounts read
    const snap = await network.provider.send("evm_snapshot", []);
    await give(w, w.alice, w.usdc, USDC(6_000));
    await w.vault.connect(w.alice).depositMargin(w.ids[4], w.usdc, USDC(6_000));
    const dropped = await head();
    await k.prepare(); // the mirror reads account 5 (touched) at `dropped`
    expect(k.store.cursor()!.block).to.equal(dropped);

    expect(await network.provider.send("evm_revert", [snap])).to.equal(true);
    await setEth(w, 1_640n);
    while ((await head()) <= dropped) await network.provider.send("evm_mine", []);
    await baseFee(GWEI / 10n);
    const h = await head();
    const [[truth]] = await w.engine.healthBatch([w.ids[4]]);
    expect(truth).to.equal(0n); // equity <= 0
    expect(await w.engine.liquidationFraction(w.ids[4])).to.equal(E18(1));

    if (failOnce) {
      fault.failIf = (method, params) => method === "eth_getBlockByNumber" && params[0] === hex(h) && k.store.cursor()?.block === h;
      await expect(k.prepare()).to.be.rejectedWith("every trusted RPC endpoint failed");
      expect(fault.failed).to.equal(1);
      expect(k.store.cursor()!.block).to.equal(h); // the indexer is on the new chain: it will not report the reorg again
      await new Promise((r) => setTimeout(r, 600)); // the endpoint's back-off
    }
    const { plan } = await k.prepare();
    const scan = await k.scanner.scan(h);
    await k.close();
    return { w, truth, five: scan.accounts.find((a) => a.id === w.ids[4])!, actions: plan.actions.map((a) => `${a.kind}:${a.ids.join(",")}`) };
  }

  it("FIXED (Medium) a reorg the indexer reported in a cycle that then failed is not forgotten: the keeper keeps it until a scan takes it in, and the registry's rewind renumbers the accounts with dropped events — the keeper liquidates", async () => {
    const { w, truth, five, actions } = await reorgWithDroppedMargin(true);
    // reviewed code: the mirror still valued account 5 with the dropped 6,000 USDC (health 45.67) until the resync
    // (mirrorResyncBlocks, 7,200 blocks by default), and the keeper never liquidated it
    expect(five.health, "account 5's health as the keeper sees it").to.equal(truth);
    expect(actions).to.include(`liquidate:${w.ids[4]}`);
  });

  it("RESISTED the same reorg in a cycle that does not fail: the mirror drops what it read above the fork and the keeper liquidates", async () => {
    const { w, truth, five, actions } = await reorgWithDroppedMargin(false);
    expect(five.health).to.equal(truth);
    expect(five.liquidatable).to.equal(true);
    expect(actions).to.include(`liquidate:${w.ids[4]}`);
  });

  it("FIXED (Low) one market whose volatilities revert while its price reads ok (a market on the settlement asset, which has no feed) is unpriced in the lens; the mirror scan equals the on-chain scan", async () => {
    const w = await loadFixture(world);
    const s = scanners(w);
    await s.both(); // both modes work
    // governance lists a market on USDC (the engine prices the settlement asset at 1 without the oracle; the lens too,
    // then asks the oracle for its volatilities: FeedNotSet). No account can even trade in it.
    await w.engine.createMarket({ asset: await w.usdc.getAddress(), ...MAJOR_MARKET });
    // reviewed code: every lens read reverted FeedNotSet(usdc) (0x0dcaf86b), split down to one account, and the scan threw
    const h = await s.pool.refresh();
    await s.indexer.sync(h);
    const c = await s.viaChain.scan(h);
    expect(c.accounts.length).to.equal(5);
    // what a correct mirror does: the same report (the market holds no position; nothing in it can be valued)
    const m = await s.viaMirror.scan(h);
    expect(m).to.deep.equal(c);
    s.store.close();
  });

  it("FIXED (Low, cost) a stranger's 1-unit reserve deposits make the mirror re-read nothing: reserve-only events advance the round, not the state sequence", async () => {
    const w = await loadFixture(world);
    const s = scanners(w, { chunk: 200 });
    await s.both();
    // a stranger (an LP, a competing keeper) deposits 1 unit of USDC into the reserve of every account, each block
    const stranger = w.lp;
    await give(w, stranger, w.usdc, 5n);
    for (const id of w.ids) await w.vault.connect(stranger).deposit(id, w.usdc, 1n);
    const r = await s.both();
    expect(r.m).to.deep.equal(r.c); // still exact ...
    // ... but every account was read again through the lens, whose per-account read re-runs accountState with its own
    // oracle reads (measured in this world: ~57,000 gas per one-market account, ~100,000 for two markets and three
    // assets, against ~22,000 / ~30,000 in healthBatch's shared price cache): reserve-only events (Deposited without
    // MarginPosted, Withdrawn) move no health and need no re-read
    expect(r.stats, "accounts re-read after reserve-only deposits").to.deep.equal({ calls: 1, read: 0 });
    s.store.close();
  });

  it("FIXED (Low) a log the endpoint did not return yet for the newest block is picked up at the next sync (the indexer reads its last 2 blocks again): the mirror equals healthBatch one block later", async () => {
    const w = await loadFixture(world);
    const { ep, fault } = faultyEndpoint("primary");
    const s = scanners(w, { endpoint: ep });
    await s.both();
    // account 5's owner posts 6,000 USDC more; the endpoint's getLogs for that block is served by a backend one block
    // behind, which returns nothing (the state reads of the same block are served by an up-to-date one)
    await give(w, w.alice, w.usdc, USDC(6_000));
    await w.vault.connect(w.alice).depositMargin(w.ids[4], w.usdc, USDC(6_000));
    const deposit = await head();
    fault.dropLogsIf = (params) => Number((params[0] as { toBlock: string }).toBlock) === deposit;
    let r = await s.both();
    expect(r.head).to.equal(deposit);
    // a later block, the logs are complete again; the account's health is still the mirror's old one
    await network.provider.send("evm_mine", []);
    r = await s.both();
    const i = 4;
    expect(r.m.accounts[i].health, "account 5: mirror vs healthBatch").to.equal(r.c.accounts[i].health);
    s.store.close();
  });

  // ------------------------------------------------------------------------------------------------ resisted

  it("RESISTED governance after the build (setMarketParams volK 0 + imVolFloor + sizeK, setRiskParams, setHaircut, a new asset and a new market listed, a feed swapped): exact without re-reading untouched accounts", async () => {
    const w = await loadFixture(world);
    const log = createLogger("silent");
    const pool = new RpcPool([endpoint("primary")], { maxLagBlocks: 0, log });
    await pool.refresh();
    // account 6: margin in USDC and WETH, long ETH and short BTC
    const six = await bobsAccount(w, { usdc: USDC(3_000), wbtc: 0n, eth: E18(2), btc: -E18(1) / 20n });
    const ids = [...w.ids, six];
    const mirror = new HealthMirror(pool, w.rec.engine, { chunk: 4, resyncBlocks: 0 });
    let block = await head();
    const v0 = await mirror.refresh(block, ids, () => ({ ids: [], seq: 0 }));
    expect(mirror.stats).to.deep.equal({ calls: 2, read: 6 });

    // governance: the ETH market loses its volatility term (volK 0) but keeps an IM floor; BTC's size term grows;
    // the keeper reward and the volatility horizon change; WETH's haircut falls; a new asset (a second WETH-like
    // token) and a new market on it are listed; ETH's feed is replaced by another aggregator at another price
    await w.engine.setMarketParams(w.ethMarket, { asset: await w.weth.getAddress(), ...MAJOR_MARKET, volK: 0n, imVolFloor: E18(3), maxFundingRate: 0n });
    await w.engine.setMarketParams(w.btcMarket, { asset: await w.wbtc.getAddress(), ...MAJOR_MARKET, sizeK: E18(1) / 10n });
    await w.engine.setRiskParams({ ...DEFAULT_RISK, keeperReward: DEFAULT_RISK.keeperReward * 3n, volHorizon: BigInt(DEFAULT_RISK.volHorizon) * 5n });
    await w.vault.setHaircut(w.weth, E18(6) / 10n);
    const Mock = await ethers.getContractFactory("MockERC20");
    const lst = await Mock.deploy("Staked ETH", "stETH", 18);
    const Agg = await ethers.getContractFactory("MockAggregator");
    const lstFeed = await Agg.deploy(8);
    await lstFeed.setAnswer(E8(1_990n));
    await w.oracle.setFeed(lst, { feed: lstFeed, heartbeat: 7_200, minPrice: E18(1), maxPrice: E18(10_000_000), maxJumpBps: 2_500, cooldown: 3_600 });
    await w.vault.listAsset(lst, E18(9) / 10n);
    await w.engine.createMarket({ asset: await lst.getAddress(), ...MAJOR_MARKET });
    const ethFeed2 = await Agg.deploy(8);
    await ethFeed2.setAnswer(E8(2_050n));
    await w.oracle.setFeed(w.weth, { feed: ethFeed2, heartbeat: 7_200, minPrice: E18(1), maxPrice: E18(10_000_000), maxJumpBps: 2_500, cooldown: 3_600 });
    await time.increase(5_000);
    await network.provider.send("evm_mine", []);
    block = await head();
    const v1 = await mirror.refresh(block, ids, () => ({ ids: [], seq: 0 }));
    expect(mirror.stats).to.deep.equal({ calls: 1, read: 0 }); // nothing re-read: the view carries all of it
    expect(v1.markets.length).to.equal(v0.markets.length + 1);
    expect(v1.assets.length).to.equal(v0.assets.length + 1);
    expect(v1.markets[Number(w.ethMarket)].volTarget).to.equal(0n);
    const [healths] = await w.engine.healthBatch(ids);
    for (let i = 0; i < ids.length; i++) expect(mirror.value(ids[i], v1)!.state!.health, `account ${ids[i]}`).to.equal(healths[i]);
    await expectExact(w, mirror, v1, ids, block);
  });

  it("RESISTED every state change of an account is an event the indexer follows: a stranger's margin, a full liquidation (settle, bad debt), a close of the last position and a reopening, a new account, funding with nobody touching — the mirror scan equals the chain scan at each step", async () => {
    const w = await loadFixture(world);
    const s = scanners(w);
    const step = async (what: string) => {
      const r = await s.both();
      expect(r.m, what).to.deep.equal(r.c);
      return r;
    };
    await step("build");
    // a stranger posts settlement-asset margin into account 1 (depositMargin of USDC is open to anyone)
    await give(w, w.lp, w.usdc, USDC(500));
    await w.vault.connect(w.lp).depositMargin(w.ids[0], w.usdc, USDC(500));
    expect((await step("stranger's margin")).stats).to.deep.equal({ calls: 1, read: 1 });
    // account 5 (no policy) is liquidated after a fall; the liquidation settles its loss against its USDC margin
    await setEth(w, 1_640n);
    await step("fall");
    await w.engine.connect(w.keeper).liquidate(w.ids[4]);
    // wholly liquidated (its loss exceeds its margin: the rest is written off as bad debt) — it leaves the scan
    const liq = await step("liquidated");
    expect(liq.stats.read).to.equal(0);
    expect(liq.m.accounts.map((a) => a.id)).to.not.include(w.ids[4]);
    expect(await w.engine.positionMask(w.ids[4])).to.equal(0n);
    // account 2's owner closes its whole position (it leaves the scan), later opens a new one
    await fillAtNextRound(w.engine, w.bob, w.deployer, w.ethFeed, { accountId: w.ids[1], marketId: w.ethMarket, sizeDelta: -E18(10), reduceOnly: true });
    await step("closed");
    await fillAtNextRound(w.engine, w.bob, w.deployer, w.ethFeed, { accountId: w.ids[1], marketId: w.ethMarket, sizeDelta: -E18(1) / 2n });
    await step("reopened short");
    // a new account after the build
    await w.vault.connect(w.alice).createAccount();
    const six = await w.vault.accountCount();
    await give(w, w.alice, w.usdc, USDC(1_010));
    await w.vault.connect(w.alice).depositMargin(six, w.usdc, USDC(1_000));
    await w.vault.connect(w.alice).deposit(six, w.usdc, USDC(10));
    await fillAtNextRound(w.engine, w.alice, w.deployer, w.ethFeed, { accountId: six, marketId: w.ethMarket, sizeDelta: E18(3) });
    const r = await step("new account");
    expect(r.m.accounts.map((a) => a.id)).to.include(six);
    // hours of funding (ETH funding on) with nobody touching anything
    await w.engine.setMarketParams(w.ethMarket, { asset: await w.weth.getAddress(), ...MAJOR_MARKET });
    await time.increase(6 * 3_600);
    await setEth(w, 1_700n);
    expect((await step("funding")).stats.read).to.equal(0);
    s.store.close();
  });

  it("RESISTED liveness: one account cannot stall the scan — the heaviest account (every market, every asset) is read alone within a small gas cap", async () => {
    const w = await loadFixture(world);
    const log = createLogger("silent");
    const pool = new RpcPool([endpoint("primary")], { maxLagBlocks: 0, log });
    await pool.refresh();
    const six = await bobsAccount(w, { usdc: USDC(5_000), wbtc: 1_000_000n, eth: E18(1), btc: E18(1) / 100n });
    const ids = [...w.ids, six];
    const block = await head();
    // measured (callGas in steps of 4,000 at this code): account 6 alone fits from 464,000, no pair of accounts below
    // 476,000; at 468,000 no two accounts fit: 6 → 3 + 3 → (2 → 1 + 1) + 1, twice: 11 calls, every account read alone
    const tight = new HealthMirror(pool, w.rec.engine, { chunk: 6, resyncBlocks: 0, callGas: 468_000n });
    const v = await tight.refresh(block, ids, () => ({ ids: [], seq: 0 }));
    expect(tight.stats).to.deep.equal({ calls: 11, read: 6 });
    const [healths] = await w.engine.healthBatch(ids);
    for (let i = 0; i < ids.length; i++) expect(tight.value(ids[i], v)!.state!.health).to.equal(healths[i]);
  });
});
