import { expect } from "chai";

import {
  BTC_OHLC_CRASHES,
  CRASHES,
  loadBaseline,
  populationFingerprint,
  replayPaths,
  standardPaths,
  WAD,
  type AccountResult,
  type Baseline,
  type PathResult,
  type ReplayResult,
} from "../../lib/riskReplay";

/*
 * The risk model's evidence (issue 9, item 5) on the public crashes of data/ (data/SOURCES.md): Mar 2020,
 * May 2021 (Binance ETH/USDT), Jun 2022, Nov 2022 (Bybit ETHUSDT perp) hourly closes, and the Binance OHLC
 * windows of Mar 2020 and May 2021 (ETH and BTC) replayed through every bar's low and high.
 *
 * One replay (lib/riskReplay.ts, the code behind `npm run risk:table`) runs every path in parallel on the
 * in-process network through the real contracts: per path a fresh feed and market, 48 h of warm-up, then
 * longs and shorts at 2x, 3x, 5x, 8x, 10x and at the largest size IM allows (to the wei, confirmed on chain),
 * each as a control, a policy account (1.3 / 1.6, TOP_UP|REDUCE, USDC reserve = margin) and a large-reserve
 * policy account (margin + reserve = notional at entry); a liquidator liquidates every account below 1
 * (`healthBatch`) first in the block after each price, then a keeper runs `rebalanceBatch` on the accounts
 * `needsRebalance` reports. The detrended path keeps the crash's absolute hourly returns, each signed toward
 * the entry price. The replay stops on any disagreement between its formulas and the engine (healths, IM,
 * volatilities, equity and maintenance margin), so the figures below are the chain's, to the wei.
 *
 * (a) lists every liquidation on each detrended path exactly, and tells the price's (below 1 even at the
 * maintenance rate of the position's opening block) from the σ-only ones the risk model is answerable for.
 * (b) compares with the previous risk model's figures on the same population, pinned in data/risk-baseline.json
 * (measured with the same library on that model's commit, c298cac).
 * (c) values the max-IM position at its entry price at every step with the engine's formulas on the chain's
 * inputs (checked against `accountState` while the account is untouched): equity C + S + funding, against
 * N(entry)·mmr(N(entry), σ_maint) + keeper reward.
 * (d) "large enough": margin + reserve = the notional at entry. When such an account fell below 1, the
 * liquidator's attempt (first in the block) reverted RescueAvailable and the keeper's rescue lifted it.
 */

const usd = (v: bigint) => (Number(v / 10n ** 14n) / 10_000).toFixed(2);
const ratio = (v: bigint) => (Number(v / 10n ** 12n) / 1e6).toFixed(4);

function liquidationsOf(p: PathResult) {
  return p.accounts
    .filter((a) => a.opened)
    .flatMap((a) =>
      a.liquidations.map(
        (l) =>
          `${a.label} at h${l.hour} (price ${l.movePct}% from entry, health ${ratio(l.healthBefore)}, ` +
          `${l.priceExplained ? "below 1 at the opening requirement too" : "σ-only: above 1 at the opening requirement"})`
      )
    );
}

describe("Scenario › Risk model on the public crashes: detrended, closes and OHLC replays through the contracts", function () {
  let result: ReplayResult;
  let baseline: Baseline;
  const path = (key: string): PathResult => {
    const p = result.paths.find((q) => q.key === key);
    if (p === undefined) throw new Error(`no path ${key}`);
    return p;
  };

  before(async function () {
    const paths = standardPaths();
    baseline = loadBaseline();
    // The baseline measured this very population (files, prices, accounts, policy, config).
    expect(baseline.population).to.deep.equal(JSON.parse(JSON.stringify(populationFingerprint(paths))));
    expect(baseline.model).to.equal("previous");
    result = await replayPaths(paths);
  });

  it("replays every path on the current model, the engine agreeing with the formulas at every check", function () {
    expect(result.model).to.equal("bounded-speed");
    expect(result.paths.map((p) => p.key)).to.deep.equal(standardPaths().map((p) => p.key));
    for (const p of result.paths) {
      expect(p.unpricedSteps, `${p.key}: steps without a valid price`).to.equal(0);
      expect(p.healthChecks, `${p.key}: healths compared with healthBatch`).to.be.gt(0);
      for (const c of p.entryChecks)
        expect(c.mirrorChecks, `${p.key} ${c.side}: E and MM compared with accountState`).to.be.gt(0);
      // Every control and policy account at or below the largest leverage IM allowed opened, the rest did not.
      for (const a of p.accounts) {
        const allowed = a.leverage === "max" || a.leverageActual <= p.maxLeverageCalm;
        expect(a.opened, `${p.key} ${a.label} (${a.leverageActual}x, IM allows ${p.maxLeverageCalm}x)`).to.equal(allowed);
        if (!a.opened) expect(a.openError).to.equal("BelowInitialMargin");
      }
    }
  });

  // (a) The detrended paths keep every real hourly return, each signed toward the entry price, so the price never
  // strays from entry by more than one real hourly return — but those returns are large: −20.9 % in one hour of
  // Mar 2020, −11.6 % in May 2021. Every liquidation on these paths is listed exactly. The risk model is
  // responsible for the σ-only ones (above 1 at the opening block's maintenance rate): one in four crashes, a
  // short 117 hours (almost five days) after its open, the price 8 % against it, after σ_mm had risen at its
  // bounded speed the whole time (a margin call no reserve answered). The rest are the price: a position at the
  // largest leverage IM allows at σ 200 % (5.77x) cannot survive a −20 % hour.
  const DETRENDED: Record<string, string[]> = {
    mar2020: [
      "long 5x control at h34: -20.2961 % (price)",
      "long max control at h34: -20.2961 % (price)",
      "short max control at h117: 7.9769 % (σ-only)",
    ],
    may2021: [
      "long 5x control at h36: -11.629 % (price)",
      "long max control at h36: -11.629 % (price)",
      "short 5x control at h132: 8.2352 % (price)",
      "short max control at h47: 5.9357 % (price)",
    ],
    jun2022: [],
    nov2022: [],
  };

  for (const crash of CRASHES) {
    describe(crash.label, function () {
      it("(a) on the detrended path: every liquidation listed, at most one σ-only (and fewer than the previous model)", function () {
        const key = `${crash.key}/detrended`;
        const p = path(key);
        // 2x, 3x, 5x and the IM maximum (5.77x) per side; IM refuses 8x and 10x at σ_IM = imVolFloor = 200 %.
        expect(p.accounts.filter((a) => a.opened).length).to.equal(8);
        const all = p.accounts
          .filter((a) => a.opened)
          .flatMap((a) =>
            a.liquidations.map((l) => `${a.label} at h${l.hour}: ${l.movePct} % (${l.priceExplained ? "price" : "σ-only"})`)
          );
        expect(all, liquidationsOf(p).join("; ")).to.have.members(DETRENDED[crash.key]);
        expect(all.length).to.equal(DETRENDED[crash.key].length);
        const volOnly = all.filter((l) => l.endsWith("(σ-only)")).length;
        expect(volOnly).to.be.lessThan(baseline.paths[key].volatilityOnly);
      });

      it("(b) bad debt on the hourly closes is no higher than the previous model's", function () {
        const key = `${crash.key}/closes`;
        const now = path(key).badDebtUsd;
        const before = BigInt(baseline.paths[key].badDebtUsd);
        expect(now <= before, `${key}: bad debt ${usd(now)} USD now, ${usd(before)} USD on ${baseline.commit.slice(0, 7)}`).to.equal(true);
      });
    });
  }

  const priced = [
    ...CRASHES.map((c) => `${c.key}/closes`),
    ...[...CRASHES, ...BTC_OHLC_CRASHES].filter((c) => c.ohlc).map((c) => `${c.key}/ohlc`),
  ];
  for (const key of priced) {
    describe(key, function () {
      it("(c) a position opened at the largest leverage IM allows is not liquidatable at its entry price at any step", function () {
        const p = path(key);
        expect(p.entryChecks.map((c) => c.side)).to.deep.equal(["long", "short"]);
        const failures = p.entryChecks
          .filter((c) => c.liquidatableSteps !== 0 || c.minSlack < 0n || c.minHealthAtEntry < WAD)
          .map((c) => `${c.side}: ${c.liquidatableSteps} steps from h${c.firstLiquidatableHour}, min health ${ratio(c.minHealthAtEntry)}`);
        expect(failures, key).to.deep.equal([]);
      });

      it("(d) an account with a policy and a large enough reserve (margin + reserve = notional) is never liquidated", function () {
        const p = path(key);
        const funded = p.accounts.filter((a) => a.variant === "funded" && a.opened);
        expect(funded.length).to.be.gt(0);
        const liquidated = funded
          .filter((a) => a.liquidations.length > 0)
          .map((a: AccountResult) => `${a.label}: ${a.liquidations.length} (bad debt ${usd(a.badDebtUsd)})`);
        expect(liquidated, key).to.deep.equal([]);
        for (const a of funded) {
          // Below 1 at some price block: the liquidator's attempt was refused (RescueAvailable) and a rescue
          // from the reserve lifted it.
          if (a.minHealth < WAD) {
            expect(a.rescueFirst, `${key} ${a.label}: liquidations refused for the rescue`).to.be.gt(0);
            expect(a.rescues, `${key} ${a.label}: rescues from below 1`).to.be.gt(0);
          }
          expect(a.badDebtUsd).to.equal(0n);
          expect(a.finalEquity + a.finalReserveUsd > 0n, `${key} ${a.label}: equity + reserve at the end`).to.equal(true);
        }
      });
    });
  }
});
