/**
 * Renders the backtest and sweep reports (sim/types.ts) into one self-contained HTML page each, readable offline
 * from file://: Chart.js's UMD build and the report's JSON are inlined, nothing is fetched.
 *
 * Tables and text are rendered here; the charts are drawn in the page from the embedded JSON by PAGE_SCRIPT, which
 * then sets `window.__ballastCharts` (points, datasets and bars actually drawn) for test/sim/Report.test.ts.
 */
import fs from "node:fs";
import path from "node:path";

import { formatFixed } from "../lib/format";
import { parseDecimal } from "../lib/prices";
import {
  SWEEP_SCHEMA,
  type AccountReport,
  type BacktestReport,
  type GroupReport,
  type SweepReport,
} from "./types";

/** Health above this is drawn at this value (the chart is about the region near the triggers and 1.0). */
export const HEALTH_CLIP = 5;

// ---------------------------------------------------------------------------------------------------------------
// Text helpers

const HTML_ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

/** Escapes text for HTML content and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]);
}

/** Makes JavaScript safe to inline in a <script> element: no `</script` can close it early. */
export function escapeScript(js: string): string {
  return js.replace(/<\/(script)/gi, "<\\/$1");
}

/** JSON for a <script type="application/json"> element: every `<` as \u003c, so no tag can appear in it. */
export function jsonForScript(value: unknown): string {
  return JSON.stringify(value).replace(/</g, "\\u003c");
}

/** A decimal USD string of the report ("-87.123456789012345678") as "-87.12" (truncated, like lib/format.ts). */
export function money(usd: string): string {
  const v = parseDecimal(usd, 18);
  // under a cent either way is "0.00" (never "-0.00"): accounts acting in different blocks differ by dust
  return formatFixed(v > -CENT && v < CENT ? 0n : v, 18, 2);
}

/** A decimal health string as "1.234", or "—" where the account has no position. */
export function healthText(health: string | null): string {
  return health === null ? "—" : formatFixed(parseDecimal(health, 18), 18, 3);
}

const CENT = 10n ** 16n;
/** At least a cent below zero: what the accounting calls a cost (sim/accounting.ts). */
const isNegative = (usd: string) => parseDecimal(usd, 18) <= -CENT;
const int = (n: number) => n.toLocaleString("en-US");

/** A table cell with a money value; negative values get the class `neg` (red) when `flagNegative`. */
function moneyCell(usd: string, flagNegative = false): string {
  const cls = flagNegative && isNegative(usd) ? "num neg" : "num";
  return `<td class="${cls}">${money(usd)}</td>`;
}

const numCell = (n: number) => `<td class="num">${int(n)}</td>`;
const textCell = (text: string) => `<td>${escapeHtml(text)}</td>`;
const rebalancesText = (r: { topUp: number; reduce: number; release: number }) =>
  `${r.topUp} / ${r.reduce} / ${r.release}`;

function table(id: string, headers: string[], rows: string[], empty: string): string {
  const head = headers.map((h) => `<th>${escapeHtml(h)}</th>`).join("");
  const body =
    rows.length > 0 ? rows.join("\n") : `<tr><td class="empty" colspan="${headers.length}">${escapeHtml(empty)}</td></tr>`;
  return `<table id="${id}"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table>`;
}

// ---------------------------------------------------------------------------------------------------------------
// Sections shared by both pages

type ReportData = BacktestReport["data"];

function dataLine(data: ReportData): string {
  const ohlc = data.ohlc === null ? "" : `, OHLC ${data.ohlc}`;
  return `${data.source} — ${data.file}${ohlc}; ${data.sampling} sampling, ${int(data.rows)} rows`;
}

/** Title, data source, command to reproduce, and the findings as a prominent list. */
function headerSection(report: { title: string; scenario: string; command: string; data: ReportData; findings: string[]; assumptions?: string[] }): string {
  return `<header>
<h1>${escapeHtml(report.title)}</h1>
<p class="data" id="data-source">Data: ${escapeHtml(dataLine(report.data))}</p>
<p class="command">Reproduce: <code id="command">${escapeHtml(report.command)}</code></p>
</header>
${findingsSection("findings", "Findings", report.findings)}
${assumptionsSection(report.assumptions ?? [])}`;
}

/** What the replay assumes that a live deployment may not (gas price, breaker, caps): small print, always shown. */
function assumptionsSection(assumptions: string[]): string {
  if (assumptions.length === 0) return "";
  return `<section class="assumptions" id="assumptions"><h3>Assumptions</h3><ul>\n${assumptions.map((a) => `<li>${escapeHtml(a)}</li>`).join("\n")}\n</ul></section>`;
}

function findingsSection(id: string, heading: string, findings: string[]): string {
  const items =
    findings.length > 0
      ? findings.map((f) => `<li>${escapeHtml(f)}</li>`).join("\n")
      : `<li class="none">No findings.</li>`;
  return `<section class="findings" id="${id}"><h2>${escapeHtml(heading)}</h2><ul>\n${items}\n</ul></section>`;
}

function totalsLine(report: BacktestReport): string {
  const t = report.totals;
  return `<p class="totals" id="totals">${int(t.accounts)} accounts, ${int(t.liquidations)} liquidations, ${int(t.rebalances)} rebalances; keeper fees ${money(t.keeperFeesUsd)} USD, bad debt ${money(t.badDebtUsd)} USD; ${int(t.gasUsed)} gas; seed ${report.seed}; ${t.wallSeconds.toFixed(1)} s wall time.</p>`;
}

function chartBox(id: string, heading: string, note: string): string {
  return `<section class="chart"><h2>${escapeHtml(heading)}</h2><p class="note">${escapeHtml(note)}</p>
<div class="canvas-box"><canvas id="${id}"></canvas></div></section>`;
}

function groupRow(g: GroupReport): string {
  return `<tr>${[
    textCell(g.key),
    numCell(g.leverage),
    textCell(g.side),
    textCell(g.variant),
    numCell(g.accounts),
    numCell(g.liquidated),
    numCell(g.liquidations),
    moneyCell(g.penaltiesUsd),
    textCell(rebalancesText(g.rebalances)),
    moneyCell(g.keeperFeesUsd),
    numCell(g.gasUsed),
    numCell(g.gasPerAction.rebalance),
    numCell(g.gasPerAction.liquidation),
    `<td class="num">${healthText(g.minHealth)}</td>`,
    moneyCell(g.badDebtUsd),
    moneyCell(g.wealthUsd),
    moneyCell(g.controlWealthUsd),
    moneyCell(g.wealthVsControlUsd, true),
  ].join("")}</tr>`;
}

function groupTable(groups: GroupReport[]): string {
  const headers = [
    "group", "leverage", "side", "variant", "accounts", "liquidated", "liquidations", "penalties USD",
    "rebalances (top-up / reduce / release)", "keeper fees USD", "gas", "gas / rebalance", "gas / liquidation",
    "min health", "bad debt USD", "wealth USD", "control wealth USD", "vs control USD",
  ];
  return table("groups", headers, groups.map(groupRow), "No groups.");
}

function accountRow(a: AccountReport): string {
  return `<tr>${[
    textCell(a.label),
    textCell(a.id),
    textCell(a.policy === null ? "—" : a.policy.name),
    textCell(a.opened ? "yes" : "no"),
    moneyCell(a.entryPrice),
    moneyCell(a.startCapitalUsd),
    moneyCell(a.marginUsd),
    moneyCell(a.reserveUsd),
    `<td class="num">${healthText(a.minHealth)}</td>`,
    numCell(a.events.length),
    numCell(a.liquidations),
    moneyCell(a.penaltiesUsd),
    textCell(rebalancesText(a.rebalances)),
    moneyCell(a.keeperFeesUsd),
    numCell(a.gasUsed),
    moneyCell(a.badDebtUsd),
    moneyCell(a.finalEquityUsd),
    moneyCell(a.reserveLeftUsd),
    moneyCell(a.withdrawnUsd),
    moneyCell(a.wealthUsd),
    textCell(a.controlId ?? "—"),
    moneyCell(a.wealthVsControlUsd, true),
  ].join("")}</tr>`;
}

function accountTable(accounts: AccountReport[]): string {
  const headers = [
    "account", "id", "policy", "opened", "entry price", "start capital USD", "margin USD", "reserve USD",
    "min health", "events", "liquidations", "penalties USD", "rebalances (top-up / reduce / release)",
    "keeper fees USD", "gas", "bad debt USD", "final equity USD", "reserve left USD", "withdrawn USD", "wealth USD",
    "control", "vs control USD",
  ];
  return table("accounts", headers, accounts.map(accountRow), "No accounts.");
}

/** Everything about one backtest below its header: totals, the three charts, the group and account tables. */
function backtestSections(report: BacktestReport): string {
  return `${totalsLine(report)}
${chartBox("chart-price", "Price", `${report.steps.time.length} steps; the population opened at step ${report.steps.openStep}.`)}
${chartBox("chart-health", "Health per account", `Health ≥ ${HEALTH_CLIP} is drawn at ${HEALTH_CLIP}; gaps: no position. Solid line: liquidation at 1.0; dashed: the policies' triggers and targets.`)}
${chartBox("chart-wealth", "Wealth against the control, per group", "Equity + reserve left + withdrawn, USD.")}
<section><h2>Groups</h2>${groupTable(report.groups)}</section>
<section><h2>Accounts</h2>${accountTable(report.accounts)}</section>`;
}

// ---------------------------------------------------------------------------------------------------------------
// Sweep sections

/** Background for a wealth-vs-control value: red for a loss, green for a gain, stronger with |value| / maxAbs. */
function heatColour(value: number, maxAbs: number): string {
  if (maxAbs === 0 || Math.abs(value) < 0.01) return "rgb(245, 245, 245)";
  const strength = Math.min(1, Math.abs(value) / maxAbs);
  const alpha = (0.15 + 0.7 * strength).toFixed(3);
  return value < 0 ? `rgba(214, 39, 40, ${alpha})` : `rgba(44, 160, 44, ${alpha})`;
}

function heatmap(report: SweepReport): string {
  const maxAbs = Math.max(0, ...report.cells.map((c) => Math.abs(Number(c.wealthVsControlUsd))));
  const head = `<tr><th>policy \\ leverage</th>${report.leverages.map((l) => `<th>${l}x</th>`).join("")}</tr>`;
  const rows = report.policies.map((policy) => {
    const cells = report.leverages.map((leverage) => {
      const cell = report.cells.find((c) => c.policy.name === policy.name && c.leverage === leverage);
      if (cell === undefined) return `<td class="heat missing" title="not run">—</td>`;
      const liq = cell.opened === 0 ? "refused at entry" : `${cell.liquidations}/${cell.opened} liquidated`;
      const title = `${policy.name} at ${leverage}x: ${cell.accounts} accounts, cost ${money(cell.costUsd)} USD, ${int(cell.gasUsed)} gas`;
      return `<td class="heat" style="background:${heatColour(Number(cell.wealthVsControlUsd), maxAbs)}" title="${escapeHtml(title)}"><div class="v">${money(cell.wealthVsControlUsd)}</div><div class="liq">${liq}</div></td>`;
    });
    return `<tr><th>${escapeHtml(policy.name)}</th>${cells.join("")}</tr>`;
  });
  return `<section><h2>Wealth against the control (USD), by policy and leverage</h2>
<p class="note">Red: the policy ended with less wealth than its control; green: more. Each cell also counts the accounts liquidated (at least once) of those that opened.</p>
<table id="heatmap"><thead>${head}</thead><tbody>\n${rows.join("\n")}\n</tbody></table></section>`;
}

function bestTable(report: SweepReport): string {
  const rows = report.best.map(
    (b) =>
      b.mostWealth === null
        ? `<tr>${numCell(b.leverage)}${textCell("none: no order filled")}${textCell("none: no order filled")}</tr>`
        : `<tr>${numCell(b.leverage)}${textCell(b.cheapestSafe ?? "none: every policy was liquidated")}${textCell(b.mostWealth)}</tr>`,
  );
  return `<section><h2>Best policy per leverage</h2>${table(
    "best",
    ["leverage", "cheapest with no liquidation", "most wealth"],
    rows,
    "No leverages.",
  )}</section>`;
}

// ---------------------------------------------------------------------------------------------------------------
// Page

const STYLE = `
body { font-family: system-ui, sans-serif; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.3rem; }
.data, .totals, .note { color: #555; }
code { background: #f3f3f3; padding: 0.1rem 0.3rem; }
.findings { border-left: 6px solid #d62728; background: #fff4f4; padding: 0.4rem 1rem; margin: 1rem 0; }
.findings li { font-size: 1.1rem; margin: 0.3rem 0; }
.canvas-box { position: relative; height: 360px; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 0.5rem 0 1.5rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.4rem; }
th { background: #f6f6f6; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tbody td:first-child { white-space: nowrap; }
td.neg { color: #c00; font-weight: bold; }
td.empty { color: #777; font-style: italic; }
td.heat { text-align: center; min-width: 6rem; }
td.heat .liq { font-size: 0.75rem; color: #333; }
td.missing { color: #999; }
section { overflow-x: auto; }
`;

/**
 * Draws the price, health and wealth charts of the backtest in the embedded report (the sweep's `backtest` on a
 * sweep page) and sets window.__ballastCharts to what was drawn. Plain browser JavaScript.
 */
const PAGE_SCRIPT = `
(function () {
  "use strict";
  const HEALTH_CLIP = ${HEALTH_CLIP};
  const report = JSON.parse(document.getElementById("report").textContent);
  const bt = report.schema === ${JSON.stringify(SWEEP_SCHEMA)} ? report.backtest : report;
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#393b79"];
  const EVENT_STYLES = {
    "top-up": { colour: "#2ca02c", pointStyle: "triangle" },
    "reduce": { colour: "#ff7f0e", pointStyle: "rectRot" },
    "release": { colour: "#1f77b4", pointStyle: "circle" },
    "liquidation": { colour: "#d62728", pointStyle: "crossRot" },
  };
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;

  const times = bt.steps.time;
  const t0 = times.length > 0 ? times[0] : 0;
  const hoursAt = (step) => (times[step] - t0) / 3600;
  const lastHour = times.length > 0 ? hoursAt(times.length - 1) : 0;
  // x axes: hours since the first step, labelled as UTC dates ("11-08 06:00", or "2020-03-12" over months)
  const iso = (hours) => new Date((t0 + hours * 3600) * 1000).toISOString();
  const dateLabel = lastHour > 60 * 24 ? (hours) => iso(hours).slice(0, 10) : (hours) => iso(hours).slice(5, 16).replace("T", " ");
  const TICK_HOURS = [1, 2, 3, 6, 12, 24, 48, 168, 336, 720, 2160, 4320, 8760, 17520];
  const timeAxis = {
    type: "linear",
    min: 0,
    max: lastHour,
    title: { display: true, text: "UTC, from " + iso(0).slice(0, 16).replace("T", " ") },
    ticks: {
      stepSize: TICK_HOURS.find((h) => lastHour / h <= 12),
      includeBounds: false,
      callback: (value) => dateLabel(Number(value)),
    },
  };
  const healthValue = (h) => (h === null ? null : Math.min(Number(h), HEALTH_CLIP));

  function drawPrice() {
    const chart = new Chart(document.getElementById("chart-price"), {
      type: "line",
      data: {
        datasets: [{
          label: "price (USD)",
          data: bt.steps.price.map((p, i) => ({ x: hoursAt(i), y: p })),
          borderColor: "#333", borderWidth: 1.5, pointRadius: 0,
        }],
      },
      options: { scales: { x: timeAxis }, plugins: { tooltip: { callbacks: { title: (items) => dateLabel(items[0].parsed.x) } } } },
    });
    return chart.getDatasetMeta(0).data.length;
  }

  /** Horizontal lines: liquidation at 1.0 (solid), each distinct policy trigger and target (dashed). */
  function thresholdDatasets() {
    const roles = new Map();
    for (const a of bt.accounts) {
      if (a.policy === null) continue;
      for (const [role, value] of [["trigger", a.policy.trigger], ["target", a.policy.target]]) {
        const v = Number(value);
        if (!roles.has(v)) roles.set(v, new Set());
        roles.get(v).add(role);
      }
    }
    const line = (y, label, colour, dash) => ({
      label, data: [{ x: 0, y }, { x: lastHour, y }], borderColor: colour, borderDash: dash,
      borderWidth: 1.2, pointRadius: 0, pointHitRadius: 0,
    });
    const lines = [line(1, "liquidation (1.0)", "#d62728", [])];
    for (const v of [...roles.keys()].sort((a, b) => a - b)) {
      const r = [...roles.get(v)].sort().reverse();
      const colour = r.length === 2 ? "#8c564b" : r[0] === "trigger" ? "#ff7f0e" : "#2ca02c";
      lines.push(line(Math.min(v, HEALTH_CLIP), r.join("/") + " " + v, colour, [6, 4]));
    }
    return lines;
  }

  /** One scatter dataset per event kind present (the opening itself is not marked). */
  function eventDatasets() {
    const byKind = new Map();
    for (const a of bt.accounts) {
      for (const e of a.events) {
        if (!(e.kind in EVENT_STYLES)) continue;
        const h = e.healthBefore ?? e.healthAfter ?? a.health[e.step] ?? "0";
        if (!byKind.has(e.kind)) byKind.set(e.kind, []);
        byKind.get(e.kind).push({ x: hoursAt(e.step), y: healthValue(h), account: a.label, amountUsd: e.amountUsd });
      }
    }
    return Object.keys(EVENT_STYLES).filter((k) => byKind.has(k)).map((kind) => ({
      type: "scatter", label: kind, data: byKind.get(kind),
      pointStyle: EVENT_STYLES[kind].pointStyle, pointRadius: 7, pointHoverRadius: 9, borderWidth: 2,
      borderColor: EVENT_STYLES[kind].colour, backgroundColor: EVENT_STYLES[kind].colour,
    }));
  }

  function drawHealth() {
    const accounts = bt.accounts
      .filter((a) => a.health.some((h) => h !== null))
      .map((a, i) => ({
        label: a.label, data: a.health.map((h, step) => ({ x: hoursAt(step), y: healthValue(h) })),
        borderColor: COLOURS[i % COLOURS.length], backgroundColor: COLOURS[i % COLOURS.length],
        borderWidth: 1.5, pointRadius: 0, spanGaps: false,
      }));
    const chart = new Chart(document.getElementById("chart-health"), {
      type: "line",
      data: { datasets: [...accounts, ...thresholdDatasets(), ...eventDatasets()] },
      options: {
        scales: { x: timeAxis, y: { min: 0, max: HEALTH_CLIP, title: { display: true, text: "health" } } },
        plugins: {
          legend: { labels: { usePointStyle: true } },
          tooltip: {
            callbacks: {
              title: (items) => dateLabel(items[0].parsed.x),
              label: (item) => {
                const p = item.raw;
                return p.account !== undefined
                  ? item.dataset.label + " — " + p.account + ", " + p.amountUsd + " USD"
                  : item.dataset.label + ": " + item.parsed.y;
              },
            },
          },
        },
      },
    });
    // an account line counts when at least one of its points is drawn (not a gap)
    return accounts.filter((_, i) => chart.getDatasetMeta(i).data.some((point) => !point.skip)).length;
  }

  function drawWealth() {
    const groups = bt.groups;
    const chart = new Chart(document.getElementById("chart-wealth"), {
      type: "bar",
      data: {
        labels: groups.map((g) => g.leverage + "x " + g.side + " " + g.variant),
        datasets: [
          { label: "wealth (USD)", data: groups.map((g) => Number(g.wealthUsd)), backgroundColor: "#1f77b4" },
          { label: "control wealth (USD)", data: groups.map((g) => Number(g.controlWealthUsd)), backgroundColor: "#aaaaaa" },
        ],
      },
      options: { scales: { y: { title: { display: true, text: "USD" } } } },
    });
    return chart.data.datasets.reduce((n, _, i) => n + chart.getDatasetMeta(i).data.length, 0);
  }

  window.__ballastCharts = { price: drawPrice(), health: drawHealth(), wealth: drawWealth() };
})();
`;

let chartJs: string | undefined;

/** Chart.js's UMD build, read once from node_modules (the package does not export its dist/ path). */
function chartJsSource(): string {
  if (chartJs === undefined) {
    const file = path.join(path.dirname(require.resolve("chart.js")), "chart.umd.js");
    chartJs = fs.readFileSync(file, "utf8");
  }
  return chartJs;
}

function page(title: string, report: BacktestReport | SweepReport, body: string): string {
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeHtml(title)}</title>
<style>${STYLE}</style>
</head>
<body>
${body}
<script type="application/json" id="report">${jsonForScript(report)}</script>
<script>${escapeScript(chartJsSource())}</script>
<script>${escapeScript(PAGE_SCRIPT)}</script>
</body>
</html>
`;
}

export function renderBacktestHtml(report: BacktestReport): string {
  return page(report.title, report, `${headerSection(report)}\n${backtestSections(report)}`);
}

export function renderSweepHtml(report: SweepReport): string {
  const bt = report.backtest;
  const body = `${headerSection(report)}
${heatmap(report)}
${bestTable(report)}
<h2 class="part">The backtest the grid ran: ${escapeHtml(bt.title)}</h2>
${findingsSection("backtest-findings", "Backtest findings", bt.findings)}
${backtestSections(bt)}`;
  return page(report.title, report, body);
}

/** Writes <dir>/<scenario>.json and <dir>/<scenario>.html (creating dir) and returns both paths. */
export function writeReport(dir: string, report: BacktestReport | SweepReport): { json: string; html: string } {
  fs.mkdirSync(dir, { recursive: true });
  const json = path.join(dir, `${report.scenario}.json`);
  const html = path.join(dir, `${report.scenario}.html`);
  fs.writeFileSync(json, JSON.stringify(report, null, 2) + "\n");
  fs.writeFileSync(html, report.schema === SWEEP_SCHEMA ? renderSweepHtml(report) : renderBacktestHtml(report));
  return { json, html };
}
