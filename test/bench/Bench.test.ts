import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";

import { benchTopUp } from "../../lib/bench/ballast";
import { benchMorphoLiquidate, compileMorpho } from "../../lib/bench/morpho";
import { buildResults } from "../../lib/bench/run";
import { CONDITIONS, ROW, formatTable, validateResults, type BenchResults } from "../../lib/bench/results";
import { skipUnderCoverage } from "../helpers/coverage";

/*
 * The gas benchmark harness (`npm run bench`, lib/bench/) on a fast subset: Ballast's TOP_UP and Morpho Blue's
 * liquidate with its mock oracle (compiled with solc 0.8.19 through the project's compile override, cached under
 * cache/bench/ after the first run), then the results file round trip through its schema. It checks that the
 * harness runs against the current contracts, not any gas figure: those are the benchmark's to report.
 */
describe("gas benchmark harness (lib/bench)", () => {
  before(function () {
    skipUnderCoverage(this, "it measures gas; instrumented contracts use other gas, and Morpho is compiled outside coverage");
  });

  let results: BenchResults;

  it("measures Ballast TOP_UP and Morpho Blue liquidate (mock oracle) in both conditions", async () => {
    const startedAt = Date.now();
    const morpho = await compileMorpho();
    expect(morpho.solcLongVersion).to.match(/^0\.8\.19\+/);
    const rows = [await benchTopUp(), await benchMorphoLiquidate(morpho, "mock")];
    for (const row of rows) {
      for (const c of CONDITIONS) {
        expect(row[c].method, `${row.id} ${c}`).to.equal("receipt");
        expect(row[c].gas, `${row.id} ${c}`).to.be.a("number").and.greaterThan(21_000).and.lessThan(16_777_216);
      }
      // First touch writes slots from zero (keeper or liquidator balances): it never costs less.
      expect(row.firstTouch.gas!, row.id).to.be.greaterThan(row.steady.gas!);
    }
    results = await buildResults(rows, { startedAt, morpho });
    expect(results.rows.map((r) => r.id)).to.deep.equal([ROW.topUp, ROW.morphoMock]);
    // Only the targets whose figures were measured are evaluated; TOP_UP's absolute target is one of them.
    const topUp = results.targets.find((t) => t.subject === ROW.topUp);
    expect(topUp?.steady.value).to.equal(rows[0].steady.gas);
    expect(["PASS", "MISS"]).to.include(topUp?.steady.status);
  });

  it("writes a results file that reads back through the schema, and prints its table", () => {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "bench-")), "results.json");
    fs.writeFileSync(file, JSON.stringify(results, null, 2));
    const back = validateResults(JSON.parse(fs.readFileSync(file, "utf8")));
    expect(back.rows).to.deep.equal(results.rows);
    const table = formatTable(back);
    expect(table).to.contain("Ballast rebalance TOP_UP").and.contain("Morpho Blue liquidate (mock oracle)").and.contain("≤ 100,000");

    const broken = JSON.parse(JSON.stringify(results));
    broken.rows[0].steady.gas = null;
    expect(() => validateResults(broken)).to.throw(/rows\[0\]\.steady\.gas/);
    expect(() => validateResults({ ...results, schema: "other" })).to.throw(/schema/);
  });

  it("the committed bench/results.json has the current schema and every row of the benchmark", () => {
    const file = path.resolve(__dirname, "..", "..", "bench", "results.json");
    const committed = validateResults(JSON.parse(fs.readFileSync(file, "utf8")));
    const ids = committed.rows.map((r) => r.id);
    for (const id of [ROW.deposit, ROW.open, ROW.topUp, ROW.reduce, ROW.release, ROW.inBand, ROW.raceLoser, ROW.upkeep10,
      ROW.liquidatePartial, ROW.liquidateFull, ROW.morphoMock, ROW.morphoChainlink, ROW.uniswapSwap]) {
      expect(ids, id).to.include(id);
    }
    expect(committed.targets.length).to.be.greaterThan(0);
  });
});
