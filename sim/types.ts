/**
 * The backtest and sweep reports as written to reports/<scenario>.json and rendered into reports/<scenario>.html
 * (sim/html.ts). One schema for the demo (`npm run demo`), `sim:backtest` and `sim:sweep`.
 *
 * Money in the JSON is a decimal string of USD, exact (the WAD value the chain returned, trailing zeros trimmed):
 * "1234.5", "-87.123456789012345678". Health is a decimal string too (WAD ratio), or null where the account has no
 * position (no requirement) or does not exist yet. Numbers are used only for display data (prices for charts).
 */

export const BACKTEST_SCHEMA = "ballast.backtest/1";
export const SWEEP_SCHEMA = "ballast.sweep/1";

export type Side = "long" | "short";
import type { ActionName } from "../deploy/params";
export type { ActionName };
export type EventKind = "top-up" | "reduce" | "release" | "liquidation" | "open";

export interface PolicyReport {
  /** e.g. "top-up 1.3→1.6" */
  name: string;
  trigger: string;
  target: string;
  /** "0" = no release */
  release: string;
  actions: ActionName[];
  maxFeeUsd: string;
}

/** Something that happened to an account at a step, read from the chain (events and receipts). */
export interface AccountEvent {
  step: number;
  kind: EventKind;
  /** gas used by the transaction (for a batch: the whole batch) */
  gas: number;
  /** accounts the transaction acted on (1, or a batch's size): gas / txAccounts is this account's share */
  txAccounts: number;
  /** keeper fee (rebalance) or liquidation penalty paid by the account, USD */
  feeUsd: string;
  /** USD moved: topped up, notional reduced, released, or notional liquidated */
  amountUsd: string;
  healthBefore: string | null;
  healthAfter: string | null;
}

export interface AccountReport {
  id: string;
  /** "10x long control", "10x long top-up 1.3→1.6" */
  label: string;
  leverage: number;
  side: Side;
  /** "control" or the policy's name */
  variant: string;
  policy: PolicyReport | null;
  /** margin + reserve at the start (a control keeps the reserve idle, outside the protocol) */
  startCapitalUsd: string;
  marginUsd: string;
  reserveUsd: string;
  /** whether the opening order filled (an order refused by the market's rules leaves the account flat) */
  opened: boolean;
  /** the named rule that cancelled the opening order (e.g. "BelowInitialMargin"), null if it filled */
  openRefused: string | null;
  /** entry price, USD (decimal string), "0" if not opened */
  entryPrice: string;
  /** health after every step's round, before the keeper acted (same length as `steps.time`; null: no position) */
  health: (string | null)[];
  minHealth: string | null;
  events: AccountEvent[];
  liquidations: number;
  /** what liquidations charged the account: penalty + keeper reward (LiquidationLogic), bad debt included */
  penaltiesUsd: string;
  rebalances: { topUp: number; reduce: number; release: number };
  keeperFeesUsd: string;
  /** trading fees of its reductions by rebalance */
  tradingFeesUsd: string;
  /** gas of the keeper transactions acting on this account (a batch's shared equally; the opening fill excluded) */
  gasUsed: number;
  /** that gas at the transactions' gas price and the step's ETH price, USD (paid by keepers; their fee reimburses it) */
  gasUsd: string;
  badDebtUsd: string;
  finalEquityUsd: string;
  /** reserve left in the vault, plus (control) the reserve kept idle outside */
  reserveLeftUsd: string;
  withdrawnUsd: string;
  /** equity + reserve left + withdrawn */
  wealthUsd: string;
  /** id of the control with the same leverage, side and starting capital */
  controlId: string | null;
  /** wealth − the control's wealth ("0" for a control) */
  wealthVsControlUsd: string;
}

/** Sums over the accounts of one (leverage, side, variant). */
export interface GroupReport {
  key: string;
  leverage: number;
  side: Side;
  variant: string;
  accounts: number;
  liquidated: number;
  liquidations: number;
  penaltiesUsd: string;
  rebalances: { topUp: number; reduce: number; release: number };
  keeperFeesUsd: string;
  tradingFeesUsd: string;
  gasUsed: number;
  gasUsd: string;
  /** average gas per rebalance / liquidation transaction touching the group, 0 when none */
  gasPerAction: { rebalance: number; liquidation: number };
  minHealth: string | null;
  badDebtUsd: string;
  wealthUsd: string;
  controlWealthUsd: string;
  wealthVsControlUsd: string;
}

export interface BacktestReport {
  schema: typeof BACKTEST_SCHEMA;
  scenario: string;
  title: string;
  /** the command that reproduces this report */
  command: string;
  data: {
    file: string;
    ohlc: string | null;
    /** where the data comes from (data/SOURCES.md) */
    source: string;
    sampling: "close" | "chainlink";
    rows: number;
  };
  seed: number;
  /** steps of the replay: time (unix s, the data's clock), price (USD, display), whether the population existed */
  steps: { time: number[]; price: number[]; openStep: number };
  accounts: AccountReport[];
  groups: GroupReport[];
  totals: {
    accounts: number;
    liquidations: number;
    rebalances: number;
    keeperFeesUsd: string;
    badDebtUsd: string;
    gasUsed: number;
    /** the pool's (LPs') result from the open to the end, marked to market: its capital's change less the traders'
     *  unrealised PnL it owes (or plus what they owe it), USD */
    lpPnlUsd: string;
    /** the insurance fund's change over the same span, USD */
    insuranceChangeUsd: string;
    wallSeconds: number;
  };
  /** plain sentences, e.g. where protection cost wealth against the control */
  findings: string[];
  /** what the replay assumes that a live deployment may not: gas price, breaker, caps, warm-up */
  assumptions: string[];
}

export interface SweepCell {
  policy: PolicyReport;
  leverage: number;
  accounts: number;
  /** accounts whose opening order filled */
  opened: number;
  /** accounts liquidated at least once */
  liquidations: number;
  /** what the accounts paid: keeper fees, liquidation charges (penalty + reward) and reductions' trading fees, USD */
  feesUsd: string;
  /** gas keepers spent acting on them, USD at the replay's gas price */
  gasUsd: string;
  /** feesUsd + gasUsd: the cost of protecting them ("fees + gas") */
  costUsd: string;
  gasUsed: number;
  wealthVsControlUsd: string;
}

export interface SweepReport {
  schema: typeof SWEEP_SCHEMA;
  scenario: string;
  title: string;
  command: string;
  data: BacktestReport["data"];
  policies: PolicyReport[];
  leverages: number[];
  cells: SweepCell[];
  /** per leverage: the cheapest policy with zero liquidations, and the one that kept the most wealth (null: no order filled) */
  best: { leverage: number; cheapestSafe: string | null; mostWealth: string | null }[];
  findings: string[];
  assumptions: string[];
  /** the backtest the grid ran (one population, every policy side by side) */
  backtest: BacktestReport;
}
