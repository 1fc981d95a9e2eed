/** rebalance and liquidate: the permissionless keeper actions, one account (or a list) at a time from the command line. */

import { ballastTask, need, STATUS, accountOf, action, actionNames, connect, eventsOf, fail, ratio, say, send, usd, type Ctx } from "../lib/tasks";
import { formatUnits } from "../lib/units";

export interface RebalanceOutcome {
  accountId: bigint;
  rebalanced: boolean;
  /** the applied action's names, or the reason it was skipped */
  detail: string;
}

function describeRebalanced(ev: { [k: string]: unknown }): string {
  const e = ev as unknown as {
    accountId: bigint; action: bigint; healthBefore: bigint; healthAfter: bigint; toppedUpUsd: bigint;
    reducedNotionalUsd: bigint; releasedUsd: bigint; feeUsd: bigint; keeper: string;
  };
  return (
    `account ${e.accountId} rebalanced: ${actionNames(e.action)}, health ${ratio(e.healthBefore)} → ${ratio(e.healthAfter)}, ` +
    `topped up ${usd(e.toppedUpUsd)} USD, reduced ${usd(e.reducedNotionalUsd)} USD of notional, released ${usd(e.releasedUsd)} USD, ` +
    `keeper fee ${usd(e.feeUsd)} USD to ${e.keeper}`
  );
}

ballastTask("rebalance", "Rebalances one account (or several with rebalanceBatch) under its policy; the signer earns the fee")
  .addOptionalParam("accounts", 'account id, or a comma-separated list, e.g. "1" or "1,2,5" (required)')
  .addOptionalParam("from", "signer index or address (the keeper)", "0")
  .setAction(
    action(async (args: { accounts: string; from: string }, hre): Promise<RebalanceOutcome[]> => {
      const ctx = await connect(hre, args.from);
      const parts = need(args.accounts, "--accounts", "1,2").split(",").map((s) => s.trim());
      const ids: bigint[] = [];
      for (const p of parts) ids.push(await accountOf(ctx, p, "--accounts"));
      if (new Set(ids.map(String)).size !== ids.length) fail("--accounts lists an account twice: list each once");
      const rb = ctx.b.rebalancer;
      if (ids.length === 1) {
        const receipt = await send(ctx, () => rb.rebalance(ids[0]));
        const [ev] = eventsOf(rb.interface, receipt, "Rebalanced");
        const line = describeRebalanced(ev.toObject());
        say(line);
        return [{ accountId: ids[0], rebalanced: true, detail: actionNames(ev.action) }];
      }
      const receipt = await send(ctx, () => rb.rebalanceBatch(ids));
      const out: RebalanceOutcome[] = [];
      const done = new Map(eventsOf(rb.interface, receipt, "Rebalanced").map((e) => [String(e.accountId), e]));
      const skipped = new Map(eventsOf(rb.interface, receipt, "RebalanceSkipped").map((e) => [String(e.accountId), e]));
      for (const id of ids) {
        const d = done.get(String(id));
        if (d) {
          say(describeRebalanced(d.toObject()));
          out.push({ accountId: id, rebalanced: true, detail: actionNames(d.action) });
        } else {
          const s = skipped.get(String(id));
          const reason = s ? (STATUS[Number(s.reason)] ?? String(s.reason)) : "not rebalanced";
          say(`account ${id} skipped: ${reason}`);
          out.push({ accountId: id, rebalanced: false, detail: reason });
        }
      }
      return out;
    }),
  );

ballastTask("liquidate", "Liquidates an account below health 1; the signer is credited the reward (claimKeeperRewards)")
  .addOptionalParam("account", "account id (required)")
  .addOptionalParam("from", "signer index or address (the liquidator)", "0")
  .setAction(
    action(async (args: { account: string; from: string }, hre) => {
      const ctx: Ctx = await connect(hre, args.from);
      const id = await accountOf(ctx, args.account);
      const receipt = await send(ctx, () => ctx.b.engine.liquidate(id));
      const [ev] = eventsOf(ctx.b.engine.interface, receipt, "Liquidated");
      say(
        `account ${id} liquidated: closed ${formatUnits(ev.fraction * 100n, 18)} % (${usd(ev.closedNotional)} USD of notional), ` +
          `penalty ${usd(ev.penalty)} USD, liquidator credited ${usd(ev.keeperPaid)} USD, health ${ratio(ev.healthBefore)} → ${ratio(ev.healthAfter)}`,
      );
      return { fraction: ev.fraction as bigint, closedNotional: ev.closedNotional as bigint, keeperPaid: ev.keeperPaid as bigint };
    }),
  );
