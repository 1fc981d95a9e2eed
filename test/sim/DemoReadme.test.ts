/**
 * The demo (`npm run demo`) run in-process, as scripts/demo.ts runs it: the README's demo figures must be the ones
 * it produces (README.md between the demo markers = demoMarkdown of this run), both report files are written, and
 * the figures the README's prose relies on hold.
 */
import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import { parseWadText } from "../../lib/format";
import { backtestCommand, DEFAULT_DATA, DEFAULT_SCENARIO } from "../../sim/run";
import { DEMO_BEGIN, DEMO_END, demoMarkdown } from "../../sim/readme";
import type { BacktestReport } from "../../sim/types";

describe("Sim › demo: the README's figures are the demo's", function () {
  let report: BacktestReport;
  let dir: string;
  let files: { json: string; html: string };

  before(async function () {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-demo-"));
    ({ report, files } = await backtestCommand({ data: DEFAULT_DATA, scenario: DEFAULT_SCENARIO, out: dir, quiet: true }, "npm run demo"));
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it("writes reports/ftx-2022.json (the report) and reports/ftx-2022.html", () => {
    expect(files.json).to.equal(path.join(dir, "ftx-2022.json"));
    expect(JSON.parse(fs.readFileSync(files.json, "utf8"))).to.deep.equal(report);
    expect(fs.readFileSync(files.html, "utf8")).to.include('<canvas id="chart-wealth">');
  });

  it("README.md's demo block is exactly this run's (regenerate with npm run demo && npm run demo:readme)", () => {
    const readme = fs.readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
    const block = readme.slice(readme.indexOf(DEMO_BEGIN) + DEMO_BEGIN.length + 1, readme.indexOf(DEMO_END) - 1);
    expect(block).to.equal(demoMarkdown(report));
  });

  it("the population: 40 accounts, 2x-5.5x long and short, a control and three policies each, every order filled", () => {
    expect(report.accounts).to.have.length(40);
    expect(report.accounts.every((a) => a.opened)).to.equal(true);
    expect(report.steps.time).to.have.length(240);
    expect(report.steps.openStep).to.equal(48);
    expect(new Set(report.accounts.map((a) => a.variant))).to.deep.equal(new Set(["control", "top-up 1.3→1.6", "reduce 1.3→1.6", "top-up+reduce+reduce-first 1.3→1.6"]));
  });

  it("wealth = equity + reserve left + withdrawn for every account; a control's reserve counts as idle cash", () => {
    for (const a of report.accounts) {
      expect(parseWadText(a.wealthUsd), a.label).to.equal(parseWadText(a.finalEquityUsd) + parseWadText(a.reserveLeftUsd) + parseWadText(a.withdrawnUsd));
      if (a.policy === null) expect(parseWadText(a.reserveLeftUsd), a.label).to.equal(parseWadText(a.reserveUsd));
    }
  });
});
