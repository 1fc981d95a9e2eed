/**
 * The policy sweep ("rebalancing threshold optimisation"): one backtest whose population holds, for every leverage
 * and side, a control and one account per policy of the grid, so every policy meets the same prices, the same
 * pool and the same keeper. Per policy and leverage: accounts liquidated, cost (keeper fees + liquidation
 * penalties) and wealth against the controls; per leverage, the cheapest policy that had no liquidation and the one
 * that kept the most wealth.
 */
import { parseWadText as undec, textTable, wadText as dec } from "../lib/format";
import { CENT, signedUsd } from "./accounting";
import type { BacktestReport, PolicyReport, SweepCell, SweepReport } from "./types";
import { SWEEP_SCHEMA } from "./types";

export function sweepReport(backtest: BacktestReport): SweepReport {
  const policies: PolicyReport[] = [];
  for (const a of backtest.accounts) if (a.policy && !policies.some((p) => p.name === a.policy!.name)) policies.push(a.policy);
  const leverages = [...new Set(backtest.accounts.map((a) => a.leverage))].sort((x, y) => x - y);
  const cells: SweepCell[] = [];
  for (const p of policies) {
    for (const leverage of leverages) {
      const list = backtest.accounts.filter((a) => a.policy?.name === p.name && a.leverage === leverage);
      if (list.length === 0) continue;
      const sum = (f: (x: (typeof list)[number]) => bigint) => list.reduce((s, a) => s + f(a), 0n);
      cells.push({
        policy: p,
        leverage,
        accounts: list.length,
        opened: list.filter((a) => a.opened).length,
        liquidations: list.filter((a) => a.liquidations > 0).length,
        feesUsd: dec(sum((a) => undec(a.keeperFeesUsd) + undec(a.penaltiesUsd) + undec(a.tradingFeesUsd))),
        gasUsd: dec(sum((a) => undec(a.gasUsd))),
        costUsd: dec(sum((a) => undec(a.keeperFeesUsd) + undec(a.penaltiesUsd) + undec(a.tradingFeesUsd) + undec(a.gasUsd))),
        gasUsed: list.reduce((s, a) => s + a.gasUsed, 0),
        wealthVsControlUsd: dec(sum((a) => undec(a.wealthVsControlUsd))),
      });
    }
  }
  const best = leverages.map((leverage) => {
    // a leverage whose orders the market refused has nothing to rank
    const here = cells.filter((c) => c.leverage === leverage && c.opened > 0);
    const safe = here.filter((c) => c.liquidations === 0).sort((x, y) => cmp(undec(x.costUsd), undec(y.costUsd)));
    // most wealth: within a cent of the best is a tie (funding seconds, not the policy), broken by cost, then grid order
    const top = here.reduce((m, c) => (undec(c.wealthVsControlUsd) > m ? undec(c.wealthVsControlUsd) : m), -(2n ** 255n));
    const richest = here.filter((c) => undec(c.wealthVsControlUsd) > top - CENT).sort((x, y) => cmp(undec(x.costUsd), undec(y.costUsd)));
    return { leverage, cheapestSafe: safe[0]?.policy.name ?? null, mostWealth: richest[0]?.policy.name ?? null };
  });
  const findings = best.map((b) => {
    if (b.mostWealth === null) return `${b.leverage}x: no opening order filled (refused at entry: see the accounts' openRefused), nothing to rank.`;
    const rich = cells.find((c) => c.leverage === b.leverage && c.policy.name === b.mostWealth);
    const vs = rich ? undec(rich.wealthVsControlUsd) : 0n;
    return (
      `${b.leverage}x: ` +
      (b.cheapestSafe ? `cheapest policy without a liquidation: ${b.cheapestSafe}` : "every policy had a liquidation") +
      `; most wealth: ${b.mostWealth} (${signedUsd(vs)} USD against its controls${vs <= -CENT ? ": even the best policy cost wealth" : ""}).`
    );
  });
  return {
    schema: SWEEP_SCHEMA,
    scenario: backtest.scenario,
    title: backtest.title,
    command: backtest.command,
    data: backtest.data,
    policies,
    leverages,
    cells,
    best,
    findings: [...findings, ...backtest.findings],
    assumptions: backtest.assumptions,
    backtest,
  };
}

const cmp = (x: bigint, y: bigint) => (x < y ? -1 : x > y ? 1 : 0);

/** The terminal grid: one row per policy, per leverage "liquidated/accounts wealth-vs-control". */
export function sweepTable(r: SweepReport): string {
  const head = ["policy", ...r.leverages.map((l) => `${l}x liq · vs control`)];
  const rows = r.policies.map((p) => [
    p.name,
    ...r.leverages.map((l) => {
      const c = r.cells.find((x) => x.policy.name === p.name && x.leverage === l);
      if (!c) return "-";
      const vs = undec(c.wealthVsControlUsd);
      return `${c.liquidations}/${c.accounts} · ${signedUsd(vs)}`;
    }),
  ]);
  return textTable(head, rows, { right: (i) => i > 0, rule: true });
}
