import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";

import type { FeedPusher, MockAggregator, OracleRouter } from "../../typechain-types";
import type { IOracleRouter } from "../../typechain-types/contracts/core/OracleRouter";
import { loadPriceCsv, type PricePoint } from "../../lib/prices";
import { DEFAULT_VOL, VolMirror, ewmaStep, floorVarianceRate, jumpBpsOf } from "../helpers/oracleMath";

// ------------------------------------------------------------------ units and constants (mirror Constants.sol)
const WAD = 10n ** 18n;
const SECONDS_PER_YEAR = 365n * 86_400n;
const DEFAULT_TAU = DEFAULT_VOL.tau; // 1 day
const DEFAULT_FLOOR = DEFAULT_VOL.floor; // 10 %
const DEFAULT_CAP = DEFAULT_VOL.cap; // 500 %
const DEFAULT_INTERVAL = DEFAULT_VOL.interval; // 1 hour sampling grid
const DEFAULT_MAX_CHANGE = DEFAULT_VOL.maxChangePerDay; // 20 percentage points a day
const INTERVAL = Number(DEFAULT_INTERVAL);
/** Hourly samples (returns) among the first 1500 real Chainlink ETH/USD rounds of the data file. */
const SAMPLED_RETURNS = 955;
const MAX_SEQUENCER_GRACE = 86_400;
const MAX_BREAKER_COOLDOWN = 7 * 86_400;
const UINT128_MAX = (1n << 128n) - 1n;

const WETH = ethers.getAddress("0x00000000000000000000000000000000000000e1");
const USDC = ethers.getAddress("0x00000000000000000000000000000000000000c6");
const WSTETH = ethers.getAddress("0x0000000000000000000000000000000000000018");
const UNLISTED = ethers.getAddress("0x00000000000000000000000000000000000000dd");

const HEARTBEAT = 3600;
const MIN_PRICE = 1n * WAD; // 1 USD, exclusive
const MAX_PRICE = 1_000_000n * WAD; // 1,000,000 USD, exclusive
const MAX_JUMP_BPS = 2000;
const COOLDOWN = 3600;
const GRACE = 3600;

const ceilDiv = (a: bigint, b: bigint): bigint => (a + b - 1n) / b;
/** Volatility params with the defaults of the two grid/speed fields, as setVolParams takes them. */
const volParams = (tau: number | bigint, floor: bigint, cap: bigint): IOracleRouter.VolParamsStruct => ({
  tau,
  floor,
  cap,
  interval: DEFAULT_INTERVAL,
  maxChangePerDay: DEFAULT_MAX_CHANGE,
});
/** The first second of the sampling interval after chain time now + `ahead` seconds. */
async function nextGridStart(ahead = 10): Promise<number> {
  return (Math.floor(((await time.latest()) + ahead) / INTERVAL) + 1) * INTERVAL;
}

function feedParams(feed: string, over: Partial<IOracleRouter.FeedParamsStruct> = {}): IOracleRouter.FeedParamsStruct {
  return {
    feed,
    heartbeat: HEARTBEAT,
    minPrice: MIN_PRICE,
    maxPrice: MAX_PRICE,
    maxJumpBps: MAX_JUMP_BPS,
    cooldown: COOLDOWN,
    ...over,
  };
}

/** Mines `feed.setRound(roundId, answer, updatedAt, updatedAt)` in a block at `at`, so views then run at `at`. */
async function setRoundAt(feed: MockAggregator, roundId: number, answer: bigint, updatedAt: number, at: number) {
  await time.setNextBlockTimestamp(at);
  await feed.setRound(roundId, answer, updatedAt, updatedAt);
}

async function deployFixture() {
  const [owner, other] = await ethers.getSigners();
  const router = (await ethers.deployContract("OracleRouter", [owner.address, ethers.ZeroAddress, 0])) as unknown as OracleRouter;
  const feed8 = (await ethers.deployContract("MockAggregator", [8])) as unknown as MockAggregator;
  const feed6 = (await ethers.deployContract("MockAggregator", [6])) as unknown as MockAggregator;
  const feed18 = (await ethers.deployContract("MockAggregator", [18])) as unknown as MockAggregator;
  const sequencer = (await ethers.deployContract("MockAggregator", [0])) as unknown as MockAggregator;
  const pusher = (await ethers.deployContract("FeedPusher")) as unknown as FeedPusher;

  await router.setFeed(WETH, feedParams(await feed8.getAddress()));
  await feed8.setAnswer(2000n * 10n ** 8n); // 2000 USD
  return { router, feed8, feed6, feed18, sequencer, pusher, owner, other };
}

type Fixture = Awaited<ReturnType<typeof deployFixture>>;

/** Offset that moves a historical series to just after the current chain time (chain time cannot go back). */
async function shiftFor(series: PricePoint[]): Promise<number> {
  return (await time.latest()) + 100 - series[0].timestamp;
}

describe("OracleRouter", function () {
  // ---------------------------------------------------------------- setFeed
  describe("setFeed", function () {
    it("stores the params, caches the feed decimals and gives the asset the default VolParams", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      const p = await router.feedParams(WETH);
      expect(p.feed).to.equal(await feed8.getAddress());
      expect(p.heartbeat).to.equal(HEARTBEAT);
      expect(p.minPrice).to.equal(MIN_PRICE);
      expect(p.maxPrice).to.equal(MAX_PRICE);
      expect(p.maxJumpBps).to.equal(MAX_JUMP_BPS);
      expect(p.cooldown).to.equal(COOLDOWN);
      expect(await router.feedDecimals(WETH)).to.equal(8);
      const v = await router.volParams(WETH);
      expect([v.tau, v.floor, v.cap, v.interval, v.maxChangePerDay]).to.deep.equal([
        DEFAULT_TAU,
        DEFAULT_FLOOR,
        DEFAULT_CAP,
        DEFAULT_INTERVAL,
        DEFAULT_MAX_CHANGE,
      ]);
    });

    it("starts the EWMA at the floor: varianceRate = floor(floor^2 / year) and volatility = floor", async function () {
      const { router } = await loadFixture(deployFixture);
      const o = await router.observation(WETH);
      expect(o.varianceRate).to.equal(floorVarianceRate(DEFAULT_FLOOR));
      expect(o.varianceRate).to.equal(317_097_919n); // 0.01e18 / 31_536_000, rounded down
      expect(o.price).to.equal(0n);
      expect(o.updatedAt).to.equal(0n);
      expect([o.sampleAt, o.samplePrice, o.mmVol]).to.deep.equal([0n, 0n, DEFAULT_FLOOR]);
      expect(await router.volatility(WETH)).to.equal(DEFAULT_FLOOR);
      expect(await router.maintenanceVolatility(WETH)).to.equal(DEFAULT_FLOOR);
    });

    it("emits FeedSet and VolParamsSet with the defaults", async function () {
      const { router, feed6 } = await loadFixture(deployFixture);
      const feed = await feed6.getAddress();
      await expect(router.setFeed(USDC, feedParams(feed, { minPrice: WAD / 2n, maxPrice: 2n * WAD })))
        .to.emit(router, "FeedSet")
        .and.to.emit(router, "VolParamsSet")
        .withArgs(USDC, [DEFAULT_TAU, DEFAULT_FLOOR, DEFAULT_CAP, DEFAULT_INTERVAL, DEFAULT_MAX_CHANGE]);
    });

    it("keeps VolParams the owner already set", async function () {
      const { router, feed6 } = await loadFixture(deployFixture);
      await router.setVolParams(USDC, { tau: 3600, floor: WAD / 100n, cap: WAD, interval: 900, maxChangePerDay: WAD });
      await expect(router.setFeed(USDC, feedParams(await feed6.getAddress(), { minPrice: WAD / 2n, maxPrice: 2n * WAD })))
        .not.to.emit(router, "VolParamsSet");
      const v = await router.volParams(USDC);
      expect([v.tau, v.floor, v.cap, v.interval, v.maxChangePerDay]).to.deep.equal([3600n, WAD / 100n, WAD, 900n, WAD]);
    });

    it("rejects a feed with 19 decimals with FeedDecimalsTooHigh and accepts 18", async function () {
      const { router, feed18 } = await loadFixture(deployFixture);
      const feed19 = await ethers.deployContract("MockAggregator", [19]);
      await expect(router.setFeed(WSTETH, feedParams(await feed19.getAddress())))
        .to.be.revertedWithCustomError(router, "FeedDecimalsTooHigh")
        .withArgs(await feed19.getAddress(), 19);
      await expect(router.setFeed(WSTETH, feedParams(await feed18.getAddress()))).to.emit(router, "FeedSet");
      expect(await router.feedDecimals(WSTETH)).to.equal(18);
    });

    const badParams: [string, Partial<IOracleRouter.FeedParamsStruct>][] = [
      ["a zero feed", { feed: ethers.ZeroAddress }],
      ["a zero heartbeat", { heartbeat: 0 }],
      ["a zero minPrice", { minPrice: 0n }],
      ["minPrice equal to maxPrice", { minPrice: 5n * WAD, maxPrice: 5n * WAD }],
      ["minPrice above maxPrice", { minPrice: 6n * WAD, maxPrice: 5n * WAD }],
      ["maxPrice above type(uint128).max", { maxPrice: UINT128_MAX + 1n }],
      ["maxPrice above MAX_FEED_PRICE = 2^126", { maxPrice: 2n ** 126n + 1n }],
      ["a zero maxJumpBps", { maxJumpBps: 0 }],
      ["maxJumpBps above 10_000", { maxJumpBps: 10_001 }],
      ["a cooldown above MAX_BREAKER_COOLDOWN", { cooldown: MAX_BREAKER_COOLDOWN + 1 }],
    ];
    for (const [what, over] of badParams) {
      it(`rejects ${what} with InvalidFeedParams`, async function () {
        const { router, feed8 } = await loadFixture(deployFixture);
        await expect(router.setFeed(WSTETH, feedParams(await feed8.getAddress(), over)))
          .to.be.revertedWithCustomError(router, "InvalidFeedParams")
          .withArgs(WSTETH);
      });
    }

    it("accepts the extreme valid params (maxJumpBps 10_000, maxPrice MAX_FEED_PRICE = 2^126, cooldown 7 days)", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await expect(
        router.setFeed(
          WSTETH,
          feedParams(await feed8.getAddress(), { maxJumpBps: 10_000, maxPrice: 2n ** 126n, cooldown: MAX_BREAKER_COOLDOWN }),
        ),
      ).to.emit(router, "FeedSet");
    });

    it("rejects the zero asset with InvalidFeedParams", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await expect(router.setFeed(ethers.ZeroAddress, feedParams(await feed8.getAddress())))
        .to.be.revertedWithCustomError(router, "InvalidFeedParams")
        .withArgs(ethers.ZeroAddress);
    });

    it("with the same feed keeps the observation, the breaker and the volatility (a governance call resets nothing)", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      const t0 = await nextGridStart();
      await setRoundAt(feed8, 1, 2000n * e8, t0, t0);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 2200n * e8, t0 + INTERVAL, t0 + INTERVAL); // +10 %: a sample, σ rises
      await router.poke(WETH);
      const t = t0 + INTERVAL + 10;
      await setRoundAt(feed8, 3, 3000n * e8, t, t); // +36 %: trips (no sample: same interval)
      await expect(router.poke(WETH)).to.emit(router, "BreakerTripped");
      const before = await router.observation(WETH);
      expect(before.tripped).to.equal(true);
      expect(await router.volatility(WETH)).to.be.greaterThan(DEFAULT_FLOOR);

      await expect(router.setFeed(WETH, feedParams(await feed8.getAddress(), { maxJumpBps: 5000 }))).to.emit(router, "FeedSet");
      expect(await router.observation(WETH)).to.deep.equal(before);
      expect((await router.feedParams(WETH)).maxJumpBps).to.equal(5000); // the parameters did change
      await expect(router.price(WETH)).to.be.revertedWithCustomError(router, "CircuitBreakerTripped").withArgs(WETH, t + COOLDOWN);
    });

    it("with a new feed restarts the price reference, the breaker and the sample grid, and keeps σ and σ_mm", async function () {
      const { router, feed8, feed18 } = await loadFixture(deployFixture);
      const t0 = await nextGridStart();
      await setRoundAt(feed8, 1, 2000n * e8, t0, t0);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 2200n * e8, t0 + INTERVAL, t0 + INTERVAL); // a sample: σ rises
      await router.poke(WETH);
      const t = t0 + INTERVAL + 10;
      await setRoundAt(feed8, 3, 3000n * e8, t, t); // trips
      await expect(router.poke(WETH)).to.emit(router, "BreakerTripped");
      const before = await router.observation(WETH);
      const sigma = await router.volatility(WETH);

      // The mirror of the state: the new feed carries σ_mm to the block time of setFeed, toward the same target.
      const m = new VolMirror(0n);
      m.observe(2000n * WAD, BigInt(t0));
      m.observe(2200n * WAD, BigInt(t0 + INTERVAL));
      m.observe(3000n * WAD, BigInt(t));
      expect(m.varianceRate).to.equal(before.varianceRate);
      await feed18.setRound(7, 2500n * WAD, t, t);
      const at = t + 100;
      await time.setNextBlockTimestamp(at);
      await router.setFeed(WETH, feedParams(await feed18.getAddress()));
      m.restartPriceReference(BigInt(at));
      const o = await router.observation(WETH);
      expect([o.tripped, o.price, o.updatedAt, o.breakerUntil, o.samplePrice, o.sampleAt]).to.deep.equal([false, 0n, 0n, 0n, 0n, 0n]);
      expect(o.varianceRate).to.equal(before.varianceRate);
      expect([o.mmVol, o.mmVolAt]).to.deep.equal([m.mmVol, BigInt(at)]);
      expect(await router.volatility(WETH)).to.equal(sigma);
      // The new feed's round is the new reference: no breaker against the old feed's 3,000.
      expect(await router.price(WETH)).to.equal(2500n * WAD);
    });

    it("after a new feed, a sample at a boundary before the setFeed block does not run σ_mm's clock back", async function () {
      const { router, feed8, feed18 } = await loadFixture(deployFixture);
      const t0 = await nextGridStart();
      await setRoundAt(feed8, 1, 2000n * e8, t0, t0);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 2200n * e8, t0 + INTERVAL, t0 + INTERVAL); // a sample: σ rises above σ_mm
      await router.poke(WETH);
      const m = VolMirror.fromObservation(await router.observation(WETH));
      expect(m.target()).to.be.greaterThan(m.mmVol);

      // The new feed's latest round is older than the grid boundary t0 + 1 h; setFeed comes 100 s after it.
      const r1 = t0 + INTERVAL - 100;
      await setRoundAt(feed18, 1, 2200n * WAD, r1, t0 + INTERVAL + 2);
      const at = t0 + INTERVAL + 100;
      await time.setNextBlockTimestamp(at);
      await router.setFeed(WETH, feedParams(await feed18.getAddress()));
      m.restartPriceReference(BigInt(at));
      m.setRound(2200n * WAD, BigInt(r1), 1n);
      await router.poke(WETH); // the reference: its round's boundary, t0
      m.observeLatest();
      expect([m.samplePrice, m.sampleAt]).to.deep.equal([2200n * WAD, BigInt(t0)]);
      const mmAtSetFeed = m.mmVol;

      // The next round samples the boundary t0 + 1 h, before the setFeed block: the EWMA steps (dt = 1 h), but
      // σ_mm already counts the time up to `at` (carried at setFeed), so it does not move and its clock stays at
      // `at` instead of going back to t0 + 1 h (which would count 100 s twice).
      const r2 = t0 + INTERVAL + 200;
      await setRoundAt(feed18, 2, 2300n * WAD, r2, r2);
      await expect(router.poke(WETH))
        .to.emit(router, "VolatilitySampled")
        .withArgs(WETH, 2200n * WAD, t0 + INTERVAL, mmAtSetFeed);
      m.setRound(2300n * WAD, BigInt(r2), 2n);
      expect(m.observeLatest()).to.equal(true);
      const o = await router.observation(WETH);
      expect([o.sampleAt, o.samplePrice, o.varianceRate]).to.deep.equal([BigInt(t0 + INTERVAL), 2200n * WAD, m.varianceRate]);
      expect([o.mmVol, o.mmVolAt]).to.deep.equal([mmAtSetFeed, BigInt(at)]);
      expect([m.mmVol, m.mmVolAt]).to.deep.equal([mmAtSetFeed, BigInt(at)]);
      // Views carry σ_mm from `at`.
      const now = BigInt(await time.latest());
      expect(await router.volatilities(WETH)).to.deep.equal(Object.values(m.volatilities(now)));
    });

    it("resetVolatility puts σ and σ_mm back at the floor and emits VolatilityReset; owner only, FeedNotSet without a feed", async function () {
      const { router, feed8, other } = await loadFixture(deployFixture);
      const t0 = await nextGridStart();
      await setRoundAt(feed8, 1, 2000n * e8, t0, t0);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 2200n * e8, t0 + INTERVAL, t0 + INTERVAL);
      await router.poke(WETH);
      expect(await router.volatility(WETH)).to.be.greaterThan(DEFAULT_FLOOR);

      await expect(router.connect(other).resetVolatility(WETH))
        .to.be.revertedWithCustomError(router, "OwnableUnauthorizedAccount")
        .withArgs(other.address);
      await expect(router.resetVolatility(UNLISTED)).to.be.revertedWithCustomError(router, "FeedNotSet").withArgs(UNLISTED);
      const at = t0 + INTERVAL + 5;
      await time.setNextBlockTimestamp(at);
      await expect(router.resetVolatility(WETH)).to.emit(router, "VolatilityReset").withArgs(WETH);
      const o = await router.observation(WETH);
      expect(o.varianceRate).to.equal(floorVarianceRate(DEFAULT_FLOOR));
      expect([o.price, o.updatedAt, o.sampleAt, o.samplePrice, o.mmVol, o.mmVolAt]).to.deep.equal([0n, 0n, 0n, 0n, DEFAULT_FLOOR, BigInt(at)]);
      expect(await router.volatilities(WETH)).to.deep.equal([DEFAULT_FLOOR, DEFAULT_FLOOR]);
      // The feed's round is the new reference.
      expect(await router.price(WETH)).to.equal(2200n * WAD);
    });

    it("only the owner can set a feed (OwnableUnauthorizedAccount)", async function () {
      const { router, feed8, other } = await loadFixture(deployFixture);
      await expect(router.connect(other).setFeed(WSTETH, feedParams(await feed8.getAddress())))
        .to.be.revertedWithCustomError(router, "OwnableUnauthorizedAccount")
        .withArgs(other.address);
    });
  });

  // ---------------------------------------------------------------- setVolParams
  describe("setVolParams", function () {
    // The bounds of interval and maxChangePerDay: test/oracle/Volatility.test.ts.
    const bad: [string, IOracleRouter.VolParamsStruct][] = [
      ["a zero tau", volParams(0, DEFAULT_FLOOR, DEFAULT_CAP)],
      ["tau above MAX_VOL_TAU (365 days)", volParams(365 * 86_400 + 1, DEFAULT_FLOOR, DEFAULT_CAP)],
      ["a zero floor", volParams(3600, 0n, DEFAULT_CAP)],
      ["floor above cap", volParams(3600, 2n * WAD, WAD)],
      ["cap above MAX_VOLATILITY (1000 %)", volParams(3600, DEFAULT_FLOOR, 10n * WAD + 1n)],
    ];
    for (const [what, params] of bad) {
      it(`rejects ${what} with InvalidVolParams`, async function () {
        const { router } = await loadFixture(deployFixture);
        await expect(router.setVolParams(WETH, params)).to.be.revertedWithCustomError(router, "InvalidVolParams").withArgs(WETH);
      });
    }

    it("accepts floor == cap == MAX_VOLATILITY and tau == 365 days, and emits VolParamsSet", async function () {
      const { router } = await loadFixture(deployFixture);
      await expect(router.setVolParams(WETH, volParams(365 * 86_400, 10n * WAD, 10n * WAD)))
        .to.emit(router, "VolParamsSet")
        .withArgs(WETH, [365n * 86_400n, 10n * WAD, 10n * WAD, DEFAULT_INTERVAL, DEFAULT_MAX_CHANGE]);
      expect(await router.volatility(WETH)).to.equal(10n * WAD);
      expect(await router.maintenanceVolatility(WETH)).to.equal(10n * WAD);
    });

    it("restarts the EWMA at the new floor while nothing has been observed", async function () {
      const { router } = await loadFixture(deployFixture);
      const floor = (3n * WAD) / 10n; // 30 %
      await router.setVolParams(WETH, volParams(7200, floor, DEFAULT_CAP));
      expect((await router.observation(WETH)).varianceRate).to.equal(floorVarianceRate(floor));
      expect((await router.observation(WETH)).mmVol).to.equal(floor);
      expect(await router.volatilities(WETH)).to.deep.equal([floor, floor]);
    });

    it("only the owner can set volatility params (OwnableUnauthorizedAccount)", async function () {
      const { router, other } = await loadFixture(deployFixture);
      await expect(router.connect(other).setVolParams(WETH, volParams(3600, DEFAULT_FLOOR, DEFAULT_CAP)))
        .to.be.revertedWithCustomError(router, "OwnableUnauthorizedAccount")
        .withArgs(other.address);
    });
  });

  // ---------------------------------------------------------------- sequencer feed (constructor)
  describe("sequencer feed (constructor, immutable)", function () {
    it("the constructor stores the feed and grace period and emits SequencerFeedSet", async function () {
      const { owner, sequencer } = await loadFixture(deployFixture);
      const addr = await sequencer.getAddress();
      const router = (await ethers.deployContract("OracleRouter", [owner.address, addr, MAX_SEQUENCER_GRACE])) as unknown as OracleRouter;
      await expect(router.deploymentTransaction()).to.emit(router, "SequencerFeedSet").withArgs(addr, MAX_SEQUENCER_GRACE);
      expect(await router.sequencerFeed()).to.equal(addr);
      expect(await router.sequencerGracePeriod()).to.equal(MAX_SEQUENCER_GRACE);
    });

    it("an L1 router has no sequencer feed (address(0), grace 0)", async function () {
      const { router } = await loadFixture(deployFixture);
      expect(await router.sequencerFeed()).to.equal(ethers.ZeroAddress);
      expect(await router.sequencerGracePeriod()).to.equal(0n);
    });

    it("rejects a grace period above MAX_SEQUENCER_GRACE with InvalidSequencerParams", async function () {
      const { owner, sequencer } = await loadFixture(deployFixture);
      const addr = await sequencer.getAddress();
      const factory = await ethers.getContractFactory("OracleRouter");
      await expect(factory.deploy(owner.address, addr, MAX_SEQUENCER_GRACE + 1))
        .to.be.revertedWithCustomError(factory, "InvalidSequencerParams")
        .withArgs(addr, MAX_SEQUENCER_GRACE + 1);
    });

    it("no one can change the sequencer feed after deployment (no setter)", async function () {
      const { router } = await loadFixture(deployFixture);
      expect(router.interface.fragments.map((x) => (x as { name?: string }).name)).not.to.include("setSequencerFeed");
    });
  });

  // ---------------------------------------------------------------- price: normalisation
  describe("price", function () {
    it("normalises an 8-decimal answer to WAD exactly (1908.18855732 → 1908.18855732e18)", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await feed8.setAnswer(190_818_855_732n);
      expect(await router.price(WETH)).to.equal(1_908_188_557_320_000_000_000n);
      expect(await router.tryPrice(WETH)).to.deep.equal([true, 1_908_188_557_320_000_000_000n]);
    });

    it("normalises a 6-decimal answer to WAD exactly (0.999912 → 0.999912e18)", async function () {
      const { router, feed6 } = await loadFixture(deployFixture);
      await router.setFeed(USDC, feedParams(await feed6.getAddress(), { minPrice: WAD / 2n, maxPrice: 2n * WAD }));
      await feed6.setAnswer(999_912n);
      expect(await router.price(USDC)).to.equal(999_912_000_000_000_000n);
    });

    it("passes an 18-decimal answer through unchanged", async function () {
      const { router, feed18 } = await loadFixture(deployFixture);
      await router.setFeed(WSTETH, feedParams(await feed18.getAddress()));
      await feed18.setAnswer(2_345_678_901_234_567_890_123n);
      expect(await router.price(WSTETH)).to.equal(2_345_678_901_234_567_890_123n);
    });

    it("accepts an answer exactly heartbeat seconds old", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      const t = (await time.latest()) + 10;
      await setRoundAt(feed8, 2, 2100n * 10n ** 8n, t - HEARTBEAT, t);
      expect(await router.price(WETH)).to.equal(2100n * WAD);
    });

    it("accepts prices one wei inside both bounds", async function () {
      const { router, feed18 } = await loadFixture(deployFixture);
      await router.setFeed(WSTETH, feedParams(await feed18.getAddress()));
      await feed18.setAnswer(MIN_PRICE + 1n);
      expect(await router.price(WSTETH)).to.equal(MIN_PRICE + 1n);
      await feed18.setAnswer(MAX_PRICE - 1n);
      expect(await router.price(WSTETH)).to.equal(MAX_PRICE - 1n);
    });
  });

  // ---------------------------------------------------------------- invalid answers: price / tryPrice / poke
  /** Each case arranges an invalid read and returns the asset plus the error `price` must raise. */
  interface InvalidCase {
    what: string;
    error: string;
    arrange: (f: Fixture) => Promise<{ asset: string; args: unknown[] }>;
  }
  const e8 = 10n ** 8n;
  const invalidCases: InvalidCase[] = [
    {
      what: "a zero answer",
      error: "NonPositiveAnswer",
      arrange: async ({ feed8 }) => {
        const t = (await time.latest()) + 10;
        await setRoundAt(feed8, 2, 0n, t, t);
        return { asset: WETH, args: [WETH, 0n] };
      },
    },
    {
      what: "a negative answer",
      error: "NonPositiveAnswer",
      arrange: async ({ feed8 }) => {
        const t = (await time.latest()) + 10;
        await setRoundAt(feed8, 2, -1n, t, t);
        return { asset: WETH, args: [WETH, -1n] };
      },
    },
    {
      what: "updatedAt == 0",
      error: "ZeroUpdatedAt",
      arrange: async ({ feed8 }) => {
        await feed8.setRound(2, 2000n * e8, 0, 0);
        return { asset: WETH, args: [WETH] };
      },
    },
    {
      what: "an updatedAt in the future",
      error: "FutureUpdatedAt",
      arrange: async ({ feed8 }) => {
        const t = (await time.latest()) + 10;
        // One minute ahead, so it is still in the future for the poke mined in the next block.
        await setRoundAt(feed8, 2, 2000n * e8, t + 60, t);
        return { asset: WETH, args: [WETH, t + 60] };
      },
    },
    {
      what: "an answer heartbeat + 1 seconds old",
      error: "StalePrice",
      arrange: async ({ feed8 }) => {
        const t = (await time.latest()) + 10;
        await setRoundAt(feed8, 2, 2000n * e8, t - HEARTBEAT - 1, t);
        return { asset: WETH, args: [WETH, t - HEARTBEAT - 1, HEARTBEAT] };
      },
    },
    {
      what: "an answer exactly at minPrice",
      error: "PriceOutOfBounds",
      arrange: async ({ feed8 }) => {
        await feed8.setAnswer(1n * e8); // 1 USD = minPrice
        return { asset: WETH, args: [WETH, MIN_PRICE, MIN_PRICE, MAX_PRICE] };
      },
    },
    {
      what: "an answer below minPrice",
      error: "PriceOutOfBounds",
      arrange: async ({ feed8 }) => {
        await feed8.setAnswer(e8 / 2n); // 0.5 USD
        return { asset: WETH, args: [WETH, WAD / 2n, MIN_PRICE, MAX_PRICE] };
      },
    },
    {
      what: "an answer exactly at maxPrice",
      error: "PriceOutOfBounds",
      arrange: async ({ feed8 }) => {
        await feed8.setAnswer(1_000_000n * e8);
        return { asset: WETH, args: [WETH, MAX_PRICE, MIN_PRICE, MAX_PRICE] };
      },
    },
    {
      what: "an answer above maxPrice",
      error: "PriceOutOfBounds",
      arrange: async ({ feed8 }) => {
        await feed8.setAnswer(1_000_000n * e8 + 1n);
        return { asset: WETH, args: [WETH, MAX_PRICE + 10n ** 10n, MIN_PRICE, MAX_PRICE] };
      },
    },
    {
      what: "an answer too large to scale to WAD (saturates at uint256 max)",
      error: "PriceOutOfBounds",
      arrange: async ({ feed8 }) => {
        const t = (await time.latest()) + 10;
        await setRoundAt(feed8, 2, ethers.MaxInt256, t, t);
        return { asset: WETH, args: [WETH, ethers.MaxUint256, MIN_PRICE, MAX_PRICE] };
      },
    },
    {
      what: "an asset with no feed",
      error: "FeedNotSet",
      arrange: async () => ({ asset: UNLISTED, args: [UNLISTED] }),
    },
    {
      what: "a feed whose latestRoundData reverts",
      error: "FeedCallFailed",
      arrange: async ({ feed8 }) => {
        await feed8.setReverting(true);
        return { asset: WETH, args: [WETH] };
      },
    },
  ];

  describe("price › invalid answers", function () {
    for (const c of invalidCases) {
      it(`rejects ${c.what} with ${c.error}`, async function () {
        const f = await loadFixture(deployFixture);
        const { asset, args } = await c.arrange(f);
        await expect(f.router.price(asset))
          .to.be.revertedWithCustomError(f.router, c.error)
          .withArgs(...args);
      });
    }
  });

  describe("tryPrice", function () {
    for (const c of invalidCases) {
      it(`returns (false, 0) for ${c.what}`, async function () {
        const f = await loadFixture(deployFixture);
        const { asset } = await c.arrange(f);
        expect(await f.router.tryPrice(asset)).to.deep.equal([false, 0n]);
      });
    }

    it("returns (true, price) for a valid answer", async function () {
      const { router } = await loadFixture(deployFixture);
      expect(await router.tryPrice(WETH)).to.deep.equal([true, 2000n * WAD]);
    });
  });

  describe("poke › invalid answers", function () {
    for (const c of invalidCases) {
      it(`emits PriceRejected with the ${c.error} selector for ${c.what}, returns (false, 0) and does not revert`, async function () {
        const f = await loadFixture(deployFixture);
        const { asset } = await c.arrange(f);
        const selector = f.router.interface.getError(c.error)!.selector;
        expect(await f.router.poke.staticCall(asset)).to.deep.equal([false, 0n]);
        await expect(f.router.poke(asset)).to.emit(f.router, "PriceRejected").withArgs(asset, selector); // a receipt with the event: no revert
        expect((await f.router.observation(asset)).updatedAt).to.equal(0n);
      });

      it(`pokeMarket: the same PriceRejected (${c.error}) for ${c.what}, returns (false, 0, 0, 0) and does not revert`, async function () {
        const f = await loadFixture(deployFixture);
        const { asset } = await c.arrange(f);
        const selector = f.router.interface.getError(c.error)!.selector;
        expect(await f.router.pokeMarket.staticCall(asset)).to.deep.equal([false, 0n, 0n, 0n]);
        await expect(f.router.pokeMarket(asset)).to.emit(f.router, "PriceRejected").withArgs(asset, selector);
        expect((await f.router.observation(asset)).updatedAt).to.equal(0n);
      });
    }
  });

  // ---------------------------------------------------------------- sequencer
  describe("sequencer", function () {
    /** The fixture with a router deployed with the sequencer feed (grace GRACE) and the WETH feed set. */
    async function withSequencer(f: Fixture): Promise<Fixture> {
      const router = (await ethers.deployContract("OracleRouter", [
        f.owner.address,
        await f.sequencer.getAddress(),
        GRACE,
      ])) as unknown as OracleRouter;
      await router.setFeed(WETH, feedParams(await f.feed8.getAddress()));
      return { ...f, router };
    }

    /** A router with the sequencer feed, whose status is `answer` since `startedAt`, mined at `at`. */
    async function sequencerAt(f0: Fixture, answer: bigint, startedAt: number, at: number): Promise<Fixture> {
      const f = await withSequencer(f0);
      await time.setNextBlockTimestamp(at);
      await f.sequencer.setRound(1, answer, startedAt, startedAt);
      // The price round is fresh at `at`; its block is pinned at `at + 1` (the tests count from it).
      await time.setNextBlockTimestamp(at + 1);
      await f.feed8.setRound(5, 2000n * e8, at, at);
      return f;
    }

    it("is up on L1 (no sequencer feed)", async function () {
      const { router } = await loadFixture(deployFixture);
      expect(await router.sequencerUp()).to.equal(true);
    });

    it("rejects every price with SequencerDown while the sequencer is down", async function () {
      let f = await loadFixture(deployFixture);
      const t = (await time.latest()) + 10;
      f = await sequencerAt(f, 1n, t - 2 * GRACE, t);
      expect(await f.router.sequencerUp()).to.equal(false);
      await expect(f.router.price(WETH)).to.be.revertedWithCustomError(f.router, "SequencerDown").withArgs();
      expect(await f.router.tryPrice(WETH)).to.deep.equal([false, 0n]);
      const selector = f.router.interface.getError("SequencerDown")!.selector;
      await expect(f.router.poke(WETH)).to.emit(f.router, "PriceRejected").withArgs(WETH, selector);
    });

    it("treats a reverting sequencer feed as down", async function () {
      let f = await loadFixture(deployFixture);
      f = await withSequencer(f);
      await f.sequencer.setReverting(true);
      expect(await f.router.sequencerUp()).to.equal(false);
      await expect(f.router.price(WETH)).to.be.revertedWithCustomError(f.router, "SequencerDown");
    });

    it("treats an uninitialised sequencer round (startedAt == 0) as down", async function () {
      let f = await loadFixture(deployFixture);
      const t = (await time.latest()) + 10;
      f = await sequencerAt(f, 0n, 0, t);
      expect(await f.router.sequencerUp()).to.equal(false);
      await expect(f.router.price(WETH)).to.be.revertedWithCustomError(f.router, "SequencerDown");
    });

    it("rejects prices with SequencerGracePeriod(upSince, grace) up to and including the grace boundary", async function () {
      let f = await loadFixture(deployFixture);
      const t = (await time.latest()) + 10;
      // The sequencer came back at `up`; the setup ends at t + 1 = up + GRACE - 1, one second inside grace.
      const up = t + 2 - GRACE;
      f = await sequencerAt(f, 0n, up, t);
      expect(await time.latest()).to.equal(up + GRACE - 1);
      // The poke is mined exactly at the boundary: rejected, not reverted.
      const selector = f.router.interface.getError("SequencerGracePeriod")!.selector;
      await time.setNextBlockTimestamp(up + GRACE);
      await expect(f.router.poke(WETH)).to.emit(f.router, "PriceRejected").withArgs(WETH, selector);
      // Views now run at the boundary block too.
      expect(await time.latest()).to.equal(up + GRACE);
      expect(await f.router.sequencerUp()).to.equal(false);
      await expect(f.router.price(WETH)).to.be.revertedWithCustomError(f.router, "SequencerGracePeriod").withArgs(up, GRACE);
      expect(await f.router.tryPrice(WETH)).to.deep.equal([false, 0n]);
    });

    it("serves prices again one second after the grace period", async function () {
      let f = await loadFixture(deployFixture);
      const t = (await time.latest()) + 10;
      const up = t - GRACE; // last setup block at t + 1 = up + GRACE + 1
      f = await sequencerAt(f, 0n, up, t);
      expect(await time.latest()).to.equal(up + GRACE + 1);
      expect(await f.router.sequencerUp()).to.equal(true);
      expect(await f.router.price(WETH)).to.equal(2000n * WAD);
    });
  });

  // ---------------------------------------------------------------- poke and EWMA
  describe("poke", function () {
    it("records the first observation without a return, as the sample reference at its grid boundary, and emits ObservationRecorded at the floor", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      const [, , , updatedAt] = await feed8.latestRoundData();
      // The reference: the current price, at the grid boundary at or before its round.
      const boundary = updatedAt - (updatedAt % DEFAULT_INTERVAL);
      const tx = router.poke(WETH);
      await expect(tx).to.emit(router, "ObservationRecorded").withArgs(WETH, 2000n * WAD, updatedAt, DEFAULT_FLOOR);
      await expect(tx).to.emit(router, "VolatilitySampled").withArgs(WETH, 2000n * WAD, boundary, DEFAULT_FLOOR);
      const o = await router.observation(WETH);
      expect(o.price).to.equal(2000n * WAD);
      expect(o.updatedAt).to.equal(updatedAt);
      expect(o.varianceRate).to.equal(floorVarianceRate(DEFAULT_FLOOR));
      expect([o.samplePrice, o.sampleAt]).to.deep.equal([2000n * WAD, boundary]);
      expect(o.tripped).to.equal(false);
    });

    it("returns (true, price) for a valid answer", async function () {
      const { router } = await loadFixture(deployFixture);
      expect(await router.poke.staticCall(WETH)).to.deep.equal([true, 2000n * WAD]);
    });

    it("does not record the same round twice", async function () {
      const { router } = await loadFixture(deployFixture);
      await router.poke(WETH);
      await expect(router.poke(WETH)).not.to.emit(router, "ObservationRecorded");
    });

    it("updates the variance rate exactly as ceil((tau v + ceil(r^2)) / (tau + dt)) at a boundary of the grid, priced at the last round at or before it", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      // The reference round 5 minutes before a grid boundary: the reference sits at the boundary before it.
      const boundary = await nextGridStart(400);
      const t0 = boundary - 300;
      await setRoundAt(feed8, 1, 2000n * e8, t0, t0);
      await router.poke(WETH);
      const o0 = await router.observation(WETH);
      expect([o0.samplePrice, o0.sampleAt]).to.deep.equal([2000n * WAD, BigInt(boundary - INTERVAL)]);
      // A round in the same interval is recorded (price, breaker) but is no sample: the EWMA does not move.
      await setRoundAt(feed8, 2, 2010n * e8, t0 + 200, t0 + 200);
      await expect(router.poke(WETH)).not.to.emit(router, "VolatilitySampled");
      const oSame = await router.observation(WETH);
      expect([oSame.price, oSame.varianceRate, oSame.samplePrice, oSame.sampleAt]).to.deep.equal([
        2010n * WAD,
        o0.varianceRate,
        2000n * WAD,
        BigInt(boundary - INTERVAL),
      ]);
      // 2,030 five minutes after the boundary: the sample at the boundary is the last round at or before it
      // (2,010, round 2), +0.5 % from the reference over dt = one interval; 2,030 is the price, not the sample.
      const t = boundary + 300;
      await setRoundAt(feed8, 3, 2030n * e8, t, t);
      const dt = INTERVAL;
      const expected = ewmaStep(o0.varianceRate, 2000n * WAD, 2010n * WAD, BigInt(dt), DEFAULT_TAU);
      await expect(router.poke(WETH)).to.emit(router, "VolatilitySampled").withArgs(WETH, 2010n * WAD, boundary, DEFAULT_FLOOR);
      const o1 = await router.observation(WETH);
      expect(o1.varianceRate).to.equal(expected);
      // r^2 = 0.005^2 = 2.5e13 WAD; v' = (86400 * 317097919 + 2.5e13) / 90000, rounded up.
      expect(expected).to.equal(ceilDiv(86_400n * 317_097_919n + 25_000_000_000_000n, 90_000n));
      expect(o1.price).to.equal(2030n * WAD);
      expect(o1.updatedAt).to.equal(t);
      expect([o1.samplePrice, o1.sampleAt]).to.deep.equal([2010n * WAD, BigInt(boundary)]);
    });

    it("does not trip on a move of exactly maxJumpBps", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await router.poke(WETH);
      const t = (await time.latest()) + 10;
      await setRoundAt(feed8, 2, 2400n * e8, t, t); // +20.00 % = 2000 bps = maxJumpBps
      await expect(router.poke(WETH)).not.to.emit(router, "BreakerTripped");
      expect(await router.price(WETH)).to.equal(2400n * WAD);
    });

    it("trips on a move one wei above maxJumpBps (jumpBps rounds up to 2001)", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await router.poke(WETH);
      const t = (await time.latest()) + 10;
      await setRoundAt(feed8, 2, 2400n * e8 + 1n, t, t);
      await expect(router.poke(WETH))
        .to.emit(router, "BreakerTripped")
        .withArgs(WETH, 2000n * WAD, 2400n * WAD + 10n ** 10n, 2001n, t + COOLDOWN);
    });
  });

  describe("pokeMarket", function () {
    /** A recorded round at a grid boundary, then an unpoked +5 % round at the next one (a real return): σ moves. */
    async function sampledRound(f: Fixture): Promise<number> {
      const t0 = await nextGridStart();
      await setRoundAt(f.feed8, 1, 2000n * e8, t0, t0);
      await f.router.poke(WETH);
      const t1 = t0 + INTERVAL;
      await setRoundAt(f.feed8, 2, 2100n * e8, t1, t1);
      await time.increaseTo(t1 + 600); // σ_mm moves toward the new target for 600 s and more (calls and the next block)
      return t1;
    }

    it("returns the price and exactly volatilities(asset) after a new round, and the same again from the transaction's cache", async function () {
      const f = await loadFixture(deployFixture);
      await sampledRound(f);
      const [first, viewTarget, viewMaintenance, second] = await f.pusher.pokeMarketTwice.staticCall(f.router, WETH);
      expect([first.ok, first.price]).to.deep.equal([true, 2100n * WAD]);
      expect([first.target, first.maintenance]).to.deep.equal([viewTarget, viewMaintenance]);
      expect([second.ok, second.price, second.target, second.maintenance]).to.deep.equal([true, 2100n * WAD, viewTarget, viewMaintenance]);
      // Not a trivial case: the return moved σ above the floor, and σ_mm (moving at its bounded speed) is between.
      expect(viewTarget).to.be.greaterThan(DEFAULT_FLOOR);
      expect(viewMaintenance).to.be.greaterThan(DEFAULT_FLOOR);
      expect(viewMaintenance).to.be.lessThan(viewTarget);
    });

    it("records the round as poke does: the same events, once, and the same observation", async function () {
      const f = await loadFixture(deployFixture);
      const t1 = await sampledRound(f);
      const viewed = await f.router.volatility(WETH); // the unpoked round, as poke will record it
      const tx = f.pusher.pokeMarketTwice(f.router, WETH);
      await expect(tx).to.emit(f.router, "ObservationRecorded").withArgs(WETH, 2100n * WAD, t1, viewed);
      await expect(tx).to.emit(f.router, "VolatilitySampled");
      const receipt = await (await tx).wait();
      const recorded = receipt!.logs.filter((l) => l.topics[0] === f.router.interface.getEvent("ObservationRecorded").topicHash);
      expect(recorded).to.have.length(1); // the second call is served from the cache
      const byPokeMarket = await f.router.observation(WETH);
      const at = await time.latest();

      // The same history through poke, at the same time (the fixture again: the chain is reverted to it).
      const g = await loadFixture(deployFixture);
      expect(await sampledRound(g)).to.equal(t1);
      await time.setNextBlockTimestamp(at);
      await g.router.poke(WETH);
      expect(await g.router.observation(WETH)).to.deep.equal(byPokeMarket);
    });

    it("returns the price and volatilities(asset) for a round already recorded (nothing new to record)", async function () {
      const f = await loadFixture(deployFixture);
      await sampledRound(f);
      await f.router.poke(WETH);
      await time.increase(1200); // σ_mm moves on; the round (601 s old at the poke) is still fresh
      const [first, viewTarget, viewMaintenance, second] = await f.pusher.pokeMarketTwice.staticCall(f.router, WETH);
      expect([first.ok, first.price, first.target, first.maintenance]).to.deep.equal([true, 2100n * WAD, viewTarget, viewMaintenance]);
      expect([second.ok, second.price, second.target, second.maintenance]).to.deep.equal([true, 2100n * WAD, viewTarget, viewMaintenance]);
      await expect(f.pusher.pokeMarketTwice(f.router, WETH)).not.to.emit(f.router, "ObservationRecorded");
    });

    it("returns (false, 0, 0, 0) on a breaker trip, as poke returns (false, 0), and emits BreakerTripped", async function () {
      const f = await loadFixture(deployFixture);
      await f.router.poke(WETH);
      const t = (await time.latest()) + 10;
      await setRoundAt(f.feed8, 2, 1500n * e8, t, t); // -25 %
      const [first, , , second] = await f.pusher.pokeMarketTwice.staticCall(f.router, WETH);
      expect([first.ok, first.price, first.target, first.maintenance]).to.deep.equal([false, 0n, 0n, 0n]);
      expect([second.ok, second.price, second.target, second.maintenance]).to.deep.equal([false, 0n, 0n, 0n]);
      await expect(f.router.pokeMarket(WETH)).to.emit(f.router, "BreakerTripped").withArgs(WETH, 2000n * WAD, 1500n * WAD, 2500n, t + COOLDOWN);
    });

  });

  describe("volatility", function () {
    it("reverts FeedNotSet for an asset with no feed", async function () {
      const { router } = await loadFixture(deployFixture);
      await expect(router.volatility(UNLISTED)).to.be.revertedWithCustomError(router, "FeedNotSet").withArgs(UNLISTED);
    });

    it("is clamped to the cap after a violent move", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await router.setFeed(WETH, feedParams(await feed8.getAddress(), { maxJumpBps: 10_000 }));
      // The reference one second before a grid boundary (sampleAt: the boundary before it), the move at the
      // boundary: the sample there, +100 % over dt = one interval.
      const t = await nextGridStart();
      await setRoundAt(feed8, 1, 2000n * e8, t - 1, t - 1);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 4000n * e8, t, t + 1); // +100 % within a second: far above 500 % a year
      await expect(router.poke(WETH)).to.emit(router, "ObservationRecorded").withArgs(WETH, 4000n * WAD, t, DEFAULT_CAP);
      expect(await router.volatility(WETH)).to.equal(DEFAULT_CAP);
      // σ_mm did not move with the sample (it moves toward the target that held before it: the floor).
      expect((await router.observation(WETH)).mmVol).to.equal(DEFAULT_FLOOR);
    });

    it("tracks the sampled EWMA of the real Chainlink ETH/USD history within 0.5 % of a float computation", async function () {
      // Real mainnet rounds (SOURCES.md): first 1500 rounds, 2023-04-05 onwards, raw 8-decimal answers.
      const ROWS = 1500;
      const TOLERANCE = 0.005; // 0.5 % relative: integer rounding is ~1e-18 relative; float error ~1e-15
      const SANITY = [0.2, 0.8]; // ETH realised volatility in spring 2023: 20 % .. 80 % a year
      const series = loadPriceCsv("chainlink_eth_usd_mainnet_2023-04-05_2024-01-29.csv", 8).slice(0, ROWS);
      expect(series.length).to.equal(ROWS);

      const { router, feed8, pusher } = await loadFixture(deployFixture);
      // Real rounds are up to 3696 s apart: allow two hours; never trip (this test measures volatility only).
      await router.setFeed(WETH, feedParams(await feed8.getAddress(), { heartbeat: 7200, maxJumpBps: 10_000 }));
      const feed = await feed8.getAddress();
      const routerAddr = await router.getAddress();
      // Chain time cannot go back to 2023: shift every updatedAt by a whole number of days, so the shifted rounds
      // fall on the real feed's hourly grid (which rounds are samples, dt and the EWMA are unchanged).
      const shift = Math.ceil((await shiftFor(series)) / 86_400) * 86_400;

      for (let i = 0; i < series.length; i++) {
        const updatedAt = series[i].timestamp + shift;
        await time.setNextBlockTimestamp(updatedAt); // block.timestamp == updatedAt
        await pusher.pushAndPoke(feed, routerAddr, WETH, i + 1, series[i].price, updatedAt, { gasLimit: 500_000 });
      }

      // Float reference, independent of the contract and of the bigint mirror: a sample at every hour of the
      // feed's clock, priced at the last round at or before it (the first round's hour is the reference); its
      // return is taken from the previous sample's price over the hour: alpha = dt / (tau + dt);
      // v = (1 - alpha) v + alpha r^2 / dt; vol = sqrt(v * year).
      const tau = Number(DEFAULT_TAU);
      const year = Number(SECONDS_PER_YEAR);
      let v = 0.1 ** 2 / year;
      let refPx = Number(series[0].price) / 1e8;
      let returns = 0;
      let k = 0; // the last round at or before the hour
      const lastHour = Math.floor(series[ROWS - 1].timestamp / INTERVAL) * INTERVAL;
      for (let b = Math.floor(series[0].timestamp / INTERVAL) * INTERVAL + INTERVAL; b <= lastHour; b += INTERVAL) {
        while (k + 1 < ROWS && series[k + 1].timestamp <= b) k++;
        const p = Number(series[k].price) / 1e8;
        const dt = INTERVAL;
        const r = (p - refPx) / refPx;
        const alpha = dt / (tau + dt);
        v = (1 - alpha) * v + (alpha * r * r) / dt;
        refPx = p;
        returns++;
      }
      const floatVol = Math.min(Math.max(Math.sqrt(v * year), 0.1), 5);

      // Exact integer mirror with the contract's rounding (test/helpers/oracleMath.ts).
      const m = new VolMirror(0n);
      for (const row of series) m.observe(row.price * 10n ** 10n, BigInt(row.timestamp + shift));
      // 1500 rounds over 39.8 days: one sample per hour of the feed, none skipped (a poke at every round reads
      // back a few rounds at most; the deviation-triggered rounds in between are recorded but are not samples).
      expect(m.skipped).to.deep.equal([]);
      expect(m.samples.length - 1).to.equal(returns);
      expect(returns).to.equal(SAMPLED_RETURNS);

      const o = await router.observation(WETH);
      expect(o.price).to.equal(series[ROWS - 1].price * 10n ** 10n);
      expect(o.updatedAt).to.equal(series[ROWS - 1].timestamp + shift);
      expect(o.varianceRate).to.equal(m.varianceRate);
      expect([o.samplePrice, o.sampleAt, o.mmVol, o.mmVolAt]).to.deep.equal([m.samplePrice, m.sampleAt, m.mmVol, m.mmVolAt]);

      const vol = Number(await router.volatility(WETH)) / 1e18;
      expect(await router.volatility(WETH)).to.equal(m.target());
      expect(Math.abs(vol - floatVol) / floatVol).to.be.lessThan(TOLERANCE);
      expect(vol).to.be.within(SANITY[0], SANITY[1]);
    });
  });

  // ---------------------------------------------------------------- circuit breaker on a real jump
  describe("circuit breaker", function () {
    it("trips on the largest real hourly move of Black Thursday and resets after cooldown of consistent observations", async function () {
      // Binance ETH/USDT hourly closes, 2020-03-09 .. 03-16 (SOURCES.md), as 8-decimal answers.
      const series = loadPriceCsv("eth_usdt_binance_1h_2020-03-09_2020-03-17.csv", 8);
      let k = 1;
      for (let i = 2; i < series.length; i++) {
        if (jumpBpsOf(series[i - 1].price, series[i].price) > jumpBpsOf(series[k - 1].price, series[k].price)) k = i;
      }
      const prevWad = series[k - 1].price * 10n ** 10n;
      const jumpWad = series[k].price * 10n ** 10n;
      const jumpBps = jumpBpsOf(prevWad, jumpWad);
      // The real crash hour: 167.97 → 132.91 on 2020-03-12 10:00 UTC, -20.87 %.
      expect(series[k].timestamp).to.equal(1_584_007_200);
      expect([prevWad, jumpWad, jumpBps]).to.deep.equal([167_970_000_000_000_000_000n, 132_910_000_000_000_000_000n, 2088n]);

      const CD = 3 * 3600; // three hourly observations
      const maxJumpBps = Number(jumpBps) - 1; // just below the largest move: only it trips
      // The three hours after the crash are consistent (each below maxJumpBps), so the reset below is earned.
      for (let i = k + 1; i <= k + 3; i++) expect(jumpBpsOf(series[i - 1].price, series[i].price) <= BigInt(maxJumpBps)).to.equal(true);

      const { router, feed8, pusher } = await loadFixture(deployFixture);
      await router.setFeed(WETH, feedParams(await feed8.getAddress(), { heartbeat: 7200, maxJumpBps, cooldown: CD }));
      const feed = await feed8.getAddress();
      const routerAddr = await router.getAddress();
      const shift = await shiftFor(series);
      const push = async (i: number) => {
        const updatedAt = series[i].timestamp + shift;
        await time.setNextBlockTimestamp(updatedAt);
        return pusher.pushAndPoke(feed, routerAddr, WETH, i + 1, series[i].price, updatedAt, { gasLimit: 500_000 });
      };

      for (let i = 0; i < k; i++) await push(i);
      expect(await router.queryFilter(router.filters.BreakerTripped())).to.have.length(0);
      expect(await router.price(WETH)).to.equal(prevWad);

      const tJump = series[k].timestamp + shift;
      const until = tJump + CD;
      await expect(push(k)).to.emit(router, "BreakerTripped").withArgs(WETH, prevWad, jumpWad, jumpBps, until);
      await expect(router.price(WETH)).to.be.revertedWithCustomError(router, "CircuitBreakerTripped").withArgs(WETH, until);
      expect(await router.tryPrice(WETH)).to.deep.equal([false, 0n]);
      expect(await router.poke.staticCall(WETH)).to.deep.equal([false, 0n]);
      const o = await router.observation(WETH);
      expect([o.tripped, o.breakerUntil, o.price]).to.deep.equal([true, BigInt(until), jumpWad]);

      // Consistent observations before `until` keep it tripped; the breaker is not a PriceRejected.
      for (let i = k + 1; i < k + 3; i++) {
        expect(series[i].timestamp + shift).to.be.lessThan(until);
        const tx = push(i);
        await expect(tx).not.to.emit(router, "BreakerReset");
        await expect(tx).not.to.emit(router, "PriceRejected");
        await expect(router.price(WETH)).to.be.revertedWithCustomError(router, "CircuitBreakerTripped").withArgs(WETH, until);
      }

      // The first consistent observation at `until` resets it.
      expect(series[k + 3].timestamp + shift).to.equal(until);
      const resetWad = series[k + 3].price * 10n ** 10n;
      await expect(push(k + 3)).to.emit(router, "BreakerReset").withArgs(WETH, resetWad);
      expect(await router.price(WETH)).to.equal(resetWad);
      expect(await router.tryPrice(WETH)).to.deep.equal([true, resetWad]);
      expect((await router.observation(WETH)).tripped).to.equal(false);
    });

    it("re-trips and extends the cooldown on a second jump while tripped", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      await router.poke(WETH);
      let t = (await time.latest()) + 10;
      await setRoundAt(feed8, 2, 1500n * e8, t, t); // -25 %
      await expect(router.poke(WETH)).to.emit(router, "BreakerTripped").withArgs(WETH, 2000n * WAD, 1500n * WAD, 2500n, t + COOLDOWN);
      t += 60;
      await setRoundAt(feed8, 3, 2000n * e8, t, t); // +33.34 % back up: ceil(3333.33) = 3334 bps
      await expect(router.poke(WETH)).to.emit(router, "BreakerTripped").withArgs(WETH, 1500n * WAD, 2000n * WAD, 3334n, t + COOLDOWN);
      expect((await router.observation(WETH)).breakerUntil).to.equal(t + COOLDOWN);
    });
  });

  // ---------------------------------------------------------------- views see the round poke would record
  describe("views before a poke", function () {
    it("volatility() of an unpoked round equals what poke then records", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      const t0 = await nextGridStart(); // both rounds on the grid: the second is the next boundary's sample
      await setRoundAt(feed8, 1, 2000n * 10n ** 8n, t0, t0);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 2100n * 10n ** 8n, t0 + 3600, t0 + 3600); // +5 %: a real return
      const viewed = await router.volatility(WETH);
      const recorded = (await router.observation(WETH)).varianceRate;
      expect(viewed).to.be.greaterThan(DEFAULT_FLOOR); // the pending return already counts
      await expect(router.poke(WETH)).to.emit(router, "ObservationRecorded").withArgs(WETH, 2100n * WAD, t0 + 3600, viewed);
      expect(await router.volatility(WETH)).to.equal(viewed);
      expect((await router.observation(WETH)).varianceRate).to.not.equal(recorded);
    });

    it("tryPrice and price report a breaker trip of an unpoked round, with its end time", async function () {
      const { router, feed8 } = await loadFixture(deployFixture);
      const t0 = (await time.latest()) + 10;
      await setRoundAt(feed8, 1, 1500n * 10n ** 8n, t0, t0);
      await router.poke(WETH);
      await setRoundAt(feed8, 2, 2000n * 10n ** 8n, t0 + 60, t0 + 60); // +33 % > 20 %
      expect(await router.tryPrice(WETH)).to.deep.equal([false, 0n]);
      await expect(router.price(WETH))
        .to.be.revertedWithCustomError(router, "CircuitBreakerTripped")
        .withArgs(WETH, t0 + 60 + COOLDOWN);
      expect((await router.observation(WETH)).tripped).to.equal(false); // nothing recorded by the views
      await expect(router.poke(WETH)).to.emit(router, "BreakerTripped").withArgs(WETH, 1500n * WAD, 2000n * WAD, 3334n, t0 + 60 + COOLDOWN);
    });
  });
});
