import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { chromium, type Browser, type Page } from "playwright-core";

import { loadPriceCsv } from "../../lib/prices";
import { HEALTH_CLIP, money, writeReport } from "../../sim/html";
import {
  BACKTEST_SCHEMA,
  SWEEP_SCHEMA,
  type AccountEvent,
  type AccountReport,
  type BacktestReport,
  type GroupReport,
  type PolicyReport,
  type Side,
  type SweepReport,
} from "../../sim/types";

/*
 * The HTML report (sim/html.ts) opened in headless Chromium from file://, offline: the page must draw every chart
 * from the embedded report with exactly the report's points, account lines and bars, log no error and fetch nothing.
 *
 * The report is built here from the real Bybit ETH/USDT perp hourly closes of 8-9 November 2022 (the FTX crash,
 * ETH 1560 → 1100) with a small isolated-margin model (display data only: maintenance 5 % of notional, health =
 * equity / maintenance, liquidation below 1 with a 2 % penalty, a keeper acting below the policy's trigger), so the
 * health lines, events and wealth the page draws are consistent with each other.
 */

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
];
const REPORTS_DIR = path.resolve(__dirname, "..", "..", "reports");

const PRICE_FILE = "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv";
const START = Date.UTC(2022, 10, 8) / 1000; // 2022-11-08 00:00 UTC
const STEPS = 48;

const MAINTENANCE = 0.05;
const PENALTY = 0.02;
const KEEPER_FEE = 0.5;
const GAS = { topUp: 168_690, reduce: 181_204, liquidation: 243_517 };

/** A number as the report's decimal strings: exact to 6 decimals here, trailing zeros trimmed. */
function dec(x: number): string {
  let s = x.toFixed(6);
  s = s.replace(/0+$/, "").replace(/\.$/, "");
  return s === "-0" ? "0" : s;
}

const TOP_UP: PolicyReport = {
  name: "top-up 1.5→2", trigger: "1.5", target: "2", release: "0", actions: ["top-up"], maxFeeUsd: "5",
};
const REDUCE: PolicyReport = {
  name: "reduce 1.2→1.5", trigger: "1.2", target: "1.5", release: "0", actions: ["reduce"], maxFeeUsd: "5",
};

interface Spec {
  id: string;
  leverage: number;
  side: Side;
  policy: PolicyReport | null;
  opens: boolean;
  control: AccountReport | null;
}

const MARGIN = 1000;
const RESERVE = 1000;

/** Replays one account over the prices (opened at step 0) and returns its report. */
function simulate(spec: Spec, prices: number[]): AccountReport {
  const sign = spec.side === "long" ? 1 : -1;
  const entry = prices[0];
  let qty = spec.opens ? (MARGIN * spec.leverage) / entry : 0;
  let collateral = MARGIN;
  let reserve = RESERVE;
  let liquidations = 0;
  let penalties = 0;
  let fees = 0;
  let badDebt = 0;
  let gas = 0;
  const rebalances = { topUp: 0, reduce: 0, release: 0 };
  const events: AccountEvent[] = [];
  const equityAt = (p: number) => collateral + sign * qty * (p - entry);
  const healthAt = (p: number) => (qty === 0 ? null : equityAt(p) / (MAINTENANCE * qty * p));
  if (spec.opens) {
    events.push({ step: 0, kind: "open", gas: 412_794, txAccounts: 1, feeUsd: "0", amountUsd: dec(MARGIN * spec.leverage), healthBefore: null, healthAfter: dec(healthAt(entry)!) });
  }

  const health = prices.map((p, step) => {
    const before = healthAt(p);
    if (before === null) return null;
    if (before < 1) {
      const notional = qty * p;
      const left = equityAt(p) - PENALTY * notional;
      penalties += PENALTY * notional;
      badDebt += Math.max(0, -left);
      collateral = Math.max(0, left);
      qty = 0;
      liquidations += 1;
      gas += GAS.liquidation;
      events.push({ step, kind: "liquidation", gas: GAS.liquidation, txAccounts: 1, feeUsd: dec(PENALTY * notional), amountUsd: dec(notional), healthBefore: dec(before), healthAfter: null });
    } else if (spec.policy !== null && before < Number(spec.policy.trigger)) {
      const target = Number(spec.policy.target);
      if (spec.policy.actions.includes("top-up") && reserve > KEEPER_FEE) {
        const amount = Math.min(reserve - KEEPER_FEE, target * MAINTENANCE * qty * p - equityAt(p));
        reserve -= amount + KEEPER_FEE;
        collateral += amount;
        fees += KEEPER_FEE;
        gas += GAS.topUp;
        rebalances.topUp += 1;
        events.push({ step, kind: "top-up", gas: GAS.topUp, txAccounts: 1, feeUsd: dec(KEEPER_FEE), amountUsd: dec(amount), healthBefore: dec(before), healthAfter: dec(healthAt(p)!) });
      } else if (spec.policy.actions.includes("reduce")) {
        const kept = (equityAt(p) - KEEPER_FEE) / (target * MAINTENANCE * p);
        const reduced = qty - kept;
        collateral += sign * reduced * (p - entry) - KEEPER_FEE;
        qty = kept;
        fees += KEEPER_FEE;
        gas += GAS.reduce;
        rebalances.reduce += 1;
        events.push({ step, kind: "reduce", gas: GAS.reduce, txAccounts: 1, feeUsd: dec(KEEPER_FEE), amountUsd: dec(reduced * p), healthBefore: dec(before), healthAfter: dec(healthAt(p)!) });
      }
    }
    const after = healthAt(p);
    return after === null ? null : dec(after);
  });

  const finalEquity = equityAt(prices[prices.length - 1]);
  const wealth = finalEquity + reserve;
  const drawn = health.filter((h): h is string => h !== null).map(Number);
  const label = `${spec.leverage}x ${spec.side} ${spec.policy === null ? "control" : spec.policy.name}`;
  return {
    id: spec.id,
    label,
    leverage: spec.leverage,
    side: spec.side,
    variant: spec.policy === null ? "control" : spec.policy.name,
    policy: spec.policy,
    startCapitalUsd: dec(MARGIN + RESERVE),
    marginUsd: dec(MARGIN),
    reserveUsd: dec(RESERVE),
    opened: spec.opens,
    openRefused: spec.opens ? null : "BelowInitialMargin",
    entryPrice: spec.opens ? dec(entry) : "0",
    health,
    minHealth: drawn.length > 0 ? dec(Math.min(...drawn)) : null,
    events,
    liquidations,
    penaltiesUsd: dec(penalties),
    rebalances,
    keeperFeesUsd: dec(fees),
    gasUsed: gas,
    badDebtUsd: dec(badDebt),
    finalEquityUsd: dec(finalEquity),
    reserveLeftUsd: dec(reserve),
    withdrawnUsd: "0",
    wealthUsd: dec(wealth),
    controlId: spec.control === null ? null : spec.control.id,
    wealthVsControlUsd: spec.control === null ? "0" : dec(wealth - Number(spec.control.wealthUsd)),
  };
}

function groupOf(a: AccountReport, control: AccountReport): GroupReport {
  const gasOf = (kinds: string[]) => {
    const acts = a.events.filter((e) => kinds.includes(e.kind));
    return acts.length === 0 ? 0 : Math.round(acts.reduce((n, e) => n + e.gas, 0) / acts.length);
  };
  return {
    key: `${a.leverage}x ${a.side} ${a.variant}`,
    leverage: a.leverage,
    side: a.side,
    variant: a.variant,
    accounts: 1,
    liquidated: a.liquidations > 0 ? 1 : 0,
    liquidations: a.liquidations,
    penaltiesUsd: a.penaltiesUsd,
    rebalances: a.rebalances,
    keeperFeesUsd: a.keeperFeesUsd,
    gasUsed: a.gasUsed,
    gasPerAction: { rebalance: gasOf(["top-up", "reduce", "release"]), liquidation: gasOf(["liquidation"]) },
    minHealth: a.minHealth,
    badDebtUsd: a.badDebtUsd,
    wealthUsd: a.wealthUsd,
    controlWealthUsd: control.wealthUsd,
    wealthVsControlUsd: a.wealthVsControlUsd,
  };
}

function buildBacktest(): BacktestReport {
  const rows = loadPriceCsv(PRICE_FILE, 8);
  const first = rows.findIndex((r) => r.timestamp === START);
  expect(first, "2022-11-08 00:00 UTC in the price file").to.be.greaterThan(-1);
  const window = rows.slice(first, first + STEPS);
  expect(window).to.have.length(STEPS);
  const prices = window.map((r) => Number(r.price) / 1e8);

  const control10 = simulate({ id: "a0", leverage: 10, side: "long", policy: null, opens: true, control: null }, prices);
  const topUp10 = simulate({ id: "a1", leverage: 10, side: "long", policy: TOP_UP, opens: true, control: control10 }, prices);
  const control3 = simulate({ id: "a2", leverage: 3, side: "long", policy: null, opens: true, control: null }, prices);
  const reduce3 = simulate({ id: "a3", leverage: 3, side: "long", policy: REDUCE, opens: true, control: control3 }, prices);
  // refused by the market's 20x maximum: never opened, no health at any step
  const refused = simulate({ id: "a4", leverage: 25, side: "short", policy: null, opens: false, control: null }, prices);
  const accounts = [control10, topUp10, control3, reduce3, refused];
  const controlOf = (a: AccountReport) => accounts.find((c) => c.id === (a.controlId ?? a.id))!;
  const groups = accounts.map((a) => groupOf(a, controlOf(a)));

  const findings = [topUp10, reduce3].map((a) => {
    const vs = Number(a.wealthVsControlUsd);
    const control = controlOf(a);
    return `${a.label}: protection ${vs < 0 ? "cost" : "kept"} ${Math.abs(vs).toFixed(2)} USD of wealth against ${control.label} (liquidations: ${a.liquidations}, the control ${control.liquidations}).`;
  });
  const sum = (f: (a: AccountReport) => number) => accounts.reduce((n, a) => n + f(a), 0);
  return {
    schema: BACKTEST_SCHEMA,
    scenario: "test-ftx-2022-11-48h",
    title: "FTX crash, 8-9 November 2022: ETH longs with and without protection",
    command: "npx hardhat sim:backtest --scenario test-ftx-2022-11-48h",
    data: { file: `data/${PRICE_FILE}`, ohlc: null, source: "Bybit ETH/USDT perpetual hourly closes (data/SOURCES.md)", sampling: "close", rows: STEPS },
    seed: 7,
    steps: { time: window.map((r) => r.timestamp), price: prices, openStep: 0 },
    accounts,
    groups,
    totals: {
      accounts: accounts.length,
      liquidations: sum((a) => a.liquidations),
      rebalances: sum((a) => a.rebalances.topUp + a.rebalances.reduce + a.rebalances.release),
      keeperFeesUsd: dec(sum((a) => Number(a.keeperFeesUsd))),
      badDebtUsd: dec(sum((a) => Number(a.badDebtUsd))),
      gasUsed: sum((a) => a.gasUsed),
      wallSeconds: 12.4,
    },
    findings,
  };
}

function buildSweep(backtest: BacktestReport): SweepReport {
  const cell = (policy: PolicyReport, leverage: number, liquidations: number, costUsd: string, vs: string) => ({
    policy, leverage, accounts: 4, liquidations, costUsd, gasUsed: 4 * 168_690 + liquidations * GAS.liquidation, wealthVsControlUsd: vs,
  });
  return {
    schema: SWEEP_SCHEMA,
    scenario: "test-ftx-2022-11-48h-sweep",
    title: "FTX crash, 8-9 November 2022: policy × leverage sweep",
    command: "npx hardhat sim:sweep --scenario test-ftx-2022-11-48h-sweep",
    data: backtest.data,
    policies: [TOP_UP, REDUCE],
    leverages: [5, 10, 20],
    cells: [
      cell(TOP_UP, 5, 0, "2", "120.5"),
      cell(TOP_UP, 10, 1, "52.25", "-310.25"),
      cell(TOP_UP, 20, 2, "98.1", "-640"),
      cell(REDUCE, 5, 0, "1.5", "85.75"),
      cell(REDUCE, 10, 0, "3", "12.4"),
      cell(REDUCE, 20, 1, "41.75", "-95.1"),
    ],
    best: [
      { leverage: 5, cheapestSafe: REDUCE.name, mostWealth: TOP_UP.name },
      { leverage: 10, cheapestSafe: REDUCE.name, mostWealth: REDUCE.name },
      { leverage: 20, cheapestSafe: null, mostWealth: REDUCE.name },
    ],
    findings: [
      "At 20x every policy was liquidated at least once: no policy is safe there.",
      "top-up 1.5→2 cost 310.25 USD of wealth against the control at 10x: the reserve ran out before the bottom.",
    ],
    backtest,
  };
}

function emptyBacktest(): BacktestReport {
  return {
    schema: BACKTEST_SCHEMA,
    scenario: "test-empty",
    title: "Empty",
    command: "npx hardhat sim:backtest --scenario test-empty",
    data: { file: "data/none.csv", ohlc: null, source: "none", sampling: "close", rows: 0 },
    seed: 0,
    steps: { time: [], price: [], openStep: 0 },
    accounts: [],
    groups: [],
    totals: { accounts: 0, liquidations: 0, rebalances: 0, keeperFeesUsd: "0", badDebtUsd: "0", gasUsed: 0, wallSeconds: 0 },
    findings: [],
  };
}

interface Drawn {
  price: number;
  health: number;
  wealth: number;
}

interface Opened {
  page: Page;
  /** console errors and uncaught page errors */
  errors: string[];
  /** requests to anything but file: and data: */
  external: string[];
}

describe("Sim › HTML report: opens offline in headless Chromium and draws every chart from the report", function () {
  let browser: Browser;
  let dir: string;
  let backtest: BacktestReport;
  let sweep: SweepReport;
  const pages: Page[] = [];

  async function open(file: string): Promise<Opened> {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    pages.push(page);
    const errors: string[] = [];
    const external: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") errors.push(`console: ${m.text()}`);
    });
    page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
    page.on("request", (r) => {
      if (!r.url().startsWith("file:") && !r.url().startsWith("data:")) external.push(r.url());
    });
    await page.goto(pathToFileURL(file).href, { waitUntil: "load" });
    return { page, errors, external };
  }

  const drawn = (page: Page) =>
    page.evaluate(() => (window as unknown as { __ballastCharts?: Drawn }).__ballastCharts ?? null);

  /** Each chart canvas: its size and how many of its pixels are painted. */
  const canvases = (page: Page) =>
    page.$$eval("canvas", (els) =>
      els.map((el) => {
        const c = el as HTMLCanvasElement;
        const pixels = c.getContext("2d")!.getImageData(0, 0, c.width, c.height).data;
        let painted = 0;
        for (let i = 3; i < pixels.length; i += 4) if (pixels[i] !== 0) painted++;
        return { id: c.id, width: c.width, height: c.height, painted };
      }),
    );

  const texts = (page: Page, selector: string) => page.$$eval(selector, (els) => els.map((e) => e.textContent ?? ""));

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: install Debian chromium: apt-get install -y chromium`);
    }
    backtest = buildBacktest();
    sweep = buildSweep(backtest);
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-report-"));
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterEach(async function () {
    while (pages.length > 0) await pages.pop()!.close();
  });

  after(async function () {
    if (browser !== undefined) await browser.close();
    if (dir !== undefined) fs.rmSync(dir, { recursive: true, force: true });
  });

  it("the test's backtest is what the page must show: 48 real closes, 4 accounts with health, 1 never opened, every event kind but release", function () {
    expect(backtest.steps.price).to.have.length(48);
    expect(backtest.steps.price[0]).to.equal(1560.55);
    expect(backtest.steps.price[47]).to.equal(1100.75);
    expect(backtest.accounts.map((a) => a.health.some((h) => h !== null))).to.deep.equal([true, true, true, true, false]);
    const kinds = new Set(backtest.accounts.flatMap((a) => a.events.map((e) => e.kind)));
    expect([...kinds].sort()).to.deep.equal(["liquidation", "open", "reduce", "top-up"]);
    // the gap at hour 4 liquidates the 10x control; the 10x top-up spends its reserve on two top-ups and is liquidated
    // at hour 18 all the same, with less left than the control (the finding); the 3x pair survives, the reduce
    // policy trimming once near the bottom
    expect(backtest.accounts.map((a) => a.events.map((e) => `${e.kind}@${e.step}`))).to.deep.equal([
      ["open@0", "liquidation@4"],
      ["open@0", "top-up@3", "top-up@4", "liquidation@18"],
      ["open@0"],
      ["open@0", "reduce@45"],
      [],
    ]);
    expect(Number(backtest.accounts[1].wealthVsControlUsd)).to.be.lessThan(0);
    expect(backtest.groups).to.have.length(5);
  });

  it("writeReport writes <scenario>.json (the report, 2-space JSON) and a self-contained <scenario>.html", function () {
    const out = writeReport(path.join(dir, "nested", "reports"), backtest);
    expect(out.json).to.equal(path.join(dir, "nested", "reports", "test-ftx-2022-11-48h.json"));
    expect(out.html).to.equal(path.join(dir, "nested", "reports", "test-ftx-2022-11-48h.html"));
    expect(fs.readFileSync(out.json, "utf8")).to.equal(JSON.stringify(backtest, null, 2) + "\n");
    const html = fs.readFileSync(out.html, "utf8");
    expect(html).to.not.match(/<script[^>]*\ssrc=/i);
    expect(html).to.not.match(/<link[^>]*\shref="(?!data:)/i);
    expect(html).to.include('<canvas id="chart-price">');
    expect(html).to.include('<canvas id="chart-health">');
    expect(html).to.include('<canvas id="chart-wealth">');
  });

  it("backtest page: 48 price points, one health line per account with data, 2 bars per group; tables, findings; no error, nothing fetched", async function () {
    const { html } = writeReport(dir, backtest);
    const { page, errors, external } = await open(html);

    expect(await drawn(page)).to.deep.equal({ price: 48, health: 4, wealth: 2 * backtest.groups.length });
    const shown = await canvases(page);
    expect(shown.map((c) => c.id)).to.deep.equal(["chart-price", "chart-health", "chart-wealth"]);
    for (const c of shown) {
      expect(c.width, c.id).to.be.greaterThan(0);
      expect(c.height, c.id).to.be.greaterThan(0);
      expect(c.painted, c.id).to.be.greaterThan(0);
    }

    expect(await texts(page, "#findings li")).to.deep.equal(backtest.findings);
    expect(await texts(page, "h1")).to.deep.equal([backtest.title]);
    expect(await page.textContent("#command")).to.equal(backtest.command);
    expect(await page.textContent("#data-source")).to.include(backtest.data.source);
    expect(await page.$$eval("#groups tbody tr", (r) => r.length)).to.equal(backtest.groups.length);
    expect(await page.$$eval("#accounts tbody tr", (r) => r.length)).to.equal(backtest.accounts.length);
    // negative wealth against the control, in red, 2 decimals
    const negative = backtest.groups.filter((g) => g.wealthVsControlUsd.startsWith("-")).map((g) => money(g.wealthVsControlUsd));
    expect(negative.length).to.be.greaterThan(0);
    expect(await texts(page, "#groups td.neg")).to.deep.equal(negative);
    expect(await texts(page, "#groups tbody tr:first-child td")).to.deep.equal([
      "10x long control", "10", "long", "control", "1", "1", "1", money(backtest.groups[0].penaltiesUsd), "0 / 0 / 0",
      "0.00", "243,517", "0", "243,517", Number(backtest.groups[0].minHealth).toFixed(6).slice(0, -3),
      money(backtest.groups[0].badDebtUsd), money(backtest.groups[0].wealthUsd), money(backtest.groups[0].wealthUsd), "0.00",
    ]);
    // the page's data is the report, byte for byte through JSON
    expect(await page.evaluate(() => JSON.parse(document.getElementById("report")!.textContent!))).to.deep.equal(backtest);

    fs.mkdirSync(REPORTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(REPORTS_DIR, `${backtest.scenario}.png`), fullPage: true });
    expect(errors).to.deep.equal([]);
    expect(external).to.deep.equal([]);
  });

  it("sweep page: a policies × leverages heatmap with liquidations per cell, the best table, and the backtest's charts", async function () {
    const out = writeReport(dir, sweep);
    expect(fs.readFileSync(out.json, "utf8")).to.equal(JSON.stringify(sweep, null, 2) + "\n");
    const { page, errors, external } = await open(out.html);

    expect(await drawn(page)).to.deep.equal({ price: 48, health: 4, wealth: 2 * backtest.groups.length });
    expect(await texts(page, "#findings li")).to.deep.equal(sweep.findings);
    expect(await texts(page, "#backtest-findings li")).to.deep.equal(backtest.findings);

    expect(await texts(page, "#heatmap tbody th")).to.deep.equal([TOP_UP.name, REDUCE.name]);
    expect(await texts(page, "#heatmap thead th")).to.deep.equal(["policy \\ leverage", "5x", "10x", "20x"]);
    const cells = await page.$$eval("#heatmap td.heat", (els) =>
      els.map((e) => ({ value: e.querySelector(".v")!.textContent, liq: e.querySelector(".liq")!.textContent, bg: (e as HTMLElement).style.background })),
    );
    expect(cells).to.have.length(sweep.policies.length * sweep.leverages.length);
    expect(cells.map((c) => [c.value, c.liq])).to.deep.equal([
      ["120.50", "0 liquidations"], ["-310.25", "1 liquidation"], ["-640.00", "2 liquidations"],
      ["85.75", "0 liquidations"], ["12.40", "0 liquidations"], ["-95.10", "1 liquidation"],
    ]);
    // red for a loss against the control, green for a gain
    expect(cells.map((c) => (c.bg.includes("214, 39, 40") ? "red" : c.bg.includes("44, 160, 44") ? "green" : c.bg))).to.deep.equal([
      "green", "red", "red", "green", "green", "red",
    ]);
    expect(await texts(page, "#best tbody td")).to.deep.equal([
      "5", REDUCE.name, TOP_UP.name, "10", REDUCE.name, REDUCE.name, "20", "none: every policy was liquidated", REDUCE.name,
    ]);

    await page.screenshot({ path: path.join(REPORTS_DIR, `${sweep.scenario}.png`), fullPage: true });
    expect(errors).to.deep.equal([]);
    expect(external).to.deep.equal([]);
  });

  it("an empty report (no steps, no accounts, no groups) renders without an error: nothing drawn, tables say so", async function () {
    const { page, errors, external } = await open(writeReport(dir, emptyBacktest()).html);
    expect(await drawn(page)).to.deep.equal({ price: 0, health: 0, wealth: 0 });
    expect(await texts(page, "#findings li")).to.deep.equal(["No findings."]);
    expect(await texts(page, "#accounts tbody td")).to.deep.equal(["No accounts."]);
    expect(await texts(page, "#groups tbody td")).to.deep.equal(["No groups."]);
    expect(errors).to.deep.equal([]);
    expect(external).to.deep.equal([]);
  });

  it("text from the report cannot close the script or add markup: shown as text, the JSON intact", async function () {
    const hostile = "</script><script>window.__pwned = 1</script><b>&amp;</b> <!--";
    const report: BacktestReport = { ...backtest, scenario: "test-escaping", title: `Crash ${hostile}`, findings: [hostile, ...backtest.findings] };
    const { page, errors, external } = await open(writeReport(dir, report).html);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).to.equal(undefined);
    expect(await texts(page, "h1")).to.deep.equal([report.title]);
    expect(await page.title()).to.equal(report.title);
    expect(await texts(page, "#findings li")).to.deep.equal(report.findings);
    expect(await page.evaluate(() => JSON.parse(document.getElementById("report")!.textContent!))).to.deep.equal(report);
    expect(await drawn(page)).to.deep.equal({ price: 48, health: 4, wealth: 10 });
    expect(errors).to.deep.equal([]);
    expect(external).to.deep.equal([]);
  });

  it(`health above ${HEALTH_CLIP} is clipped in the chart, not in the data`, async function () {
    const { page } = await open(writeReport(dir, backtest).html);
    const top = await page.evaluate(() => {
      const charts = Object.values((window as unknown as { Chart: { instances: Record<string, { canvas: HTMLCanvasElement; data: { datasets: { data: { y: number | null }[] }[] } }> } }).Chart.instances);
      const health = charts.find((c) => c.canvas.id === "chart-health")!;
      return Math.max(...health.data.datasets.flatMap((d) => d.data.map((p) => p.y ?? 0)));
    });
    const highest = Math.max(...backtest.accounts.flatMap((a) => a.health.filter((h): h is string => h !== null).map(Number)));
    expect(highest).to.be.greaterThan(HEALTH_CLIP);
    expect(top).to.equal(HEALTH_CLIP);
  });
});
