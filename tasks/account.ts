/** account:create and account:status. */

import {
  ballastTask,
  STATUS,
  accountOf,
  action,
  actionNames,
  amount,
  call,
  connect,
  eventsOf,
  fail,
  ratio,
  say,
  send,
  symbolOf,
  table,
  usd,
  when,
} from "../lib/tasks";
import { formatUnits } from "../lib/units";

ballastTask("account:create", "Creates a margin account owned by the signer and prints its id")
  .addOptionalParam("from", "signer index or address", "0")
  .setAction(
    action(async (args: { from: string }, hre) => {
      const ctx = await connect(hre, args.from);
      const receipt = await send(ctx, () => ctx.b.vault.createAccount());
      const [ev] = eventsOf(ctx.b.vault.interface, receipt, "AccountCreated");
      if (!ev) fail(`createAccount ${receipt.hash} emitted no AccountCreated: check the deployment record`);
      const id = ev.accountId as bigint;
      say(`account ${id} created, owned by ${ctx.from}`);
      return id;
    }),
  );

export interface AccountStatus {
  id: bigint;
  owner: string;
  equity: bigint;
  maintenanceMargin: bigint;
  initialMargin: bigint;
  health: bigint;
  positions: { market: string; size: bigint; entryPrice: bigint }[];
  balances: { asset: string; reserve: bigint; margin: bigint }[];
  policyActions: number;
  pendingOrders: bigint[];
  rebalance: { needed: boolean; status: string; action: number };
}

ballastTask("account:status", "Shows an account: equity, MM, IM, health, positions, balances, policy, orders, next rebalance")
  .addOptionalParam("account", "account id (required)")
  .setAction(
    action(async (args: { account: string }, hre): Promise<AccountStatus> => {
      const ctx = await connect(hre);
      const id = await accountOf(ctx, args.account);
      const { engine, vault, rebalancer, oracle } = ctx.b;
      const owner = await vault.ownerOf(id);
      const st = await call(ctx, () => engine.accountState(id));
      const lines: string[] = [`account ${id} (owner ${owner})`];
      lines.push(
        table([
          ["equity", "collateral", "settlement", "unrealised PnL", "notional", "MM", "IM", "health"],
          [usd(st.equity), usd(st.collateral), usd(st.settlement), usd(st.unrealisedPnl), usd(st.notional),
            usd(st.maintenanceMargin), usd(st.initialMargin), ratio(st.health)],
        ]),
      );

      const positions: AccountStatus["positions"] = [];
      const posRows = [["market", "side", "size", "entry", "mark"]];
      for (const m of ctx.markets.values()) {
        const p = await engine.position(id, m.id);
        if (p.size === 0n) continue;
        positions.push({ market: m.symbol, size: p.size, entryPrice: p.entryPrice });
        const [ok, mark] = await oracle.tryPrice(m.asset.address);
        const abs = p.size < 0n ? -p.size : p.size;
        posRows.push([m.symbol, p.size > 0n ? "long" : "short", formatUnits(abs, 18), usd(p.entryPrice), ok ? usd(mark) : "no price"]);
      }
      lines.push("positions:" + (positions.length ? "\n" + indent(table(posRows)) : " none"));

      const balances: AccountStatus["balances"] = [];
      const balRows = [["asset", "reserve", "margin"]];
      for (const a of ctx.assets.values()) {
        const [reserve, margin] = [await vault.reserveOf(id, a.address), await vault.marginOf(id, a.address)];
        balances.push({ asset: a.symbol, reserve, margin });
        balRows.push([a.symbol, formatUnits(reserve, a.decimals), formatUnits(margin, a.decimals)]);
      }
      lines.push("collateral:\n" + indent(table(balRows)));

      const pol = await engine.rebalancePolicy(id);
      lines.push(
        pol.actions === 0n
          ? "policy: none (policy:set opts in)"
          : `policy: ${actionNames(pol.actions)}, trigger ${ratio(pol.triggerRatio)}, target ${ratio(pol.targetRatio)}, ` +
              `release ${pol.releaseRatio === 0n ? "off" : ratio(pol.releaseRatio)}, max fee ${usd(pol.maxFeeUsd)} USD, ` +
              `cooldown ${pol.cooldown} s, assets ${pol.topUpAssets.map((a) => symbolOf(ctx, a)).join(",") || "none"}`,
      );

      const pending = [...(await engine.pendingOrders(id))].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0));
      if (pending.length === 0) lines.push("pending orders: none");
      else {
        const rows = [["order", "market", "size", "acceptable", "fills after round", "deadline", "reduce-only"]];
        for (const oid of pending) {
          const o = await engine.order(oid);
          const m = [...ctx.markets.values()].find((x) => BigInt(x.id) === o.marketId);
          rows.push([String(oid), m?.symbol ?? String(o.marketId), formatUnits(o.sizeDelta, 18), acceptable(o.acceptablePrice),
            String(o.afterRound), when(o.deadline), o.reduceOnly ? "yes" : "no"]);
        }
        lines.push("pending orders:\n" + indent(table(rows)));
      }

      const [needed, status, plan] = await call(ctx, () => rebalancer.needsRebalance(id));
      const statusName = STATUS[Number(status)] ?? String(status);
      if (!needed) lines.push(`rebalance now: no (${statusName})`);
      else {
        const moves = plan.assets.map((t, i) => {
          const a = [...ctx.assets.values()].find((x) => x.address.toLowerCase() === t.toLowerCase());
          return a ? amount(plan.amounts[i], a) : `${plan.amounts[i]} of ${t}`;
        });
        lines.push(
          `rebalance now: ${actionNames(plan.action)}` +
            (moves.length ? ` ${moves.join(" + ")}` : "") +
            (plan.reduceFraction > 0n ? `, reduce ${formatUnits(plan.reduceFraction * 100n, 18)} % of every position` : "") +
            `, keeper fee ${usd(plan.feeUsd)} USD`,
        );
      }
      say(lines.join("\n"));
      return {
        id, owner, equity: st.equity, maintenanceMargin: st.maintenanceMargin, initialMargin: st.initialMargin, health: st.health,
        positions, balances, policyActions: Number(pol.actions), pendingOrders: pending,
        rebalance: { needed, status: statusName, action: Number(plan.action) },
      };
    }),
  );

const indent = (s: string) => s.split("\n").map((l) => "  " + l).join("\n");
const acceptable = (p: bigint) => (p >= (1n << 128n) - 1n ? "any" : p === 0n ? "any" : usd(p));
