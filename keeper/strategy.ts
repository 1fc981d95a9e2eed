/**
 * What the keeper does next, as pure functions over plain snapshots (no chain, no clock): which accounts to
 * liquidate, rescue or rebalance and which pending orders to execute, in what order, in which batches, and whether
 * each is worth its gas at the current base fee. Money is WAD USD bigint throughout.
 *
 * Order: liquidations (lowest health first), then collateral sales of accounts a liquidation left owing with collateral
 * (largest debt first): bought directly with `buyCollateral` when the keeper's own USDC covers the repay (no pool fee,
 * less gas; an exact `approve` of the engine first when its allowance is short), otherwise through the FlashLiquidator
 * when one is configured (the keeper needs no USDC), otherwise left to others; then rescues (health < 1 with a
 * reserve that can lift it: the engine refuses the liquidation), then rebalances (lowest health first, grouped into
 * `rebalanceBatch` calls of at most `batchSize`), then order executions (oldest first). An action whose fee or reward
 * does not cover gas × baseFee × ETH price + minProfitUsd waits, with the reason.
 */
import { keccak256, toBeHex, zeroPadValue } from "ethers";
import { gweiText } from "../lib/format";
import { collateralSale } from "../lib/margin";

export const WAD = 10n ** 18n;

/** `IRebalancer.Status`. */
export const STATUS = { Ready: 0, NotOptedIn: 1, Cooldown: 2, InBand: 3, Liquidatable: 4, OracleUnhealthy: 5, NoAction: 6 } as const;
export const STATUS_NAME = ["Ready", "NotOptedIn", "Cooldown", "InBand", "Liquidatable", "OracleUnhealthy", "NoAction"];

export interface AccountSnapshot {
  id: bigint;
  /** the account's round of state (journal key round) */
  round: string;
  /** WAD; 2^256 − 1 without requirement */
  health: bigint;
  /** false when a position of the account has no valid price (nothing can be done) */
  priced: boolean;
  /** liquidate() would act now (health < 1, fraction > 0, no rescue) */
  liquidatable: boolean;
  /** health < 1 and the account's reserve can rescue it: a rebalance, not a liquidation */
  rescueAvailable: boolean;
  /** what a liquidation would pay the caller, WAD USD (keeperReward + share × penalty) */
  liquidationRewardUsd: bigint;
  /** from needsRebalance, for opted-in accounts the scanner asked about */
  rebalance?: { needed: boolean; status: number; maxFeeUsd: bigint };
}

export interface OrderSnapshot {
  id: bigint;
  accountId: bigint;
  /** executeOrder would settle it now (a round after the request exists, or the deadline passed) */
  ready: boolean;
  /** escrowed execution fee, WAD USD */
  feeUsd: bigint;
}

/**
 * An account with no position that owes the pool and holds collateral (the FlashLiquidator's, else the first listed
 * asset it holds), with what a flash liquidation would do now (`flashLiquidate` simulated from the keeper's address
 * with minProfit 0) when that collateral is the FlashLiquidator's.
 */
export interface DebtSnapshot {
  id: bigint;
  round: string;
  /** USD owed (−S), WAD */
  debtUsd: bigint;
  /** the collateral token and the account's margin in it (token units) */
  collateral: string;
  margin: bigint;
  /** the collateral's oracle price, WAD USD per whole token (undefined: unpriced, nothing can be bought) */
  collateralPriceUsd: bigint | undefined;
  collateralDecimals: number;
  /** the simulated flash profit in collateral units, or why the simulation reverted; undefined: not simulated (no
   *  FlashLiquidator configured, or another collateral) */
  quote?: { profit: bigint } | { reason: string };
}

/** The keeper's own settlement-token inventory and what a direct `buyCollateral` needs to price it. */
export interface Inventory {
  /** the keeper's USDC balance and its allowance to the engine, token units */
  balance: bigint;
  allowance: bigint;
  /** WAD USD per settlement-token unit (10^12 for USDC) */
  settlementScale: bigint;
  /** the engine's riskParams().collateralDiscount, WAD */
  collateralDiscount: bigint;
  /** gas units of a buyCollateral and of an ERC-20 approve */
  gas: { buyCollateral: number; approve: number };
}

export interface GasUnits {
  rebalance: number;
  rebalanceBatchBase: number;
  rebalanceBatchPerAccount: number;
  liquidate: number;
  executeOrder: number;
  /** a FlashLiquidator.flashLiquidate without the liquidation (a swap, buyCollateral, the pool's repayment) */
  flashLiquidate?: number;
  /** the engine's buyCollateral, paid from the keeper's own USDC */
  buyCollateral?: number;
  /** an ERC-20 approve (the engine, for exactly a repay) */
  approve?: number;
}

/** The flash-liquidation part of the conditions; absent when no FlashLiquidator is configured (debts are left). */
export interface FlashConditions {
  /** least profit in USD above gas (the keeper's `flashMinProfitUsd`) */
  minProfitUsd: bigint;
  gas: number;
}

export interface Conditions {
  /** wei: the base fee the next transaction will pay (the latest block's) */
  baseFee: bigint;
  /** WAD USD per ETH (the gas asset), undefined when unknown */
  ethUsd: bigint | undefined;
  /** the engine's keeper fee parameters (IRebalancer.feeParams) */
  feeParams: { baseFeeUsd: bigint; gasUnits: bigint };
  /** wei: the keeper's maxFeePerGas cap */
  maxFeePerGas: bigint;
  gas: GasUnits;
  minProfitUsd: bigint;
  batchSize: number;
  shard: { index: number; count: number };
  /** action keys (e.g. "rebalance:3") already pending or mined in the account's current round */
  busy: ReadonlySet<string>;
  /** collateral sales through the FlashLiquidator (undefined: not configured) */
  flash?: FlashConditions;
  /** the keeper's USDC for direct collateral purchases (undefined: none, or not read) */
  inventory?: Inventory;
}

export type ActionKind = "liquidate" | "approve" | "buyCollateral" | "flashLiquidate" | "rescue" | "rebalance" | "rebalanceBatch" | "executeOrder";

export interface Action {
  kind: ActionKind;
  /** account ids (liquidate, rescue, rebalance, rebalanceBatch) or the order id (executeOrder) */
  ids: bigint[];
  /** journal entries: one per account (or order), with its round */
  targets: { key: string; round: string }[];
  /** fee or reward, WAD USD */
  valueUsd: bigint;
  /** gas × baseFee × ETH price, WAD USD */
  costUsd: bigint;
  gas: number;
  /** flashLiquidate only: the least profit, collateral units, the contract must make (else InsufficientProfit) */
  minProfit?: bigint;
  /** buyCollateral: the collateral, the repay (settlement-token units) and the least collateral out (else the
   *  engine's SlippageExceeded); approve: the repay the engine is approved for, exactly */
  collateral?: string;
  repay?: bigint;
  minAmountOut?: bigint;
}

export interface Wait {
  key: string;
  reason: string;
}

export interface Plan {
  actions: Action[];
  waits: Wait[];
}

/** The shard (0..count−1) of an account: keccak256 of its 32-byte id, mod count. Two shards never share an account. */
export function shardOf(accountId: bigint, count: number): number {
  if (count <= 1) return 0;
  return Number(BigInt(keccak256(zeroPadValue(toBeHex(accountId), 32))) % BigInt(count));
}

export const inShard = (accountId: bigint, shard: { index: number; count: number }) => shardOf(accountId, shard.count) === shard.index;

/** WAD USD of `gas` units at `baseFee` wei and `ethUsd` WAD, rounded up (a cost). */
export function gasCostUsd(gas: bigint, baseFee: bigint, ethUsd: bigint): bigint {
  return (gas * baseFee * ethUsd + WAD - 1n) / WAD;
}

/** The engine's rebalance fee: min(maxFeeUsd, baseFeeUsd + gasUnits × basefee × ETH price / 1e18) (rounded down). */
export function rebalanceFeeUsd(maxFeeUsd: bigint, feeParams: { baseFeeUsd: bigint; gasUnits: bigint }, baseFee: bigint, ethUsd: bigint): bigint {
  const fee = feeParams.baseFeeUsd + (feeParams.gasUnits * baseFee * ethUsd) / WAD;
  return fee < maxFeeUsd ? fee : maxFeeUsd;
}

const usd = (v: bigint) => {
  const neg = v < 0n;
  const a = neg ? -v : v;
  const cents = (a + 5n * 10n ** 15n) / 10n ** 16n;
  return `${neg ? "-" : ""}${cents / 100n}.${(cents % 100n).toString().padStart(2, "0")}`;
};


function unprofitable(what: string, value: bigint, cost: bigint, c: Conditions, minProfitUsd = c.minProfitUsd): string {
  return `unprofitable: ${what} ${usd(value)} USD < gas ${usd(cost)} USD + min profit ${usd(minProfitUsd)} USD at base fee ${gweiText(c.baseFee)} gwei`;
}

/** WAD USD of `amount` collateral units at `priceWad` per whole token, rounded down (a value). */
export function collateralUsd(amount: bigint, priceWad: bigint, decimals: number): bigint {
  return (amount * priceWad) / 10n ** BigInt(decimals);
}

/** Collateral units worth at least `usdWad` at `priceWad`, rounded up: the on-chain profit floor of a flash sale. */
export function collateralFor(usdWad: bigint, priceWad: bigint, decimals: number): bigint {
  const d = 10n ** BigInt(decimals);
  return (usdWad * d + priceWad - 1n) / priceWad;
}

/**
 * The collateral sales worth sending, largest debt first, in the caller's shard (pure). For each owing account:
 *  - when the keeper's USDC (what earlier sales of this plan left of it) covers the repay, a direct `buyCollateral`
 *    — the repay and the collateral out are the engine's (lib/margin.ts collateralSale), the profit is the collateral's
 *    value at the oracle less the repay; sent when it covers gas (buyCollateral, plus an approve when the allowance
 *    is short: then an exact `approve` of the repay goes first) + minProfitUsd, with minAmountOut = that sum in
 *    collateral (rounded up), so a price that moves before it lands makes it revert (SlippageExceeded), not lose;
 *  - otherwise, with a FlashLiquidator configured, a flash liquidation when its simulated profit, valued at the oracle,
 *    covers gas + `flash.minProfitUsd`; sent with minProfit = that sum in collateral (rounded up: InsufficientProfit
 *    if the pool moves);
 *  - otherwise the account is left to others (no wait: nothing this keeper could do).
 */
export function planSales(debts: readonly DebtSnapshot[], c: Conditions, stop: string | undefined, waits: Wait[]): Action[] {
  const flash = c.flash;
  const inv = c.inventory;
  if (!flash && !inv) return [];
  const actions: Action[] = [];
  const eth = c.ethUsd ?? 0n;
  let balance = inv?.balance ?? 0n;
  let allowance = inv?.allowance ?? 0n;
  const mine = debts.filter((d) => inShard(d.id, c.shard)).sort((x, y) => (x.debtUsd !== y.debtUsd ? (x.debtUsd > y.debtUsd ? -1 : 1) : x.id < y.id ? -1 : 1));
  for (const d of mine) {
    const key = `buy:${d.id}`;
    if (c.busy.has(key)) continue;
    const price = d.collateralPriceUsd;
    const sale =
      inv && price !== undefined && price !== 0n
        ? collateralSale({ debtUsd: d.debtUsd, available: d.margin, priceWad: price, decimals: d.collateralDecimals, collateralDiscount: inv.collateralDiscount, settlementScale: inv.settlementScale })
        : undefined;
    const direct = inv !== undefined && sale !== undefined && sale.repay <= balance;
    if (!direct && (!flash || d.quote === undefined)) continue; // neither route: left to others
    if (stop) {
      waits.push({ key, reason: stop });
      continue;
    }
    if (price === undefined || price === 0n) {
      waits.push({ key, reason: "collateral unpriced" });
      continue;
    }
    if (direct) {
      const approve = allowance < sale.repay;
      const approveKey = `approve:${d.id}`;
      if (approve && c.busy.has(approveKey)) {
        waits.push({ key, reason: "waiting for the engine's approval to be mined" });
        continue;
      }
      const gas = inv.gas.buyCollateral + (approve ? inv.gas.approve : 0);
      const k = gasCostUsd(BigInt(gas), c.baseFee, eth);
      const repayUsd = sale.repay * inv.settlementScale;
      const value = collateralUsd(sale.amountOut, price, d.collateralDecimals) - repayUsd;
      if (value < k + c.minProfitUsd) {
        waits.push({ key, reason: unprofitable("direct buy profit", value, k, c) });
        continue;
      }
      if (approve) {
        const ka = gasCostUsd(BigInt(inv.gas.approve), c.baseFee, eth);
        actions.push({ kind: "approve", ids: [d.id], targets: [{ key: approveKey, round: d.round }], valueUsd: 0n, costUsd: ka, gas: inv.gas.approve, repay: sale.repay });
        allowance = sale.repay;
      }
      actions.push({
        kind: "buyCollateral",
        ids: [d.id],
        targets: [{ key, round: d.round }],
        valueUsd: value,
        costUsd: k,
        gas,
        collateral: d.collateral,
        repay: sale.repay,
        minAmountOut: collateralFor(repayUsd + k + c.minProfitUsd, price, d.collateralDecimals),
      });
      balance -= sale.repay;
      allowance -= sale.repay;
      continue;
    }
    const quote = d.quote!;
    if ("reason" in quote) {
      waits.push({ key, reason: `flash liquidation would revert: ${quote.reason}` });
      continue;
    }
    const k = gasCostUsd(BigInt(flash!.gas), c.baseFee, eth);
    const value = collateralUsd(quote.profit, price, d.collateralDecimals);
    if (value < k + flash!.minProfitUsd) {
      waits.push({ key, reason: unprofitable("flash profit", value, k, c, flash!.minProfitUsd) });
      continue;
    }
    actions.push({
      kind: "flashLiquidate",
      ids: [d.id],
      targets: [{ key, round: d.round }],
      valueUsd: value,
      costUsd: k,
      gas: flash!.gas,
      minProfit: collateralFor(k + flash!.minProfitUsd, price, d.collateralDecimals),
    });
  }
  return actions;
}

/** The plan for one cycle. */
export function plan(accounts: readonly AccountSnapshot[], orders: readonly OrderSnapshot[], c: Conditions, debts: readonly DebtSnapshot[] = []): Plan {
  const actions: Action[] = [];
  const waits: Wait[] = [];
  const mine = accounts.filter((a) => inShard(a.id, c.shard));

  // Gas conditions that stop everything.
  const stop =
    c.ethUsd === undefined
      ? "no ETH price (gas asset unpriced and no ethUsdFallback)"
      : c.baseFee > c.maxFeePerGas
        ? `base fee ${gweiText(c.baseFee)} gwei above the cap maxFeePerGasGwei ${gweiText(c.maxFeePerGas)}`
        : undefined;
  const eth = c.ethUsd ?? 0n;
  const cost = (gas: number) => gasCostUsd(BigInt(gas), c.baseFee, eth);

  // 1. liquidations, lowest health first
  const liq = mine.filter((a) => a.priced && a.liquidatable && !a.rescueAvailable).sort(byHealth);
  for (const a of liq) {
    const key = `liquidate:${a.id}`;
    if (c.busy.has(key)) continue;
    if (stop) {
      waits.push({ key, reason: stop });
      continue;
    }
    const k = cost(c.gas.liquidate);
    if (a.liquidationRewardUsd < k + c.minProfitUsd) {
      waits.push({ key, reason: unprofitable("reward", a.liquidationRewardUsd, k, c) });
      continue;
    }
    actions.push({ kind: "liquidate", ids: [a.id], targets: [{ key, round: a.round }], valueUsd: a.liquidationRewardUsd, costUsd: k, gas: c.gas.liquidate });
  }

  // 1b. collateral sales of accounts a liquidation left owing (largest debt first): own USDC, else the FlashLiquidator
  actions.push(...planSales(debts, c, stop, waits));

  // 2. rescues and 3. rebalances: accounts the engine would rebalance now
  const ready = mine.filter((a) => a.priced && a.rebalance?.needed === true && a.rebalance.status === STATUS.Ready).sort(byHealth);
  const rescues = ready.filter((a) => a.health < WAD);
  const rebalances = ready.filter((a) => a.health >= WAD);
  const worth = (a: AccountSnapshot): bigint | undefined => {
    const key = `rebalance:${a.id}`;
    if (c.busy.has(key)) return undefined;
    if (stop) {
      waits.push({ key, reason: stop });
      return undefined;
    }
    const fee = rebalanceFeeUsd(a.rebalance!.maxFeeUsd, c.feeParams, c.baseFee, eth);
    const k = cost(c.gas.rebalance);
    if (fee < k + c.minProfitUsd) {
      waits.push({ key, reason: unprofitable("fee", fee, k, c) });
      return undefined;
    }
    return fee;
  };
  for (const a of rescues) {
    const fee = worth(a);
    if (fee === undefined) continue;
    actions.push({
      kind: "rescue",
      ids: [a.id],
      targets: [{ key: `rebalance:${a.id}`, round: a.round }],
      valueUsd: fee,
      costUsd: cost(c.gas.rebalance),
      gas: c.gas.rebalance,
    });
  }
  const go: { a: AccountSnapshot; fee: bigint }[] = [];
  for (const a of rebalances) {
    const fee = worth(a);
    if (fee !== undefined) go.push({ a, fee });
  }
  for (let i = 0; i < go.length; i += c.batchSize) {
    const group = go.slice(i, i + c.batchSize);
    const single = group.length === 1;
    const gas = single ? c.gas.rebalance : c.gas.rebalanceBatchBase + c.gas.rebalanceBatchPerAccount * group.length;
    actions.push({
      kind: single ? "rebalance" : "rebalanceBatch",
      ids: group.map((g) => g.a.id),
      targets: group.map((g) => ({ key: `rebalance:${g.a.id}`, round: g.a.round })),
      valueUsd: group.reduce((s, g) => s + g.fee, 0n),
      costUsd: cost(gas),
      gas,
    });
  }

  // 4. orders, oldest first, partitioned by their account
  const mineOrders = orders.filter((o) => inShard(o.accountId, c.shard)).sort((x, y) => (x.id < y.id ? -1 : x.id > y.id ? 1 : 0));
  for (const o of mineOrders) {
    const key = `order:${o.id}`;
    if (c.busy.has(key)) continue;
    if (!o.ready) {
      waits.push({ key, reason: "not ready: no oracle round after the request yet" });
      continue;
    }
    if (stop) {
      waits.push({ key, reason: stop });
      continue;
    }
    const k = cost(c.gas.executeOrder);
    if (o.feeUsd < k + c.minProfitUsd) {
      waits.push({ key, reason: unprofitable("order fee", o.feeUsd, k, c) });
      continue;
    }
    actions.push({ kind: "executeOrder", ids: [o.id], targets: [{ key, round: "0" }], valueUsd: o.feeUsd, costUsd: k, gas: c.gas.executeOrder });
  }
  return { actions, waits };
}

function byHealth(x: AccountSnapshot, y: AccountSnapshot): number {
  if (x.health !== y.health) return x.health < y.health ? -1 : 1;
  return x.id < y.id ? -1 : x.id > y.id ? 1 : 0;
}
