/**
 * The keeper's scan benchmark harness (lib/bench/scan.ts, part of `npm run bench`) on a small set: the counting
 * wrapper's exact figures for a known number of accounts and chunk size, and the results section through the schema.
 */
import { expect } from "chai";

import { benchScan } from "../../lib/bench/scan";
import { formatTable, validateResults, type BenchResults } from "../../lib/bench/results";
import { skipUnderCoverage } from "../helpers/coverage";

describe("keeper scan benchmark harness (lib/bench/scan.ts)", function () {
  before(function () {
    skipUnderCoverage(this, "it times the scan; instrumented contracts run other code");
  });

  it("counts each scan's RPC requests exactly on a local node: on chain, the mirror's build and scan, and the latency", async () => {
    const { rows, latency } = await benchScan({ accounts: 100, chunks: [30, 100], perTx: 50, touched: 10 });
    // on chain: 1 block header, 4 parameter reads, one healthBatch per chunk; through the mirror: 1 block header and
    // one BallastLens call (100 accounts fit one call of 200 at the build; 10 touched accounts afterwards)
    expect(rows.map((r) => [r.id, r.accounts, r.chunk, r.healthBatchCalls, r.ethCalls, r.rpcRequests])).to.deep.equal([
      ["keeper.scan.100.chunk30", 100, 30, 4, 8, 9],
      ["keeper.scan.100.chunk100", 100, 100, 1, 5, 6],
      ["keeper.mirror.build.100", 100, 200, 0, 1, 2],
      ["keeper.scan.100.mirror", 100, 200, 0, 1, 2],
    ]);
    expect(rows.map((r) => r.goals.ethCalls.status)).to.deep.equal(["MISS", "MISS", "N/A", "PASS"]);
    for (const r of rows) expect(r.wallMs).to.be.a("number").and.lessThan(60_000);
    expect([latency.id, latency.blocks, latency.goals.blocks]).to.deep.equal(["keeper.latency.pricePushToRebalance", 1, { limit: 1, status: "PASS" }]);

    // the results section reads back through the schema and prints
    const results = {
      schema: "ballast-bench/1",
      generatedAt: new Date().toISOString(),
      git: { commit: null, dirty: null },
      environment: { node: "v20", hardhat: "2", network: "hardhat", hardfork: "osaka", chainId: 31337, blockGasLimit: 1, txGasCap: 1, baseFeeGwei: 1, compilers: {} },
      conditions: { steady: "s", firstTouch: "f" },
      rows: [{ id: "x", protocol: "ballast", label: "x", description: "x", steady: { gas: 50_000, method: "receipt" }, firstTouch: { gas: 50_000, method: "receipt" } }],
      derived: [],
      ratios: [],
      targets: [],
      keeperScan: rows,
      keeperLatency: latency,
      durationSeconds: 1,
    } as BenchResults;
    expect(validateResults(JSON.parse(JSON.stringify(results))).keeperScan).to.deep.equal(rows);
    expect(validateResults(JSON.parse(JSON.stringify(results))).keeperLatency).to.deep.equal(latency);
    expect(formatTable(results))
      .to.contain("keeper health scan of 100 accounts, healthBatch in chunks of 30")
      .and.contain("≤ 4: MISS")
      .and.contain("keeper health scan of 100 accounts through the health mirror (10 touched, a new round)")
      .and.contain("(100 accounts registered): 1 (goal ≤ 1: PASS)");
    const broken = JSON.parse(JSON.stringify(results));
    broken.keeperScan[0].ethCalls = -1;
    expect(() => validateResults(broken)).to.throw(/keeperScan\[0\]\.ethCalls/);
    const late = JSON.parse(JSON.stringify(results));
    late.keeperLatency.blocks = 1.5;
    expect(() => validateResults(late)).to.throw(/keeperLatency\.blocks/);
  });
});
