/**
 * Driving the ETH feed round by round on the volatility grid, with an oracle mirror (oracleMath.VolMirror)
 * observing the same rounds: shared by the risk-model tests (engine/StressVolatility, review/RiskModelReview).
 */
import { time } from "@nomicfoundation/hardhat-network-helpers";

import { E18, VOL_INTERVAL, type SystemFixture } from "./fixtures";
import { PX8 } from "./book";
import { VolMirror } from "./oracleMath";

/** A mirror of the oracle's ETH observation that has seen the feed's latest round. */
export async function ethMirror(f: SystemFixture): Promise<VolMirror> {
  const m = VolMirror.fromObservation(await f.oracle.observation(f.weth));
  const [roundId, answer, , updatedAt] = await f.ethFeed.latestRoundData();
  m.setRound(answer * 10n ** 10n, updatedAt, roundId);
  return m;
}

/** The next boundary of the volatility grid after the latest block. */
export async function nextBoundary(): Promise<number> {
  return (Math.floor((await time.latest()) / VOL_INTERVAL) + 1) * VOL_INTERVAL;
}

/**
 * A new ETH round at `usd` set at block time `t` (updatedAt = t), then a poke one second later; the mirror sees
 * the same round. Returns the poke and whether the mirror took a volatility sample.
 */
export async function ethRoundAt(f: SystemFixture, m: VolMirror, usd: bigint, t: number) {
  await time.setNextBlockTimestamp(t);
  await f.ethFeed.setAnswer(PX8(usd));
  m.setRound(E18(usd), BigInt(t));
  await time.setNextBlockTimestamp(t + 1);
  const poke = await f.oracle.poke(f.weth);
  return { poke, sampled: m.observeLatest() };
}
