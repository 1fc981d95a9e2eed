/**
 * The README's demo figures, generated from the demo's report (reports/ftx-2022.json) by `npm run demo:readme`, and
 * checked against a fresh run by test/sim/DemoReadme.test.ts: every figure of the README's demo section is one the
 * demo wrote.
 */
import { health, parseWadText as undec, replaceMarkedBlock, usd } from "../lib/format";
import { CENT, signedUsd } from "./accounting";
import type { BacktestReport, GroupReport } from "./types";

export const DEMO_BEGIN = "<!-- demo:begin (generated from reports/ftx-2022.json by `npm run demo:readme`) -->";
export const DEMO_END = "<!-- demo:end -->";

const quiet = (g: GroupReport) => {
  const vs = undec(g.wealthVsControlUsd);
  return g.liquidations === 0 && g.rebalances.topUp + g.rebalances.reduce + g.rebalances.release === 0 && vs < CENT && vs > -CENT;
};

/** The groups in which something happened, as a table; the rest named in one line; then the findings. */
export function demoMarkdown(r: BacktestReport): string {
  const bySide = new Map<string, GroupReport[]>();
  for (const g of r.groups) bySide.set(`${g.leverage}x ${g.side}`, [...(bySide.get(`${g.leverage}x ${g.side}`) ?? []), g]);
  const active = [...bySide.values()].filter((gs) => !gs.every(quiet)).flat();
  const idle = [...bySide.entries()].filter(([, gs]) => gs.every(quiet)).map(([k]) => k);
  const t = r.totals;
  const lines = [
    `${t.accounts} accounts, ${r.steps.time.length} hourly prices (the population opens at step ${r.steps.openStep}), ` +
      `${t.liquidations} liquidations, ${t.rebalances} rebalances, keeper fees ${usd(undec(t.keeperFeesUsd))} USD, ` +
      `bad debt ${usd(undec(t.badDebtUsd))} USD.`,
    "",
    "| group | liquidated | top-ups | reduces | keeper fees USD | min health before keeper | wealth USD | vs control USD |",
    "|---|---|---|---|---|---|---|---|",
    ...active.map(
      (g) =>
        `| ${g.key} | ${g.liquidated}/${g.accounts} | ${g.rebalances.topUp} | ${g.rebalances.reduce} | ${usd(undec(g.keeperFeesUsd))} | ` +
        `${g.minHealth === null ? "—" : health(undec(g.minHealth))} | ${usd(undec(g.wealthUsd))} | ${g.variant === "control" ? "—" : signedUsd(undec(g.wealthVsControlUsd))} |`,
    ),
    "",
    idle.length > 0 ? `Nothing happened to ${idle.join(", ")} (no rebalance, no liquidation; every policy account level with its control to the cent).` : "",
    "",
    ...r.findings.map((f) => `- ${f}`),
  ];
  return lines.join("\n").replace(/\n{3,}/g, "\n\n");
}

export function replaceDemoBlock(readme: string, r: BacktestReport): string {
  return replaceMarkedBlock(readme, DEMO_BEGIN, DEMO_END, demoMarkdown(r), "README.md lacks the demo");
}
