import { expect } from "chai";
import { ethers, network } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import type { FeedPusher, MockAggregator, NoHistoryAggregator, OracleRouter } from "../../typechain-types";
import type { IOracleRouter } from "../../typechain-types/contracts/core/OracleRouter";
import { CRYPTO_FEED, DEFAULT_RISK, MAJOR_MARKET, wad, type MarketConfig } from "../../deploy/params";
import { loadChainlinkRounds, type ChainlinkRound } from "../../lib/prices";
import { E18, E8, systemFixture, USDC, VOL_INTERVAL } from "../helpers/fixtures";
import { mulDivUp, requirements, sqrtHorizon, USDC_SCALE, WAD, wDivDown } from "../helpers/marginMath";
import {
  DAY,
  DEFAULT_VOL,
  MAX_SAMPLE_WALK,
  VOL_BOUNDS,
  VolMirror,
  approach,
  ewmaStep,
  floorVarianceRate,
  volatilityOf,
} from "../helpers/oracleMath";

/*
 * The risk model's volatility (README "Risk model", issue 9), against the oracle mirror of
 * test/helpers/oracleMath.ts: σ sampled on a fixed grid of the feed's clock, and σ_mm, the volatility of open
 * positions' maintenance margin, moving toward σ at a bounded speed while IM follows σ at once.
 */

const WETH = ethers.getAddress("0x00000000000000000000000000000000000000e1");
const ETH2 = ethers.getAddress("0x00000000000000000000000000000000000000e2");
const HOUR = VOL_INTERVAL;
const SQRT_H = sqrtHorizon(DEFAULT_RISK.volHorizon);
const R = DEFAULT_RISK.keeperReward;
const M: MarketConfig = { ...MAJOR_MARKET, maxFundingRate: 0n }; // funding off: values do not drift with time
// IM without the stress floor: the governance test reads σ through the largest open IM allows, which a 200 % floor
// (above σ there) would pin to the floor's leverage whatever σ is.
const M_NO_FLOOR: MarketConfig = { ...M, imVolFloor: 0n };

// ============================================================================================ (1) cadence
//
// σ is a function of the feed's history alone: each sample sits on a boundary of the hourly grid of the feed's
// clock and is priced at the last round at or before it, read back from the feed (getRoundData, at most
// MAX_SAMPLE_WALK = 48 rounds, the latest included). Poke cadence and phase, and pokes withheld while the walk still
// reaches back, give exactly the same σ and σ_mm. The walk stops at a round the router would refuse (outside the
// sane band): such a round is never a sample. A boundary the walk cannot reach (more rounds since it than the walk
// reads, or a feed that serves no history) is skipped and its return merges into the next sample's, unless it is
// the last boundary of the poke: that one is priced by the nearest round the walk shows after it, so a feed
// without history still moves σ (at the cost of depending on when it is read).

/** 2023-08-15 00:00 – 08-20 00:00 UTC of the real Chainlink ETH/USD rounds (the 17 Aug flash drop: −15.6 % in a day). */
const WINDOW = { from: 1_692_057_600, to: 1_692_489_600 };
const GAS = { gasLimit: 2_000_000 }; // a poke may read back 48 rounds; no estimate against an unmined block

/** The window's rounds, preceded by the last round before it (the one the router recorded before the window). */
function windowRounds(): ChainlinkRound[] {
  const all = loadChainlinkRounds("chainlink_eth_usd_rounds_mainnet.csv");
  const first = all.findIndex((r) => r.updatedAt >= WINDOW.from);
  return all.slice(first - 1, all.findIndex((r) => r.updatedAt >= WINDOW.to));
}

type Observation = Awaited<ReturnType<OracleRouter["observation"]>>;
type Tx = Awaited<ReturnType<OracleRouter["poke"]>>;

/**
 * Mines one block at time `t` holding the transactions `send` submits, in order (several rounds in the same
 * second, a round and the poke that reads it); checks they all succeeded. Automine must be off.
 */
async function mineBlock(t: number, send: () => Promise<Tx[]>): Promise<number> {
  const txs = await send();
  await network.provider.send("evm_mine", [t]);
  let block = 0;
  for (const tx of txs) {
    const receipt = await tx.wait();
    expect(receipt!.status).to.equal(1);
    block = receipt!.blockNumber;
  }
  return block === 0 ? Number(await network.provider.send("eth_blockNumber")) : block;
}

async function withoutAutomine<T>(body: () => Promise<T>): Promise<T> {
  await network.provider.send("evm_setAutomine", [false]);
  try {
    return await body();
  } finally {
    await network.provider.send("evm_setAutomine", [true]);
  }
}

async function routerFixture() {
  const [owner] = await ethers.getSigners();
  const router = (await ethers.deployContract("OracleRouter", [owner.address, ethers.ZeroAddress, 0])) as unknown as OracleRouter;
  const feed = (await ethers.deployContract("MockAggregator", [8])) as unknown as MockAggregator;
  // Real rounds are up to 3,696 s apart and a poke may come an hour after one: a 2 h heartbeat; no breaker
  // (these tests measure volatility only).
  await router.setFeed(WETH, {
    feed: await feed.getAddress(),
    heartbeat: 7200,
    minPrice: wad("1"),
    maxPrice: wad("1000000"),
    maxJumpBps: 10_000,
    cooldown: 0,
  });
  // Chain time cannot go back to 2023: the replay is shifted by whole days, so the shifted rounds keep the real
  // feed's position on the hourly grid. The router ran before the window: it recorded the last round before it
  // (set and poked at that round's own time), the sample reference every replay below shares.
  const pre = windowRounds()[0];
  const shift = Math.ceil(((await time.latest()) + 100 - pre.updatedAt) / 86_400) * 86_400;
  await time.setNextBlockTimestamp(pre.updatedAt + shift);
  await feed.setRound(pre.roundId, pre.answer, pre.startedAt + shift, pre.updatedAt + shift);
  await router.poke(WETH);
  return { router, feed, shift, pre };
}

interface Replay {
  /** σ and σ_mm read after each block of the replay (rounds set, a poke, or both), by window time */
  seen: Map<number, [bigint, bigint]>;
  /** highest σ read after a poke */
  peak: bigint;
  /** the oracle mirror at the end (its samples and skipped boundaries) */
  mirror: VolMirror;
  /** the recorded observation at the end */
  obs: Observation;
  /** chain time − window time */
  shift: number;
}

/**
 * Replays the real rounds into the MockAggregator, each at its own time (block time = updatedAt; rounds of the
 * same second in one block), and pokes the router at `pokeTimes` (window clock; a poke at a round's second comes
 * after it in the same block). After every block σ and σ_mm are read and checked against the oracle mirror:
 * after a poke, the mirror records the latest round; otherwise the view computes the pending rounds without
 * recording them (a copy of the mirror).
 */
async function replay(pokeTimes: number[], rounds: ChainlinkRound[] = windowRounds().slice(1)): Promise<Replay> {
  const { router, feed, shift, pre } = await loadFixture(routerFixture);
  const m = VolMirror.fromObservation(await router.observation(WETH));
  m.setRound(pre.answer * 10n ** 10n, BigInt(pre.updatedAt + shift), pre.roundId);
  const pokes = new Set(pokeTimes);
  const times = [...new Set([...rounds.map((r) => r.updatedAt), ...pokeTimes])].sort((a, b) => a - b);
  const out: Replay = { seen: new Map(), peak: 0n, mirror: m, obs: await router.observation(WETH), shift };
  await withoutAutomine(async () => {
    let k = 0;
    for (const t of times) {
      const poked = pokes.has(t);
      const block = await mineBlock(t + shift, async () => {
        const txs: Tx[] = [];
        for (; k < rounds.length && rounds[k].updatedAt === t; k++) {
          const r = rounds[k];
          txs.push(await feed.setRound(r.roundId, r.answer, r.startedAt + shift, r.updatedAt + shift, GAS));
          m.setRound(r.answer * 10n ** 10n, BigInt(r.updatedAt + shift), r.roundId);
        }
        if (poked) txs.push(await router.poke(WETH, GAS));
        return txs;
      });
      let v: { target: bigint; maintenance: bigint };
      if (poked) {
        m.observeLatest();
        v = m.volatilities(BigInt(t + shift));
      } else {
        const view = m.clone();
        view.observeLatest();
        v = view.volatilities(BigInt(t + shift));
      }
      expect(await router.volatilities(WETH, { blockTag: block }), `σ, σ_mm at ${t}`).to.deep.equal([v.target, v.maintenance]);
      out.seen.set(t, [v.target, v.maintenance]);
      if (poked && v.target > out.peak) out.peak = v.target;
    }
  });
  out.obs = await router.observation(WETH);
  expect([out.obs.price, out.obs.updatedAt, out.obs.varianceRate, out.obs.samplePrice, out.obs.sampleAt, out.obs.mmVol, out.obs.mmVolAt]).to.deep.equal([
    m.price,
    m.updatedAt,
    m.varianceRate,
    m.samplePrice,
    m.sampleAt,
    m.mmVol,
    m.mmVolAt,
  ]);
  return out;
}

/** Poke times from the window's start: `offset` seconds into each period of `every` seconds, then one at its end. */
const schedule = (every: number, offset: number) => [
  ...Array.from({ length: (WINDOW.to - WINDOW.from) / every }, (_, i) => WINDOW.from + i * every + offset),
  WINDOW.to,
];
/** A poke at every round (several real rounds share a second: one poke after the last of them), then at the end. */
const atEveryRound = () => [...new Set(windowRounds().slice(1).map((r) => r.updatedAt)), WINDOW.to];

describe("Volatility › samples on the hourly grid, priced from the feed's history: cadence does not move σ", function () {
  it("the real 15–19 Aug 2023 Chainlink ETH/USD rounds poked every 15 min, hourly on the hour, hourly at half past and at every round: the same peak σ and the same final state", async function () {
    const rounds = windowRounds();
    // 199 rounds in the window after the reference, in one Chainlink phase (consecutive ids: the walk reads them).
    expect(rounds.length - 1).to.equal(WINDOW_ROUNDS);
    for (let i = 1; i < rounds.length; i++) expect(rounds[i].roundId).to.equal(rounds[i - 1].roundId + 1n);

    const runs = {
      quarterHourly: await replay(schedule(900, 30)),
      onTheHour: await replay(schedule(HOUR, 0)),
      atHalfPast: await replay(schedule(HOUR, 1800)),
      everyRound: await replay(atEveryRound()),
    };
    const all = Object.values(runs);
    // The same 120 samples (one per hour of the window, from its first second to its last hour), none skipped.
    for (const r of all) {
      expect(r.mirror.samples.length).to.equal(120);
      expect(r.mirror.samples[0]).to.equal(BigInt(WINDOW.from + r.shift));
      expect(r.mirror.skipped).to.deep.equal([]);
      expect(r.mirror.samples).to.deep.equal(runs.everyRound.mirror.samples);
    }
    // Peak σ exactly equal (so within 10 % of one another), after the 17 Aug flash drop: 142.97 %.
    const peaks = all.map((r) => r.peak);
    expect(peaks).to.deep.equal(Array(4).fill(EXPECTED_CADENCE.peak));
    expect((peaks[0] * 10_000n) / peaks[2]).to.be.within(9_000n, 11_000n); // the previous helper's repro
    // The final poke at the window's end: the same recorded observation, σ and σ_mm, to the wei.
    for (const r of all) {
      expect(r.obs).to.deep.equal(runs.everyRound.obs);
      expect(r.seen.get(WINDOW.to)).to.deep.equal(EXPECTED_CADENCE.final);
    }
    // Wherever two cadences read the router at the same time, they read the same σ and σ_mm.
    for (const r of all) {
      for (const [t, v] of r.seen) {
        const other = runs.everyRound.seen.get(t);
        if (other !== undefined) expect(v, `σ, σ_mm at ${t}`).to.deep.equal(other);
      }
    }
  });

  it("withholding pokes for 6 hours (17 Aug 18:00–24:00 UTC, the flash drop, 34 rounds) then poking gives exactly the σ and σ_mm of poking every round", async function () {
    const gap = { from: 1_692_295_200, to: 1_692_316_800 };
    const inGap = windowRounds().filter((r) => r.updatedAt >= gap.from && r.updatedAt < gap.to);
    expect(inGap.length).to.equal(34);
    expect(inGap.length).to.be.lessThan(MAX_SAMPLE_WALK); // the poke after the gap reads back past its start

    const all = await replay(atEveryRound());
    const withheld = await replay(atEveryRound().filter((t) => t < gap.from || t >= gap.to));
    expect(withheld.mirror.skipped).to.deep.equal([]);
    // Every read of the withheld replay (the views during the gap, which see the pending rounds, and every poke
    // after it) equals the read of the poker of every round at the same time.
    expect(withheld.seen.size).to.equal(all.seen.size);
    for (const [t, v] of withheld.seen) expect(v, `σ, σ_mm at ${t}`).to.deep.equal(all.seen.get(t));
    // The first poke after the gap takes the hourly samples of the gap at once: the same σ and σ_mm.
    const firstAfter = atEveryRound().find((t) => t >= gap.to)!;
    expect(withheld.seen.get(firstAfter)).to.deep.equal(all.seen.get(firstAfter));
    expect(withheld.seen.get(firstAfter)).to.deep.equal(EXPECTED_CADENCE.afterGap);
    expect(withheld.obs).to.deep.equal(all.obs);
    // The peak (17 Aug 23:00:47) is inside the gap: the views during the gap read it too (they see the pending
    // rounds); only the pokes after the gap come too late for it.
    expect(all.peak).to.equal(EXPECTED_CADENCE.peak);
    const viewedPeak = [...withheld.seen.values()].reduce((max, [sigma]) => (sigma > max ? sigma : max), 0n);
    expect(viewedPeak).to.equal(EXPECTED_CADENCE.peak);
    expect(withheld.peak).to.equal(EXPECTED_CADENCE.afterGap[0]);
  });

  it("a gap longer than the walk: the boundaries it cannot reach merge into the next sample, dt = b − sampleAt (exact σ)", async function () {
    const { router, feed } = await loadFixture(gapFixture);
    // 61 rounds 10 minutes apart from a grid boundary B0 (round 1 at B0, the reference, poked), then one poke
    // a second after round 61 (B0 + 10 h): the walk reads rounds 61 back to 14 (48 rounds, 14 at B0 + 7,800 s), so the
    // boundaries B0 + 1 h (round 7) and B0 + 2 h (round 13) are out of reach and merge into B0 + 3 h (round 19),
    // dt = 3 h; then one sample an hour to B0 + 10 h.
    const B0 = (Math.floor((await time.latest()) / HOUR) + 2) * HOUR;
    const px = (i: number) => E8(2000) + E8(40) * BigInt((i * 3) % 7) - E8(120);
    await time.setNextBlockTimestamp(B0);
    await feed.setRound(1, px(1), B0, B0);
    await router.poke(WETH);
    const m = VolMirror.fromObservation(await router.observation(WETH));
    m.setRound(px(1) * 10n ** 10n, BigInt(B0), 1n);
    expect([m.samplePrice, m.sampleAt]).to.deep.equal([px(1) * 10n ** 10n, BigInt(B0)]);
    const v0 = m.varianceRate;
    for (let i = 2; i <= 61; i++) {
      const t = B0 + (i - 1) * 600;
      await time.setNextBlockTimestamp(t);
      await feed.setRound(i, px(i), t, t);
      m.setRound(px(i) * 10n ** 10n, BigInt(t), BigInt(i));
    }
    const tEnd = B0 + 36_000;
    // The rule by hand: (round, dt) of each sample; the reference's price is round 1's.
    const steps: [number, number][] = [[19, 3 * HOUR], [25, HOUR], [31, HOUR], [37, HOUR], [43, HOUR], [49, HOUR], [55, HOUR], [61, HOUR]];
    let v = v0;
    let prev = px(1);
    for (const [i, dt] of steps) {
      v = ewmaStep(v, prev * 10n ** 10n, px(i) * 10n ** 10n, BigInt(dt), DEFAULT_VOL.tau);
      prev = px(i);
    }
    const sigma = volatilityOf(v, DEFAULT_VOL);
    expect(sigma).to.equal(EXPECTED_GAP.sigma);
    // The view sees the same merge before anyone pokes.
    expect(await router.volatility(WETH)).to.equal(sigma);
    await time.setNextBlockTimestamp(tEnd + 1);
    const tx = router.poke(WETH, GAS);
    expect(m.observeLatest()).to.equal(true);
    expect(m.skipped).to.deep.equal([BigInt(B0 + HOUR), BigInt(B0 + 2 * HOUR)]);
    expect(m.varianceRate).to.equal(v);
    await expect(tx).to.emit(router, "VolatilitySampled").withArgs(WETH, px(61) * 10n ** 10n, tEnd, m.mmVol);
    const o = await router.observation(WETH);
    expect([o.varianceRate, o.samplePrice, o.sampleAt, o.mmVol, o.mmVolAt]).to.deep.equal([v, px(61) * 10n ** 10n, BigInt(tEnd), m.mmVol, BigInt(tEnd)]);
    expect(await router.volatilities(WETH)).to.deep.equal(Object.values(m.volatilities(BigInt(tEnd + 1))));
    expect(m.mmVol).to.equal(EXPECTED_GAP.mmVol);
    // Poking every round of the same history reaches every boundary: 10 hourly samples, another σ.
    let everyV = v0;
    prev = px(1);
    for (let h = 1; h <= 10; h++) {
      const i = 6 * h + 1; // the round at B0 + h hours
      everyV = ewmaStep(everyV, prev * 10n ** 10n, px(i) * 10n ** 10n, BigInt(HOUR), DEFAULT_VOL.tau);
      prev = px(i);
    }
    expect(volatilityOf(everyV, DEFAULT_VOL)).to.equal(EXPECTED_GAP.sigmaEveryRound);
    expect(sigma).to.not.equal(EXPECTED_GAP.sigmaEveryRound);
  });

  it("withholding pokes for 12 hours of real rounds (17 Aug 12:00–24:00 UTC, 52 rounds > 48): the early boundaries merge, exactly as the rule gives", async function () {
    const gap = { from: 1_692_273_600, to: 1_692_316_800 };
    const inGap = windowRounds().filter((r) => r.updatedAt >= gap.from && r.updatedAt < gap.to);
    expect(inGap.length).to.equal(52);
    const all = await replay(atEveryRound());
    const withheld = await replay(atEveryRound().filter((t) => t < gap.from || t >= gap.to));
    // The poke after the gap reads back 48 rounds, not to the rounds of the gap's first hours: those boundaries
    // are skipped and their returns merge into the first one it reaches (every read checked against the mirror).
    const skipped = withheld.mirror.skipped.map((b) => (Number(b) - withheld.shift - gap.from) / HOUR);
    expect(skipped).to.deep.equal(EXPECTED_CADENCE.skippedHoursIn12h);
    expect(all.mirror.skipped).to.deep.equal([]);
    const firstAfter = atEveryRound().find((t) => t >= gap.to)!;
    expect(withheld.seen.get(firstAfter)).to.deep.equal(EXPECTED_CADENCE.after12hGap);
    expect(all.seen.get(firstAfter)).to.deep.equal(EXPECTED_CADENCE.afterGap);
  });

  it("a feed that serves no history (getRoundData reverts) still serves prices; each poke past a boundary samples it at the round it reads, the nearest after it", async function () {
    const { router, feed, noHistory } = await loadFixture(noHistoryFixture);
    // The same rounds on both feeds: 35 rounds 10 minutes apart, 5 minutes past each (never on the grid), from
    // B0 + 300 (the reference: sampleAt B0), swinging 2,000 / 2,100 / 2,000 / 1,900; then 2,100 exactly at B0 + 6 h.
    const B0 = (Math.floor((await time.latest()) / HOUR) + 2) * HOUR;
    const times = [...Array.from({ length: 35 }, (_, i) => B0 + 300 + 600 * i), B0 + 6 * HOUR];
    const px = (i: number) => (i === 35 ? E8(2100) : [E8(2000), E8(2100), E8(2000), E8(1900)][i % 4]);
    const mNo = VolMirror.fromObservation(await router.observation(WETH));
    mNo.servesHistory = false;
    const mHist = VolMirror.fromObservation(await router.observation(ETH2));
    await withoutAutomine(async () => {
      for (let i = 0; i < times.length; i++) {
        const t = times[i];
        const block = await mineBlock(t, async () => [
          await noHistory.setRound(i + 1, px(i), t, t, GAS),
          await feed.setRound(i + 1, px(i), t, t, GAS),
          await router.poke(WETH, GAS),
          await router.poke(ETH2, GAS),
        ]);
        for (const m of [mNo, mHist]) {
          m.setRound(px(i) * 10n ** 10n, BigInt(t), BigInt(i + 1));
          m.observeLatest();
        }
        const at = { blockTag: block };
        // Prices are served from the latest round alone.
        expect(await router.price(WETH, at)).to.equal(px(i) * 10n ** 10n);
        expect(await router.volatilities(WETH, at), `no history, round ${i}`).to.deep.equal(Object.values(mNo.volatilities(BigInt(t))));
        expect(await router.volatilities(ETH2, at), `history, round ${i}`).to.deep.equal(Object.values(mHist.volatilities(BigInt(t))));
        // Without history every poke samples the boundaries it crosses: the grid point of its own round.
        expect((await router.observation(WETH, at)).sampleAt).to.equal(BigInt(t - (t % HOUR)));
        if (i < 35) {
          // The first round after each of the hours 1–5 is round 6h (5 minutes past): 2,000 each time, so the
          // samples return nothing and σ stays at its floor for 6 hours of ±5 % swings between them.
          expect(await router.volatility(WETH, at)).to.equal(DEFAULT_VOL.floor);
        }
      }
    });
    const sampled = async (asset: string) =>
      (await router.queryFilter(router.filters.VolatilitySampled(asset))).map((e) => [e.args.price, e.args.updatedAt]);
    // The reference, then one sample per hour: B0 + 1 h … B0 + 5 h at the round 5 minutes after each (2,000,
    // the nearest the feed shows), B0 + 6 h at the round on it (2,100). None skipped.
    expect(await sampled(WETH)).to.deep.equal([
      [E18(2000), BigInt(B0)],
      ...[1, 2, 3, 4, 5].map((h) => [E18(2000), BigInt(B0 + h * HOUR)]),
      [E18(2100), BigInt(B0 + 6 * HOUR)],
    ]);
    expect(mNo.skipped).to.deep.equal([]);
    expect(mNo.pricedAfter).to.deep.equal([1, 2, 3, 4, 5].map((h) => BigInt(B0 + h * HOUR)));
    let vNo = floorVarianceRate(DEFAULT_VOL.floor);
    for (let h = 1; h <= 5; h++) vNo = ewmaStep(vNo, E18(2000), E18(2000), BigInt(HOUR), DEFAULT_VOL.tau);
    vNo = ewmaStep(vNo, E18(2000), E18(2100), BigInt(HOUR), DEFAULT_VOL.tau);
    expect((await router.observation(WETH)).varianceRate).to.equal(vNo);
    expect(volatilityOf(vNo, DEFAULT_VOL)).to.equal(EXPECTED_NO_HISTORY.sigma);
    // With history: six hourly samples, each the last round before its boundary (2,100, 1,900, 2,100, 1,900,
    // 2,100), the last one the round at B0 + 6 h (2,100).
    let v = floorVarianceRate(DEFAULT_VOL.floor);
    let prev = E18(2000);
    for (let h = 1; h <= 6; h++) {
      const p = h === 6 ? E18(2100) : px(6 * h - 1) * 10n ** 10n;
      v = ewmaStep(v, prev, p, BigInt(HOUR), DEFAULT_VOL.tau);
      prev = p;
    }
    expect((await router.observation(ETH2)).varianceRate).to.equal(v);
    expect((await sampled(ETH2)).length).to.equal(7);
    expect(mHist.pricedAfter).to.deep.equal([]);
    expect(volatilityOf(v, DEFAULT_VOL)).to.equal(EXPECTED_NO_HISTORY.sigmaWithHistory);
  });

  it("a feed without history moves σ at each poke that crosses a boundary, priced by the round it reads (exact σ)", async function () {
    const { router, noHistory } = await loadFixture(noHistoryFixture);
    // 13 rounds half an hour apart from B0 + 300 (the reference, 2,000), two at 2,000 then two at 2,100 and so on:
    // the rounds 5 minutes past each hour (every other one) cross a boundary and alternate 2,100 / 2,000.
    const B0 = (Math.floor((await time.latest()) / HOUR) + 2) * HOUR;
    const t = (i: number) => B0 + 300 + 1800 * i;
    const px = (i: number) => (Math.floor(i / 2) % 2 === 0 ? E18(2000) : E18(2100));
    const m = VolMirror.fromObservation(await router.observation(WETH));
    m.servesHistory = false;
    let v = floorVarianceRate(DEFAULT_VOL.floor);
    let sigma = DEFAULT_VOL.floor;
    const sigmas: bigint[] = [];
    for (let i = 0; i <= 12; i++) {
      await time.setNextBlockTimestamp(t(i));
      await noHistory.setRound(i + 1, px(i) / 10n ** 10n, t(i), t(i));
      m.setRound(px(i), BigInt(t(i)), BigInt(i + 1));
      const crosses = i > 0 && i % 2 === 0; // the first poke after B0 + (i / 2) h
      const tx = router.poke(WETH);
      expect(m.observeLatest()).to.equal(crosses);
      if (crosses) {
        await expect(tx).to.emit(router, "VolatilitySampled").withArgs(WETH, px(i), B0 + (i / 2) * HOUR, m.mmVol);
        v = ewmaStep(v, px(i - 2), px(i), BigInt(HOUR), DEFAULT_VOL.tau);
      } else if (i === 0) {
        await expect(tx).to.emit(router, "VolatilitySampled").withArgs(WETH, px(0), B0, DEFAULT_VOL.floor); // the reference
      } else {
        await expect(tx).to.not.emit(router, "VolatilitySampled");
      }
      expect(m.varianceRate).to.equal(v);
      const now = await router.volatility(WETH);
      expect(now).to.equal(volatilityOf(v, DEFAULT_VOL));
      expect(await router.volatilities(WETH)).to.deep.equal(Object.values(m.volatilities(BigInt(await time.latest()))));
      // σ moves at every poke that crosses a boundary (each a ±5 % hourly return), at no other.
      if (crosses) {
        expect(now, `σ at round ${i}`).to.be.greaterThan(sigma);
        sigmas.push(now);
      } else expect(now, `σ at round ${i}`).to.equal(sigma);
      sigma = now;
    }
    expect(m.skipped).to.deep.equal([]);
    expect(m.pricedAfter).to.deep.equal([1, 2, 3, 4, 5, 6].map((h) => BigInt(B0 + h * HOUR)));
    const o = await router.observation(WETH);
    expect([o.varianceRate, o.samplePrice, o.sampleAt]).to.deep.equal([v, E18(2000), BigInt(B0 + 6 * HOUR)]);
    expect(sigmas).to.deep.equal(EXPECTED_NO_HISTORY.sigmaEachBoundary);
  });

  it("a round the router refuses (below minPrice) is never a sample: a later poke past the boundary prices it from the valid rounds", async function () {
    const { router, feed } = await loadFixture(bandFixture);
    // minPrice 100 USD. Round 1 at B0 (2,000, the reference), round 2 at B0 + 3,000 (50 USD: PriceRejected, not
    // recorded), round 3 at B0 + 3,700 (2,050). The walk back from round 3 stops at round 2: the boundary
    // B0 + 1 h, the last of that poke, is priced by round 3, the nearest valid round after it: one +2.5 % return.
    const B0 = (Math.floor((await time.latest()) / HOUR) + 2) * HOUR;
    await time.setNextBlockTimestamp(B0);
    await feed.setRound(1, E8(2000), B0, B0);
    await router.poke(WETH);
    const m = VolMirror.fromObservation(await router.observation(WETH)).setBand(E18(100), E18(1_000_000));
    m.setRound(E18(2000), BigInt(B0), 1n);

    await time.setNextBlockTimestamp(B0 + 3000);
    await feed.setRound(2, E8(50), B0 + 3000, B0 + 3000);
    const refused = router.poke(WETH);
    await expect(refused).to.emit(router, "PriceRejected");
    await expect(refused).to.not.emit(router, "VolatilitySampled");
    m.setRound(E18(50), BigInt(B0 + 3000), 2n);
    expect(m.observeLatest()).to.equal(false);
    let o = await router.observation(WETH);
    expect([o.price, o.updatedAt, o.samplePrice, o.sampleAt]).to.deep.equal([E18(2000), BigInt(B0), E18(2000), BigInt(B0)]);
    expect(await router.volatility(WETH)).to.equal(DEFAULT_VOL.floor);

    await time.setNextBlockTimestamp(B0 + 3700);
    await feed.setRound(3, E8(2050), B0 + 3700, B0 + 3700);
    m.setRound(E18(2050), BigInt(B0 + 3700), 3n);
    const v = ewmaStep(floorVarianceRate(DEFAULT_VOL.floor), E18(2000), E18(2050), BigInt(HOUR), DEFAULT_VOL.tau);
    // The view, before anyone pokes, already prices the boundary from the valid rounds.
    expect(await router.volatility(WETH)).to.equal(volatilityOf(v, DEFAULT_VOL));
    const tx = router.poke(WETH);
    expect(m.observeLatest()).to.equal(true);
    await expect(tx).to.emit(router, "VolatilitySampled").withArgs(WETH, E18(2050), B0 + HOUR, m.mmVol);
    expect(m.pricedAfter).to.deep.equal([BigInt(B0 + HOUR)]);
    expect(m.varianceRate).to.equal(v);
    o = await router.observation(WETH);
    expect([o.price, o.varianceRate, o.samplePrice, o.sampleAt, o.mmVol, o.mmVolAt]).to.deep.equal([
      E18(2050),
      v,
      E18(2050),
      BigInt(B0 + HOUR),
      m.mmVol,
      m.mmVolAt,
    ]);
    expect(await router.volatility(WETH)).to.equal(EXPECTED_BAND.sigma);
    expect(volatilityOf(v, DEFAULT_VOL)).to.equal(EXPECTED_BAND.sigma);
    expect(await router.volatilities(WETH)).to.deep.equal(Object.values(m.volatilities(BigInt(await time.latest()))));
    // Had the refused round priced B0 + 1 h (2,000 → 50, −97.5 %), σ would sit at the cap.
    expect(volatilityOf(ewmaStep(floorVarianceRate(DEFAULT_VOL.floor), E18(2000), E18(50), BigInt(HOUR), DEFAULT_VOL.tau), DEFAULT_VOL)).to.equal(DEFAULT_VOL.cap);
  });
});

/** A router with the MockAggregator (history served), no breaker, a sane band of 100 – 1,000,000 USD. */
async function bandFixture() {
  const [owner] = await ethers.getSigners();
  const router = (await ethers.deployContract("OracleRouter", [owner.address, ethers.ZeroAddress, 0])) as unknown as OracleRouter;
  const feed = (await ethers.deployContract("MockAggregator", [8])) as unknown as MockAggregator;
  const params = { heartbeat: 7200, minPrice: wad("100"), maxPrice: wad("1000000"), maxJumpBps: 10_000, cooldown: 0 };
  await router.setFeed(WETH, { feed: await feed.getAddress(), ...params });
  return { router, feed };
}

/** A router with two assets on the same rounds: WETH on a feed without history, ETH2 on the MockAggregator. */
async function noHistoryFixture() {
  const [owner] = await ethers.getSigners();
  const router = (await ethers.deployContract("OracleRouter", [owner.address, ethers.ZeroAddress, 0])) as unknown as OracleRouter;
  const noHistory = (await ethers.deployContract("NoHistoryAggregator", [8])) as unknown as NoHistoryAggregator;
  const feed = (await ethers.deployContract("MockAggregator", [8])) as unknown as MockAggregator;
  const params = { heartbeat: 7200, minPrice: wad("1"), maxPrice: wad("1000000"), maxJumpBps: 10_000, cooldown: 0 };
  await router.setFeed(WETH, { feed: await noHistory.getAddress(), ...params });
  await router.setFeed(ETH2, { feed: await feed.getAddress(), ...params });
  return { router, feed, noHistory };
}

/** A router with the Chainlink-like MockAggregator (history served), no breaker. */
async function gapFixture() {
  const [owner] = await ethers.getSigners();
  const router = (await ethers.deployContract("OracleRouter", [owner.address, ethers.ZeroAddress, 0])) as unknown as OracleRouter;
  const feed = (await ethers.deployContract("MockAggregator", [8])) as unknown as MockAggregator;
  const params = { heartbeat: 7200, minPrice: wad("1"), maxPrice: wad("1000000"), maxJumpBps: 10_000, cooldown: 0 };
  await router.setFeed(WETH, { feed: await feed.getAddress(), ...params });
  return { router, feed };
}

/** Figures of the cadence tests (each also checked above against the oracle mirror after every block). */
const WINDOW_ROUNDS = 199;
const EXPECTED_CADENCE = {
  /** 142.97 %, at 17 Aug 23:00:47 UTC (the sample of 23:00, after the flash drop) */
  peak: 1_429_700_338_653_417_260n,
  /** σ and σ_mm at the window's end: 63.85 % and 64.49 % (σ_mm, at 20 percentage points a day, is still coming
   *  down toward σ) */
  final: [638_487_586_228_731_623n, 644_875_074_041_228_499n],
  /** σ and σ_mm at the first poke after 17 Aug 24:00: 141.53 % and 28.78 % */
  afterGap: [1_415_272_180_843_823_411n, 287_803_882_535_129_273n],
  /** boundaries merged when pokes are withheld 17 Aug 12:00–24:00, hours after 12:00 */
  skippedHoursIn12h: [0, 1, 2, 3],
  /** σ and σ_mm at the first poke after that 12-hour gap: 142.29 % and 28.71 % */
  after12hGap: [1_422_864_553_659_744_522n, 287_094_222_161_805_276n],
};
const EXPECTED_GAP = {
  /** 332.27 %: two boundaries merged into the third */
  sigma: 3_322_710_197_448_895_782n,
  /** 15.83 %: σ_mm leaves its floor only after the first sample (B0 + 3 h, toward the floor that held before it),
   *  then moves one hour's step ⌈maxChangePerDay × 3,600 / 86,400⌉ (0.2 a day: 0.83 points) at each of the 7
   *  samples after it */
  mmVol: DEFAULT_VOL.floor + 7n * mulDivUp(DEFAULT_VOL.maxChangePerDay, BigInt(HOUR), DAY),
  /** 377.70 %: the same history with every boundary reached */
  sigmaEveryRound: 3_777_015_726_550_655_494n,
};
const EXPECTED_NO_HISTORY = {
  /** 94.01 %: five hourly samples at 2,000 (the rounds just after the boundaries), then +5 % at B0 + 6 h */
  sigma: 940_121_044_319_183_400n,
  /** σ after each poke that crosses a boundary, alternating ±5 % returns */
  sigmaEachBoundary: [
    941_063_228_484_471_175n, // 94.11 %
    1_282_471_763_103_553_091n, // 128.25 %
    1_566_826_241_240_517_390n, // 156.68 %
    1_775_191_402_239_589_487n, // 177.52 %
    1_975_158_812_354_482_041n, // 197.52 %
    2_130_671_270_700_983_568n, // 213.07 %
  ],
  /** 367.60 %: the six hourly returns of the same rounds */
  sigmaWithHistory: 3_675_982_696_052_254_269n,
};
const EXPECTED_BAND = {
  /** 47.81 %: one +2.5 % return over 1 h (2,000 → 2,050), the refused 50 USD round never a sample */
  sigma: 478_121_323_499_163_755n,
};

// ============================================================================================ (2), (3) engine

const P2000 = E18(2000);

/** systemFixture with funding off, a FeedPusher, and alice's account with 1,000 USDC of margin and no position. */
async function engineFixture() {
  const f = await systemFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...M });
  const pusher = (await ethers.deployContract("FeedPusher")) as unknown as FeedPusher;
  await f.vault.connect(f.alice).createAccount();
  const id = await f.vault.accountCount();
  await f.usdc.mint(f.alice.address, USDC(1_000));
  await f.usdc.connect(f.alice).approve(f.vault, USDC(1_000));
  await f.vault.connect(f.alice).depositMargin(id, f.usdc, USDC(1_000));
  return { ...f, pusher, id };
}
type Fx = Awaited<ReturnType<typeof engineFixture>>;

/** engineFixture with ETH's market at M_NO_FLOOR (no IM volatility floor). */
async function engineFixtureNoImFloor() {
  const f = await engineFixture();
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...M_NO_FLOOR });
  return f;
}

/**
 * The oracle mirror from ETH's recorded state (the fixture's history, read once) and the feed's latest round
 * (the one the next samples may read back), to predict what follows.
 */
async function ethMirror(f: Fx): Promise<VolMirror> {
  const m = VolMirror.fromObservation(await f.oracle.observation(f.weth));
  const [roundId, answer, , updatedAt] = await f.ethFeed.latestRoundData();
  m.setRound(answer * 10n ** 10n, updatedAt, roundId);
  return m;
}

/** A new ETH round at `usd`, set and poked in one transaction at block time `t` (updatedAt = t). */
async function ethRoundAt(f: Fx, usd: bigint, t: number) {
  const [roundId] = await f.ethFeed.latestRoundData();
  await time.setNextBlockTimestamp(t);
  return f.pusher.pushAndPoke(f.ethFeed, f.oracle, f.weth, roundId + 1n, E8(usd), t);
}

/** Equity and IM after opening `size` ETH at `px` from `margin` USDC units: the fee settles against USDC, rounded up. */
function afterOpen(
  margin: bigint,
  size: bigint,
  px: bigint,
  vols: { target: bigint; maintenance: bigint },
  m: MarketConfig = M,
) {
  const n = mulDivUp(size, px, WAD);
  const fee = mulDivUp(n, m.feeRate, WAD);
  const equity = (margin - mulDivUp(fee, 1n, USDC_SCALE)) * USDC_SCALE;
  const req = requirements(m, n, vols.target, vols.maintenance, SQRT_H);
  return { notional: n, equity, im: req.im + R, mm: req.mm + R };
}

/** The largest size (wei) whose open leaves equity >= IM: the largest leverage IM allows. */
function maxImSize(
  margin: bigint,
  px: bigint,
  vols: { target: bigint; maintenance: bigint },
  m: MarketConfig = M,
): bigint {
  let lo = 0n;
  let hi = 10n ** 24n;
  while (lo < hi) {
    const mid = (lo + hi + 1n) / 2n;
    const a = afterOpen(margin, mid, px, vols, m);
    if (a.equity >= a.im) lo = mid;
    else hi = mid - 1n;
  }
  return lo;
}

/**
 * The engine agrees on an account with 1,000 USDC and no position: `size` opens (static call) and one wei more
 * reverts BelowInitialMargin(id, equity, im).
 */
async function expectMaxSize(
  f: Fx,
  id: bigint,
  size: bigint,
  px: bigint,
  vols: { target: bigint; maintenance: bigint },
  m: MarketConfig = M,
) {
  const e = f.engine.connect(f.alice);
  await e.modifyPosition.staticCall(id, f.ethMarket, size, ethers.MaxUint256);
  const over = afterOpen(USDC(1_000), size + 1n, px, vols, m);
  await expect(e.modifyPosition.staticCall(id, f.ethMarket, size + 1n, ethers.MaxUint256))
    .to.be.revertedWithCustomError(f.engine, "BelowInitialMargin")
    .withArgs(id, over.equity, over.im);
}

/** A second account of alice's with 1,000 USDC of margin and no position. */
async function freshAccount(f: Fx): Promise<bigint> {
  await f.vault.connect(f.alice).createAccount();
  const id = await f.vault.accountCount();
  await f.usdc.mint(f.alice.address, USDC(1_000));
  await f.usdc.connect(f.alice).approve(f.vault, USDC(1_000));
  await f.vault.connect(f.alice).depositMargin(id, f.usdc, USDC(1_000));
  return id;
}

const vols = async (f: Fx) => {
  const [target, maintenance] = await f.oracle.volatilities(f.weth);
  return { target, maintenance };
};

describe("Volatility › σ_mm moves at a bounded speed; IM follows σ at once", function () {
  it("a crash round does not move σ_mm; σ_mm then rises by ⌈maxChangePerDay × elapsed / 1 day⌉; a position at max IM leverage survives its entry price", async function () {
    const f = await loadFixture(engineFixture);
    const m = await ethMirror(f);
    const floor = DEFAULT_VOL.floor;
    const t0 = await time.latest();
    expect(m.volatilities(BigInt(t0))).to.deep.equal({ target: floor, maintenance: floor });
    expect(await vols(f)).to.deep.equal({ target: floor, maintenance: floor });

    // The largest long IM allows at 2,000 with σ at its floor: IM prices it at the market's stress volatility
    // (imVolFloor, 200 %), 2.88 ETH, 5,761.44 USD on 997.12 USD of equity after the fee (5.8x).
    expect(M.imVolFloor).to.equal(wad("2"));
    const size = maxImSize(USDC(1_000), P2000, { target: floor, maintenance: floor });
    expect(size).to.equal(EXPECTED_CRASH.maxSize);
    await expectMaxSize(f, f.id, size, P2000, { target: floor, maintenance: floor });
    await f.engine.connect(f.alice).modifyPosition(f.id, f.ethMarket, size, ethers.MaxUint256);
    const opened = afterOpen(USDC(1_000), size, P2000, { target: floor, maintenance: floor });

    // The crash round: −20 % exactly at the next grid boundary, that boundary's volatility sample.
    const t1 = (Math.floor((await time.latest()) / HOUR) + 1) * HOUR;
    await expect(ethRoundAt(f, 1600n, t1)).to.emit(f.oracle, "VolatilitySampled").withArgs(f.weth, E18(1600), t1, floor);
    expect(m.observe(E18(1600), BigInt(t1))).to.equal(true);
    const sigma = m.target();
    expect(sigma).to.equal(EXPECTED_CRASH.sigma); // 374.5 % a year
    // In that round σ_mm does not move: it moves toward the target that held before the sample (the floor).
    const o1 = await f.oracle.observation(f.weth);
    expect([o1.mmVol, o1.mmVolAt]).to.deep.equal([floor, BigInt(t1)]);
    expect(await vols(f)).to.deep.equal({ target: sigma, maintenance: floor });
    // IM follows σ at once (new risk), MM keeps σ_mm: health moved by price alone.
    const atCrash = afterOpen(USDC(1_000), size, E18(1600), { target: sigma, maintenance: floor });
    const st1 = await f.engine.accountState(f.id);
    expect(st1.maintenanceMargin).to.equal(atCrash.mm);
    expect(st1.initialMargin).to.equal(atCrash.im);

    // σ_mm then rises toward σ by exactly ⌈0.2 × elapsed / 1 day⌉ (views, continuously in block time).
    for (const dt of [1, 60, 1_800, 3_000]) {
      await time.increaseTo(t1 + dt);
      const expected = floor + mulDivUp(DEFAULT_VOL.maxChangePerDay, BigInt(dt), DAY);
      expect(expected).to.equal(approach(floor, sigma, DEFAULT_VOL, BigInt(dt)));
      expect(await f.oracle.maintenanceVolatility(f.weth), `σ_mm after ${dt} s`).to.equal(expected);
    }

    // The price back at the entry in the same interval (not a sample): the position opened at the largest
    // leverage IM allowed is not liquidatable (health 10.4). Under the previous model (MM at σ itself) it would be
    // (0.836), even at the leverage the stress floor allows.
    const t2 = t1 + 3_500; // the same interval as the crash round
    await ethRoundAt(f, 2000n, t2);
    expect(m.observe(P2000, BigInt(t2))).to.equal(false);
    const back = await vols(f);
    expect(back).to.deep.equal(m.volatilities(BigInt(t2)));
    expect(back.maintenance).to.equal(floor + mulDivUp(DEFAULT_VOL.maxChangePerDay, BigInt(t2 - t1), DAY));
    const atEntry = afterOpen(USDC(1_000), size, P2000, back);
    expect(atEntry.equity).to.equal(opened.equity);
    const health = wDivDown(atEntry.equity, atEntry.mm);
    expect(health).to.equal(EXPECTED_CRASH.healthAtEntry); // 10.400
    expect((await f.engine.accountState(f.id)).health).to.equal(health);
    await time.setNextBlockTimestamp(t2 + 1);
    const oneLater = afterOpen(USDC(1_000), size, P2000, m.volatilities(BigInt(t2 + 1)));
    await expect(f.engine.connect(f.keeper).liquidate(f.id))
      .to.be.revertedWithCustomError(f.engine, "NotLiquidatable")
      .withArgs(f.id, wDivDown(oneLater.equity, oneLater.mm));
    const previousModel = afterOpen(USDC(1_000), size, P2000, { target: sigma, maintenance: sigma });
    expect(wDivDown(previousModel.equity, previousModel.mm)).to.equal(EXPECTED_CRASH.healthPreviousModel); // 0.836
    // New risk pays σ at once (374.5 %, above the 200 % floor): the largest open is now 1.61 ETH (3.3x), and the
    // engine agrees.
    const newMax = maxImSize(USDC(1_000), P2000, back);
    expect(newMax).to.equal(EXPECTED_CRASH.maxSizeAfter);
    await expectMaxSize(f, await freshAccount(f), newMax, P2000, back);

    // At the next sample σ_mm is carried exactly ⌈0.2 × 3,600 / 86,400⌉ up from the floor (the target before it).
    const t3 = t1 + 3_600;
    const step = mulDivUp(DEFAULT_VOL.maxChangePerDay, 3_600n, DAY);
    expect(DEFAULT_VOL.maxChangePerDay).to.equal(wad("0.2"));
    expect(step).to.equal(8_333_333_333_333_334n); // ⌈0.2e18 / 24⌉
    await expect(ethRoundAt(f, 2000n, t3)).to.emit(f.oracle, "VolatilitySampled").withArgs(f.weth, P2000, t3, floor + step);
    expect(m.observe(P2000, BigInt(t3))).to.equal(true);
    const o3 = await f.oracle.observation(f.weth);
    expect([o3.mmVol, o3.mmVolAt, o3.varianceRate]).to.deep.equal([floor + step, BigInt(t3), m.varianceRate]);
  });
});

/** Figures of the crash test (each also computed above from the mirrors). */
const EXPECTED_CRASH = {
  maxSize: 2_880_717_676_268_055_909n,
  sigma: 3_745_076_768_236_479_288n,
  healthAtEntry: 10_399_851_740_242_870_387n,
  healthPreviousModel: 836_038_870_263_426_037n,
  maxSizeAfter: 1_606_726_251_910_721_791n,
};

describe("Volatility › governance keeps σ: setFeed never resets it, resetVolatility does", function () {
  it("setFeed with the same feed keeps σ and the largest position IM allows; a new feed keeps σ; resetVolatility resets", async function () {
    // No IM volatility floor here (M_NO_FLOOR): the largest open is this test's probe of σ, and a 200 % floor, above
    // σ before and after the reset, would make it the floor's whatever σ is.
    const f = await loadFixture(engineFixtureNoImFloor);
    const m = await ethMirror(f);
    // σ above its floor: +10 % exactly at the next grid boundary (that boundary's sample).
    const t1 = (Math.floor((await time.latest()) / HOUR) + 1) * HOUR;
    await ethRoundAt(f, 2200n, t1);
    expect(m.observe(E18(2200), BigInt(t1))).to.equal(true);
    const px = E18(2200);
    const v1 = await vols(f);
    expect(v1).to.deep.equal(m.volatilities(BigInt(await time.latest())));
    expect(v1.target).to.equal(EXPECTED_GOV.sigma); // 187.4 %
    // IM reads max(σ, σ_mm) = σ here (no floor), so the largest open does not drift with σ_mm.
    const maxBefore = maxImSize(USDC(1_000), px, v1, M_NO_FLOOR);
    expect(maxBefore).to.equal(EXPECTED_GOV.maxSize);
    await expectMaxSize(f, f.id, maxBefore, px, v1, M_NO_FLOOR);

    // setFeed with the same feed and parameters (the demo's call before opening): nothing moves.
    const obs = await f.oracle.observation(f.weth);
    await expect(f.oracle.setFeed(f.weth, { feed: await f.ethFeed.getAddress(), ...CRYPTO_FEED }))
      .to.emit(f.oracle, "FeedSet")
      .and.not.to.emit(f.oracle, "VolParamsSet");
    expect(await f.oracle.observation(f.weth)).to.deep.equal(obs);
    const v2 = await vols(f);
    expect(v2.target).to.equal(v1.target);
    expect(v2).to.deep.equal(m.volatilities(BigInt(await time.latest())));
    await expectMaxSize(f, f.id, maxBefore, px, v2, M_NO_FLOOR);

    // A new feed: the price reference restarts, σ stays and σ_mm is carried to the block of the call.
    const feed2 = await (await ethers.getContractFactory("MockAggregator")).deploy(8);
    await feed2.setAnswer(E8(2200));
    const at = (await time.latest()) + 5;
    await time.setNextBlockTimestamp(at);
    await f.oracle.setFeed(f.weth, { feed: await feed2.getAddress(), ...CRYPTO_FEED });
    m.restartPriceReference(BigInt(at));
    const o = await f.oracle.observation(f.weth);
    expect([o.varianceRate, o.mmVol, o.mmVolAt, o.sampleAt, o.price]).to.deep.equal([m.varianceRate, m.mmVol, BigInt(at), 0n, 0n]);
    const v3 = await vols(f);
    expect(v3.target).to.equal(v1.target);
    expect(v3).to.deep.equal(m.volatilities(BigInt(await time.latest())));
    await expectMaxSize(f, f.id, maxBefore, px, v3, M_NO_FLOOR);

    // resetVolatility, governance's explicit call: σ and σ_mm at the floor, and the largest open jumps from 6.1x
    // to 41.3x (the "20.5x to 40.7x" happened on every setFeed before; the deployed 200 % IM floor would
    // cap both at 5.8x).
    await expect(f.oracle.resetVolatility(f.weth)).to.emit(f.oracle, "VolatilityReset").withArgs(f.weth);
    const v4 = await vols(f);
    expect(v4).to.deep.equal({ target: DEFAULT_VOL.floor, maintenance: DEFAULT_VOL.floor });
    const maxAfterReset = maxImSize(USDC(1_000), px, v4, M_NO_FLOOR);
    expect(maxAfterReset).to.equal(EXPECTED_GOV.maxSizeAfterReset);
    await expectMaxSize(f, f.id, maxAfterReset, px, v4, M_NO_FLOOR);
    const lev = (size: bigint) => wDivDown(mulDivUp(size, px, WAD), afterOpen(USDC(1_000), size, px, v4, M_NO_FLOOR).equity);
    expect([lev(maxBefore), lev(maxAfterReset)]).to.deep.equal(EXPECTED_GOV.leverage);
  });

  const bad: [string, Partial<IOracleRouter.VolParamsStruct>][] = [
    ["an interval below 60 s", { interval: VOL_BOUNDS.minInterval - 1n }],
    ["an interval above 1 day", { interval: VOL_BOUNDS.maxInterval + 1n }],
    ["maxChangePerDay below 0.01", { maxChangePerDay: VOL_BOUNDS.minMaxChangePerDay - 1n }],
    ["maxChangePerDay above 10", { maxChangePerDay: VOL_BOUNDS.maxMaxChangePerDay + 1n }],
  ];
  const defaults: IOracleRouter.VolParamsStruct = { ...DEFAULT_VOL };
  for (const [what, over] of bad) {
    it(`setVolParams rejects ${what} with InvalidVolParams`, async function () {
      const f = await loadFixture(engineFixture);
      await expect(f.oracle.setVolParams(f.weth, { ...defaults, ...over }))
        .to.be.revertedWithCustomError(f.oracle, "InvalidVolParams")
        .withArgs(await f.weth.getAddress());
    });
  }

  it("setVolParams accepts the bounds of interval (60 s, 1 day) and maxChangePerDay (0.01, 10)", async function () {
    const f = await loadFixture(engineFixture);
    for (const over of [
      { interval: VOL_BOUNDS.minInterval, maxChangePerDay: VOL_BOUNDS.minMaxChangePerDay },
      { interval: VOL_BOUNDS.maxInterval, maxChangePerDay: VOL_BOUNDS.maxMaxChangePerDay },
    ]) {
      const p = { ...defaults, ...over };
      await expect(f.oracle.setVolParams(f.weth, p))
        .to.emit(f.oracle, "VolParamsSet")
        .withArgs(await f.weth.getAddress(), [p.tau, p.floor, p.cap, p.interval, p.maxChangePerDay]);
      const v = await f.oracle.volParams(f.weth);
      expect([v.interval, v.maxChangePerDay]).to.deep.equal([over.interval, over.maxChangePerDay]);
    }
  });
});

/** Figures of the governance test (each also computed above from the mirrors). */
const EXPECTED_GOV = {
  sigma: 1_874_459_922_216_291_078n,
  maxSize: 2_777_169_084_046_176_790n,
  maxSizeAfterReset: 18_410_192_238_887_418_268n,
  leverage: [6_128_493_834_918_969_208n, 41_339_599_927_683_013_566n],
};
