import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { expect } from "chai";
import { chromium, type Browser, type Page } from "playwright-core";

import { ACTION, wad } from "../../deploy/params";
import { loadPriceCsv, parseDecimal } from "../../lib/prices";
import { runBacktest } from "../../sim/backtest";
import { HEALTH_CLIP, healthText, money, writeReport } from "../../sim/html";
import { closesPath, type PathPoint } from "../../sim/path";
import { policy } from "../../sim/population";
import { sourceOf } from "../../sim/run";
import { sweepReport } from "../../sim/sweep";
import {
  BACKTEST_SCHEMA,
  type AccountReport,
  type BacktestReport,
  type EventKind,
  type GroupReport,
  type SweepReport,
} from "../../sim/types";

/*
 * The HTML report (sim/html.ts) opened in headless Chromium from file://, offline: the page must draw every chart
 * from the embedded report with exactly the report's points, account lines, event markers and bars, render its
 * tables and findings, log no error and fetch nothing.
 *
 * The reports are real: `before` replays the FTX crash (Bybit ETH/USDT perpetual hourly closes, 24 h of warm-up from
 * 6 November 2022 00:00 UTC, then 72 hourly steps from 7 November 00:00 to 9 November 23:00, ETH ~1570 → ~1100)
 * through the production contracts on the in-process network with the keeper of keeper/ (sim/backtest.ts), on
 * 2x, 5.5x and 8x accounts, long and short, each a control beside a top-up and a reduce policy. The ETH market's
 * initial margin refuses 8x at entry (BelowInitialMargin): those accounts never hold a position. The sweep page
 * renders sweepReport (sim/sweep.ts) of the same backtest. Every expected value below is read from those reports.
 */

const CHROMIUM = "/usr/bin/chromium";
const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync",
];
const REPORTS_DIR = path.resolve(__dirname, "..", "..", "reports");

const PRICE_FILE = "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv";
const FROM = Date.UTC(2022, 10, 6) / 1000; // 2022-11-06 00:00 UTC: the warm-up's first close
const WARMUP_SECONDS = 24 * 3600;
const REPLAY_STEPS = 72; // 2022-11-07 00:00 → 2022-11-09 23:00 UTC
/** The market's initial margin refuses this leverage at entry (sim/population.ts DEFAULT_LEVERAGES). */
const REFUSED_LEVERAGE = 8;
const POLICIES = [policy(ACTION.TOP_UP, wad("1.3"), wad("1.6")), policy(ACTION.REDUCE, wad("1.3"), wad("1.6"))];
const SCENARIO = "test-report-ftx-2022-11";

/** The event kinds the health chart marks, in the order of its scatter datasets (sim/html.ts EVENT_STYLES). */
const MARKED: EventKind[] = ["top-up", "reduce", "release", "liquidation"];

const int = (n: number) => n.toLocaleString("en-US");
/** A cost: at least a cent below zero (under a cent either way is level, as sim/accounting.ts counts it). */
const CENT = 10n ** 16n;
const isNegative = (usd: string) => parseDecimal(usd, 18) <= -CENT;
const rebalancesText = (r: { topUp: number; reduce: number; release: number }) => `${r.topUp} / ${r.reduce} / ${r.release}`;
const hasHealth = (a: AccountReport) => a.health.some((h) => h !== null);
const clipped = (h: string | null) => (h === null ? null : Math.min(Number(h), HEALTH_CLIP));

/** The cells of a row of the groups table, from the group. */
function groupCells(g: GroupReport): string[] {
  return [
    g.key, int(g.leverage), g.side, g.variant, int(g.accounts), int(g.liquidated), int(g.liquidations), money(g.penaltiesUsd),
    rebalancesText(g.rebalances), money(g.keeperFeesUsd), int(g.gasUsed), int(g.gasPerAction.rebalance),
    int(g.gasPerAction.liquidation), healthText(g.minHealth), money(g.badDebtUsd), money(g.wealthUsd),
    money(g.controlWealthUsd), money(g.wealthVsControlUsd),
  ];
}

/** The cells of a row of the accounts table, from the account. */
function accountCells(a: AccountReport): string[] {
  return [
    a.label, a.id, a.policy === null ? "—" : a.policy.name, a.opened ? "yes" : "no", money(a.entryPrice), money(a.startCapitalUsd),
    money(a.marginUsd), money(a.reserveUsd), healthText(a.minHealth), int(a.events.length), int(a.liquidations),
    money(a.penaltiesUsd), rebalancesText(a.rebalances), money(a.keeperFeesUsd), int(a.gasUsed), money(a.badDebtUsd),
    money(a.finalEquityUsd), money(a.reserveLeftUsd), money(a.withdrawnUsd), money(a.wealthUsd), a.controlId ?? "—",
    money(a.wealthVsControlUsd),
  ];
}

const eventsOf = (r: BacktestReport, kind: EventKind) =>
  r.accounts.flatMap((a) => a.events.filter((e) => e.kind === kind).map((e) => ({ account: a, event: e })));

/** What the page's charts must report drawing for a backtest (window.__ballastCharts). */
const expectedDrawn = (r: BacktestReport) => ({
  price: r.steps.price.length,
  health: r.accounts.filter(hasHealth).length,
  wealth: 2 * r.groups.length,
});

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
    totals: { accounts: 0, liquidations: 0, rebalances: 0, keeperFeesUsd: "0", badDebtUsd: "0", gasUsed: 0, lpPnlUsd: "0", insuranceChangeUsd: "0", wallSeconds: 0 },
    findings: [],
    assumptions: [],
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

describe("Sim › HTML report: a real crash backtest and its sweep, opened offline in headless Chromium", function () {
  let browser: Browser;
  let dir: string;
  let points: PathPoint[];
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

  /** The datasets of the chart drawn on canvas `id`, as Chart.js holds them. */
  const chartDatasets = (page: Page, id: string) =>
    page.evaluate((canvasId) => {
      type Chart = {
        canvas: HTMLCanvasElement;
        data: { labels?: unknown[]; datasets: { label: string; type?: string; data: unknown[] }[] };
        getDatasetMeta: (i: number) => { data: { skip?: boolean }[] };
      };
      const charts = Object.values((window as unknown as { Chart: { instances: Record<string, Chart> } }).Chart.instances);
      const chart = charts.find((c) => c.canvas.id === canvasId);
      if (chart === undefined) return null;
      return {
        labels: chart.data.labels ?? null,
        datasets: chart.data.datasets.map((d, i) => ({
          label: d.label,
          type: d.type ?? null,
          data: d.data,
          drawn: chart.getDatasetMeta(i).data.filter((p) => !p.skip).length,
        })),
      };
    }, id);

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

  /** The rows of a table body, each as its cells' texts. */
  const rows = (page: Page, selector: string) =>
    page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent ?? "")));

  /** Hours since the report's first step (the charts' x axis). */
  const hoursAt = (r: BacktestReport, step: number) => (r.steps.time[step] - r.steps.time[0]) / 3600;

  /** Every chart drawn as the report says: price points, one line per account with a position, markers, bars. */
  async function expectCharts(page: Page, r: BacktestReport) {
    expect(await drawn(page)).to.deep.equal(expectedDrawn(r));
    const shown = await canvases(page);
    expect(shown.map((c) => c.id)).to.deep.equal(["chart-price", "chart-health", "chart-wealth"]);
    for (const c of shown) {
      expect(c.width, c.id).to.be.greaterThan(0);
      expect(c.height, c.id).to.be.greaterThan(0);
      expect(c.painted, c.id).to.be.greaterThan(0);
    }

    const price = (await chartDatasets(page, "chart-price"))!;
    expect(price.datasets).to.have.length(1);
    expect(price.datasets[0].data).to.deep.equal(r.steps.price.map((y, i) => ({ x: hoursAt(r, i), y })));

    const health = (await chartDatasets(page, "chart-health"))!;
    const lines = r.accounts.filter(hasHealth);
    const accountSets = health.datasets.slice(0, lines.length);
    expect(accountSets.map((d) => d.label)).to.deep.equal(lines.map((a) => a.label));
    accountSets.forEach((d, k) => {
      const a = lines[k];
      expect(d.data, a.label).to.deep.equal(a.health.map((h, step) => ({ x: hoursAt(r, step), y: clipped(h) })));
      expect(d.drawn, a.label).to.equal(a.health.filter((h) => h !== null).length);
    });
    // an account whose opening order was refused has no point anywhere: no line of its own
    for (const a of r.accounts.filter((x) => !hasHealth(x))) {
      expect(health.datasets.map((d) => d.label), a.label).to.not.include(a.label);
    }
    // thresholds: liquidation at 1.0, then each distinct trigger / target of the policies
    const policyLevels = [...new Set(r.accounts.flatMap((a) => (a.policy ? [a.policy.trigger, a.policy.target] : [])).map(Number))];
    const thresholds = health.datasets.slice(lines.length, lines.length + 1 + policyLevels.length);
    expect(thresholds.map((d) => (d.data as { y: number }[]).map((p) => p.y))).to.deep.equal([
      [1, 1],
      ...policyLevels.sort((x, y) => x - y).map((v) => [Math.min(v, HEALTH_CLIP), Math.min(v, HEALTH_CLIP)]),
    ]);
    // one scatter dataset per event kind that happened (the openings are not marked), one marker per event
    const markers = health.datasets.slice(lines.length + thresholds.length);
    const kinds = MARKED.filter((k) => eventsOf(r, k).length > 0);
    expect(markers.map((d) => [d.type, d.label])).to.deep.equal(kinds.map((k) => ["scatter", k]));
    markers.forEach((d, k) => {
      const events = eventsOf(r, kinds[k]);
      expect(d.drawn, kinds[k]).to.equal(events.length);
      expect(d.data, kinds[k]).to.deep.equal(
        events.map(({ account, event }) => ({
          x: hoursAt(r, event.step),
          y: clipped(event.healthBefore),
          account: account.label,
          amountUsd: event.amountUsd,
        })),
      );
    });
    expect(health.datasets).to.have.length(lines.length + thresholds.length + markers.length);

    const wealth = (await chartDatasets(page, "chart-wealth"))!;
    expect(wealth.labels).to.deep.equal(r.groups.map((g) => `${g.leverage}x ${g.side} ${g.variant}`));
    expect(wealth.datasets.map((d) => d.data)).to.deep.equal([
      r.groups.map((g) => Number(g.wealthUsd)),
      r.groups.map((g) => Number(g.controlWealthUsd)),
    ]);
  }

  /** The totals line and both tables show the backtest's figures; negative wealth against the control in red. */
  async function expectTables(page: Page, r: BacktestReport) {
    const t = r.totals;
    const totals = (await page.textContent("#totals")) ?? "";
    expect(totals).to.include(`${int(t.accounts)} accounts, ${int(t.liquidations)} liquidations, ${int(t.rebalances)} rebalances;`);
    expect(totals).to.include(`keeper fees ${money(t.keeperFeesUsd)} USD, bad debt ${money(t.badDebtUsd)} USD; ${int(t.gasUsed)} gas; seed ${r.seed};`);

    expect(await rows(page, "#groups")).to.deep.equal(r.groups.map(groupCells));
    expect(await rows(page, "#accounts")).to.deep.equal(r.accounts.map(accountCells));
    // negative wealth against the control in red (class neg): only the "vs control" column, only below zero
    expect(await texts(page, "#groups td.neg")).to.deep.equal(r.groups.filter((g) => isNegative(g.wealthVsControlUsd)).map((g) => money(g.wealthVsControlUsd)));
    expect(await texts(page, "#accounts td.neg")).to.deep.equal(r.accounts.filter((a) => isNegative(a.wealthVsControlUsd)).map((a) => money(a.wealthVsControlUsd)));
  }

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`${CHROMIUM} not found: install Debian chromium: apt-get install -y chromium`);
    }
    const closes = loadPriceCsv(PRICE_FILE).filter((p) => p.timestamp >= FROM).slice(0, WARMUP_SECONDS / 3600 + REPLAY_STEPS);
    points = closesPath(closes);
    backtest = await runBacktest({
      scenario: SCENARIO,
      title: "FTX crash, 7-9 November 2022: ETH perpetual at 2x, 5.5x and 8x, with and without protection",
      command: "npx hardhat test test/sim/Report.test.ts",
      data: { file: `data/${PRICE_FILE}`, ohlc: null, source: sourceOf(PRICE_FILE), sampling: "close", rows: closes.length },
      points,
      warmupSeconds: WARMUP_SECONDS,
      population: {
        leverages: [2, 5.5, REFUSED_LEVERAGE],
        sides: ["long", "short"],
        policies: POLICIES,
        seed: 1,
        margin: { min: 2000, max: 2000, step: 100 },
      },
    });
    sweep = sweepReport(backtest);
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

  it("the real backtest holds what the page must show: liquidations, top-ups, a reduce, accounts refused at entry", function () {
    expect(backtest.steps.time).to.deep.equal(points.map((p) => p.time));
    expect(backtest.steps.price).to.deep.equal(points.map((p) => Number(p.price) / 1e8));
    expect(backtest.steps.time[backtest.steps.openStep] - backtest.steps.time[0]).to.equal(WARMUP_SECONDS);
    expect(backtest.steps.price.length - 1 - backtest.steps.openStep).to.equal(REPLAY_STEPS - 1);
    for (const kind of ["liquidation", "top-up", "reduce"] as const) {
      expect(eventsOf(backtest, kind), kind).to.not.be.empty;
    }
    // markers are drawn at the health before the action: the chain reports it for every rebalance and liquidation
    for (const kind of MARKED) for (const { event } of eventsOf(backtest, kind)) expect(event.healthBefore, kind).to.not.equal(null);
    const refused = backtest.accounts.filter((a) => !a.opened);
    expect(refused.map((a) => a.id)).to.deep.equal(backtest.accounts.filter((a) => a.leverage === REFUSED_LEVERAGE).map((a) => a.id));
    expect(refused).to.not.be.empty;
    for (const a of refused) {
      expect(a.openRefused, a.label).to.equal("BelowInitialMargin");
      expect(a.health.every((h) => h === null), a.label).to.equal(true);
      expect(a.events, a.label).to.deep.equal([]);
    }
    expect(backtest.accounts.filter((a) => a.opened).every(hasHealth)).to.equal(true);
    // above the chart's clip somewhere (the 2x shorts in a crash), so the clipping is exercised
    expect(Math.max(...backtest.accounts.flatMap((a) => a.health.filter((h): h is string => h !== null).map(Number)))).to.be.greaterThan(HEALTH_CLIP);
    expect(sweep.policies.map((p) => p.name)).to.deep.equal(POLICIES.map((p) => p.name));
    expect(sweep.leverages).to.deep.equal([2, 5.5, REFUSED_LEVERAGE]);
  });

  it("writeReport writes <scenario>.json (the report, 2-space JSON) and a self-contained <scenario>.html", function () {
    const out = writeReport(path.join(dir, "nested", "reports"), backtest);
    expect(out.json).to.equal(path.join(dir, "nested", "reports", `${backtest.scenario}.json`));
    expect(out.html).to.equal(path.join(dir, "nested", "reports", `${backtest.scenario}.html`));
    expect(fs.readFileSync(out.json, "utf8")).to.equal(JSON.stringify(backtest, null, 2) + "\n");
    const html = fs.readFileSync(out.html, "utf8");
    expect(html).to.not.match(/<script[^>]*\ssrc=/i);
    expect(html).to.not.match(/<link[^>]*\shref="(?!data:)/i);
    expect(html).to.include('<canvas id="chart-price">');
    expect(html).to.include('<canvas id="chart-health">');
    expect(html).to.include('<canvas id="chart-wealth">');
  });

  it("backtest page: the report's prices, health lines, event markers and bars; tables, findings; no error, nothing fetched", async function () {
    const { html } = writeReport(dir, backtest);
    const { page, errors, external } = await open(html);

    await expectCharts(page, backtest);
    expect(await texts(page, "#findings li")).to.deep.equal(backtest.findings);
    expect(await texts(page, "#assumptions li")).to.deep.equal(backtest.assumptions);
    expect(await texts(page, "h1")).to.deep.equal([backtest.title]);
    expect(await page.title()).to.equal(backtest.title);
    expect(await page.textContent("#command")).to.equal(backtest.command);
    expect(await page.textContent("#data-source")).to.include(backtest.data.source);
    expect(await page.textContent("#data-source")).to.include(`${int(backtest.data.rows)} rows`);
    await expectTables(page, backtest);
    // the page's data is the report, byte for byte through JSON
    expect(await page.evaluate(() => JSON.parse(document.getElementById("report")!.textContent!))).to.deep.equal(backtest);

    fs.mkdirSync(REPORTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(REPORTS_DIR, `${backtest.scenario}.png`), fullPage: true });
    expect(errors).to.deep.equal([]);
    expect(external).to.deep.equal([]);
  });

  it("sweep page: a policies × leverages heatmap coloured by wealth against the controls, the best table, and the backtest's charts", async function () {
    // sweepReport keeps the backtest's scenario: its own directory, so the backtest's files are not overwritten
    const out = writeReport(path.join(dir, "sweep"), sweep);
    expect(out.json).to.equal(path.join(dir, "sweep", `${sweep.scenario}.json`));
    expect(fs.readFileSync(out.json, "utf8")).to.equal(JSON.stringify(sweep, null, 2) + "\n");
    const { page, errors, external } = await open(out.html);

    await expectCharts(page, backtest);
    expect(await texts(page, "#findings li")).to.deep.equal(sweep.findings);
    expect(await texts(page, "#assumptions li")).to.deep.equal(sweep.assumptions);
    expect(await texts(page, "#backtest-findings li")).to.deep.equal(backtest.findings);
    await expectTables(page, backtest);
    expect(await page.evaluate(() => JSON.parse(document.getElementById("report")!.textContent!))).to.deep.equal(sweep);

    expect(await texts(page, "#heatmap tbody th")).to.deep.equal(sweep.policies.map((p) => p.name));
    expect(await texts(page, "#heatmap thead th")).to.deep.equal(["policy \\ leverage", ...sweep.leverages.map((l) => `${l}x`)]);
    const shown = await page.$$eval("#heatmap td.heat", (els) =>
      els.map((e) => ({
        value: e.querySelector(".v")?.textContent ?? null,
        liq: e.querySelector(".liq")?.textContent ?? null,
        title: e.getAttribute("title"),
        bg: getComputedStyle(e).backgroundColor,
      })),
    );
    // every (policy, leverage) ran: one cell each, in the table's order
    const cells = sweep.policies.flatMap((p) => sweep.leverages.map((l) => sweep.cells.find((c) => c.policy.name === p.name && c.leverage === l)!));
    expect(cells.every((c) => c !== undefined)).to.equal(true);
    expect(shown).to.have.length(sweep.policies.length * sweep.leverages.length);
    expect(shown.map((s) => [s.value, s.liq, s.title])).to.deep.equal(
      cells.map((c) => [
        money(c.wealthVsControlUsd),
        c.opened === 0 ? "refused at entry" : `${c.liquidations}/${c.opened} liquidated`,
        `${c.policy.name} at ${c.leverage}x: ${c.accounts} accounts, cost ${money(c.costUsd)} USD, ${int(c.gasUsed)} gas`,
      ]),
    );
    // red for a loss against the control, green for a gain, grey for none; the largest |value| at full strength
    const hue = (bg: string) =>
      bg.startsWith("rgba(214, 39, 40,") ? "red" : bg.startsWith("rgba(44, 160, 44,") ? "green" : bg === "rgb(245, 245, 245)" ? "grey" : bg;
    const sign = (usd: string) => parseDecimal(usd, 18);
    expect(shown.map((s) => hue(s.bg))).to.deep.equal(cells.map((c) => (sign(c.wealthVsControlUsd) <= -CENT ? "red" : sign(c.wealthVsControlUsd) >= CENT ? "green" : "grey")));
    const alpha = (bg: string) => Number(/rgba\(.*, ([\d.]+)\)$/.exec(bg)?.[1] ?? "0");
    const magnitude = (usd: string) => Math.abs(Number(usd));
    const largest = cells.reduce((m, c, i) => (magnitude(c.wealthVsControlUsd) > magnitude(cells[m].wealthVsControlUsd) ? i : m), 0);
    expect(magnitude(cells[largest].wealthVsControlUsd)).to.be.greaterThan(0);
    expect(alpha(shown[largest].bg)).to.be.closeTo(0.85, 1e-6);
    for (const [i, c] of cells.entries()) {
      if (i !== largest && magnitude(c.wealthVsControlUsd) < magnitude(cells[largest].wealthVsControlUsd)) {
        expect(alpha(shown[i].bg), `${c.policy.name} ${c.leverage}x`).to.be.lessThan(0.85);
      }
    }

    expect(await rows(page, "#best")).to.deep.equal(
      sweep.best.map((b) =>
        b.mostWealth === null
          ? [int(b.leverage), "none: no order filled", "none: no order filled"]
          : [int(b.leverage), b.cheapestSafe ?? "none: every policy was liquidated", b.mostWealth],
      ),
    );

    fs.mkdirSync(REPORTS_DIR, { recursive: true });
    await page.screenshot({ path: path.join(REPORTS_DIR, `sweep-${sweep.scenario}.png`), fullPage: true });
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
    const report: BacktestReport = {
      ...backtest,
      scenario: `${backtest.scenario}-escaping`,
      title: `${backtest.title} ${hostile}`,
      findings: [hostile, ...backtest.findings],
    };
    const { page, errors, external } = await open(writeReport(dir, report).html);
    expect(await page.evaluate(() => (window as unknown as { __pwned?: number }).__pwned)).to.equal(undefined);
    expect(await page.$$eval("b", (els) => els.length)).to.equal(0);
    expect(await texts(page, "h1")).to.deep.equal([report.title]);
    expect(await page.title()).to.equal(report.title);
    expect(await texts(page, "#findings li")).to.deep.equal(report.findings);
    expect(await page.evaluate(() => JSON.parse(document.getElementById("report")!.textContent!))).to.deep.equal(report);
    expect(await drawn(page)).to.deep.equal(expectedDrawn(backtest));
    expect(errors).to.deep.equal([]);
    expect(external).to.deep.equal([]);
  });

  it(`health above ${HEALTH_CLIP} is clipped in the chart, not in the data`, async function () {
    const { page } = await open(writeReport(dir, backtest).html);
    const health = (await chartDatasets(page, "chart-health"))!;
    const top = Math.max(...health.datasets.flatMap((d) => (d.data as { y: number | null }[]).map((p) => p.y ?? 0)));
    const highest = Math.max(...backtest.accounts.flatMap((a) => a.health.filter((h): h is string => h !== null).map(Number)));
    expect(highest).to.be.greaterThan(HEALTH_CLIP);
    expect(top).to.equal(HEALTH_CLIP);
    expect(await page.evaluate(() => JSON.parse(document.getElementById("report")!.textContent!))).to.deep.equal(backtest);
  });
});
