/**
 * Fair accounting of a backtest: per (leverage, side, variant) group, sums of what the accounts paid and kept, and
 * wealth against the control with the same starting capital; the findings say plainly where protection cost wealth.
 */
import { health, parseWadText as undec, textTable, usd, wadText as dec } from "../lib/format";
import type { AccountReport, BacktestReport, GroupReport } from "./types";

export function summarise(report: BacktestReport): void {
  report.groups = groups(report.accounts);
  const sum = (f: (a: AccountReport) => bigint) => report.accounts.reduce((s, a) => s + f(a), 0n);
  report.totals = {
    ...report.totals,
    accounts: report.accounts.length,
    liquidations: report.accounts.reduce((s, a) => s + a.liquidations, 0),
    // rebalance transactions per account (one that topped up and reduced is one rebalance with two events)
    rebalances: report.accounts.reduce((s, a) => s + new Set(a.events.filter((e) => REBALANCE_KINDS.has(e.kind)).map((e) => `${e.step}:${e.gas}`)).size, 0),
    keeperFeesUsd: dec(sum((a) => undec(a.keeperFeesUsd))),
    badDebtUsd: dec(sum((a) => undec(a.badDebtUsd))),
    gasUsed: report.accounts.reduce((s, a) => s + a.gasUsed, 0),
  };
  report.findings = findings(report);
}

/** Differences under a cent are not findings: accounts that act in different blocks accrue funding for different seconds. */
export const CENT = 10n ** 16n;
const below = (x: string) => undec(x) <= -CENT;

const REBALANCE_KINDS = new Set(["top-up", "reduce", "release"]);

function groups(accounts: AccountReport[]): GroupReport[] {
  const byKey = new Map<string, AccountReport[]>();
  for (const a of accounts) {
    const key = `${a.leverage}x ${a.side} ${a.variant}`;
    byKey.set(key, [...(byKey.get(key) ?? []), a]);
  }
  const wealth = new Map(accounts.map((a) => [a.id, undec(a.wealthUsd)]));
  const out: GroupReport[] = [];
  for (const [key, list] of byKey) {
    const sum = (f: (a: AccountReport) => bigint) => list.reduce((s, a) => s + f(a), 0n);
    const count = (f: (a: AccountReport) => number) => list.reduce((s, a) => s + f(a), 0);
    // gas per action, an account's share of its transaction: a rebalance that topped up and reduced is one
    // transaction with two events
    const txs = { rebalance: new Map<string, number>(), liquidation: new Map<string, number>() };
    for (const a of list) {
      for (const e of a.events) {
        const bucket = e.kind === "liquidation" ? txs.liquidation : REBALANCE_KINDS.has(e.kind) ? txs.rebalance : null;
        bucket?.set(`${a.id}:${e.step}:${e.gas}`, e.gas / Math.max(1, e.txAccounts));
      }
    }
    const avg = (m: Map<string, number>) => (m.size === 0 ? 0 : Math.round([...m.values()].reduce((s, g) => s + g, 0) / m.size));
    const mins = list.map((a) => a.minHealth).filter((h): h is string => h !== null).map(undec);
    const wealthUsd = sum((a) => undec(a.wealthUsd));
    const controlWealth = sum((a) => (a.controlId === null ? undec(a.wealthUsd) : wealth.get(a.controlId)!));
    out.push({
      key,
      leverage: list[0].leverage,
      side: list[0].side,
      variant: list[0].variant,
      accounts: list.length,
      liquidated: list.filter((a) => a.liquidations > 0).length,
      liquidations: count((a) => a.liquidations),
      penaltiesUsd: dec(sum((a) => undec(a.penaltiesUsd))),
      rebalances: {
        topUp: count((a) => a.rebalances.topUp),
        reduce: count((a) => a.rebalances.reduce),
        release: count((a) => a.rebalances.release),
      },
      keeperFeesUsd: dec(sum((a) => undec(a.keeperFeesUsd))),
      tradingFeesUsd: dec(sum((a) => undec(a.tradingFeesUsd))),
      gasUsed: count((a) => a.gasUsed),
      gasUsd: dec(sum((a) => undec(a.gasUsd))),
      gasPerAction: { rebalance: avg(txs.rebalance), liquidation: avg(txs.liquidation) },
      minHealth: mins.length ? dec(mins.reduce((x, y) => (y < x ? y : x))) : null,
      badDebtUsd: dec(sum((a) => undec(a.badDebtUsd))),
      wealthUsd: dec(wealthUsd),
      controlWealthUsd: dec(controlWealth),
      wealthVsControlUsd: dec(wealthUsd - controlWealth),
    });
  }
  return out.sort((a, b) => a.leverage - b.leverage || a.side.localeCompare(b.side) || variantOrder(a.variant) - variantOrder(b.variant) || a.variant.localeCompare(b.variant));
}

const variantOrder = (v: string) => (v === "control" ? 0 : 1);

/** Plain sentences: per policy, liquidations avoided and wealth against the controls; every group where it cost wealth. */
function findings(report: BacktestReport): string[] {
  const out: string[] = [];
  // counts are of the accounts that traded: an order refused at entry is reported on its own line below
  const opened = report.accounts.filter((a) => a.opened);
  const controls = opened.filter((a) => a.policy === null);
  if (controls.length > 0) out.push(`Without a policy, ${controls.filter((a) => a.liquidations > 0).length} of ${controls.length} control accounts were liquidated.`);
  const variants = [...new Set(report.groups.filter((g) => g.variant !== "control").map((g) => g.variant))];
  for (const v of variants) {
    const gs = report.groups.filter((g) => g.variant === v);
    const mine = opened.filter((a) => a.variant === v);
    const n = mine.length;
    const liq = mine.filter((a) => a.liquidations > 0).length;
    // the controls these accounts are compared with
    const theirs = new Set(mine.map((a) => a.controlId));
    const controlLiq = controls.filter((c) => theirs.has(c.id) && c.liquidations > 0).length;
    const vs = gs.reduce((s, g) => s + undec(g.wealthVsControlUsd), 0n);
    const poorer = gs.filter((g) => below(g.wealthVsControlUsd)).map((g) => `${g.leverage}x ${g.side}`);
    out.push(
      `Policy ${v}: ${liq} of ${n} accounts liquidated (controls: ${controlLiq}); together they ended ` +
        (abs(vs) < CENT ? "level with their controls (within a cent)" : `${usd(abs(vs))} USD ${vs < 0n ? "POORER" : "richer"} than their controls`) +
        (poorer.length ? ` — protection cost wealth at ${poorer.join(", ")}.` : "."),
    );
  }
  const costly = report.groups
    .filter((g) => g.variant !== "control" && below(g.wealthVsControlUsd))
    .sort((a, b) => (undec(a.wealthVsControlUsd) < undec(b.wealthVsControlUsd) ? -1 : 1));
  for (const g of costly.slice(0, 5)) {
    const control = report.groups.find((c) => c.variant === "control" && c.leverage === g.leverage && c.side === g.side);
    out.push(
      `Largest cost: ${g.key} kept ${usd(undec(g.wealthUsd))} USD against ${usd(undec(g.controlWealthUsd))} for its control` +
        ` (${usd(-undec(g.wealthVsControlUsd))} USD less; liquidated ${g.liquidated}/${g.accounts}, control ${control?.liquidated ?? 0}/${control?.accounts ?? 0}).`,
    );
  }
  const refused = new Map<string, string[]>();
  for (const a of report.accounts) if (!a.opened) refused.set(a.openRefused ?? "no fill", [...(refused.get(a.openRefused ?? "no fill") ?? []), `#${a.id} ${a.label}`]);
  for (const [reason, list] of refused) {
    out.push(`${list.length} opening order${list.length > 1 ? "s were" : " was"} refused (${reason}): ${list.join(", ")} — never traded, level with ${list.length > 1 ? "their controls" : "its control"}.`);
  }
  const lp = undec(report.totals.lpPnlUsd);
  out.push(
    `LPs, the counterparty: ${signedUsd(lp)} USD marked to market from the open to the end (fees, funding and traders' losses less their gains); ` +
      `insurance fund ${signedUsd(undec(report.totals.insuranceChangeUsd))} USD.`,
  );
  const bad = undec(report.totals.badDebtUsd);
  out.push(bad === 0n ? "No bad debt: every liquidation was covered by the account's own equity." : `Bad debt: ${usd(bad)} USD, covered by insurance and then the LPs.`);
  return out;
}

/** "+12.34", "-0.50", "0.00" (under a cent either way). */
export const signedUsd = (x: bigint) => (abs(x) < CENT ? "0.00" : (x > 0n ? "+" : "-") + usd(abs(x)));

const abs = (x: bigint) => (x < 0n ? -x : x);

/** The terminal summary: one row per group. */
export function summaryTable(report: BacktestReport): string {
  const head = ["group", "accts", "liq'd", "top-up", "reduce", "release", "fees USD", "gas/rebal", "min health", "wealth USD", "vs control"];
  const rows = report.groups.map((g) => [
    g.key,
    String(g.accounts),
    String(g.liquidated),
    String(g.rebalances.topUp),
    String(g.rebalances.reduce),
    String(g.rebalances.release),
    usd(undec(g.keeperFeesUsd)),
    g.gasPerAction.rebalance ? g.gasPerAction.rebalance.toLocaleString("en-US") : "-",
    g.minHealth === null ? "-" : health(undec(g.minHealth)),
    usd(undec(g.wealthUsd)),
    signedUsd(undec(g.wealthVsControlUsd)),
  ]);
  return textTable(head, rows, { right: (i) => i > 0, rule: true });
}
