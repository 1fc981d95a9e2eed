/** lp:deposit and lp:redeem: the LiquidityPool (ERC-4626 of USDC; minted shares are locked for its hold period). */

import { ballastTask, need, action, amount, connect, eventsOf, fail, parse, say, send, when, type Asset, type Ctx } from "../lib/tasks";
import { formatUnits, parsePositive } from "../lib/units";

async function pieces(ctx: Ctx): Promise<{ usdc: Asset; shareDecimals: number }> {
  const usdc = [...ctx.assets.values()].find((a) => a.address.toLowerCase() === ctx.rec.settlementAsset.toLowerCase());
  if (!usdc) fail(`the settlement asset ${ctx.rec.settlementAsset} is not among the deployment's assets: restore the record`);
  return { usdc, shareDecimals: ctx.shareDecimals };
}

ballastTask("lp:deposit", "Deposits USDC into the liquidity pool for shares (locked for the pool's hold period)")
  .addOptionalParam("amount", 'USDC, e.g. "1000" (required)')
  .addOptionalParam("from", "signer index or address", "0")
  .setAction(
    action(async (args: { amount: string; from: string }, hre) => {
      const ctx = await connect(hre, args.from);
      const { usdc, shareDecimals } = await pieces(ctx);
      const value = parse(() => parsePositive(need(args.amount, "--amount", "1000"), usdc.decimals, "--amount"));
      const held = await ctx.b.usdc.balanceOf(ctx.from);
      if (held < value) fail(`${ctx.from} holds ${amount(held, usdc)}, ${amount(value, usdc)} needed: fund the wallet first`);
      // The pool pulls the tokens into the engine, which holds them: the allowance is the pool's.
      if ((await ctx.b.usdc.allowance(ctx.from, ctx.rec.pool)) < value) await send(ctx, () => ctx.b.usdc.approve(ctx.rec.pool, value));
      const receipt = await send(ctx, () => ctx.b.pool.deposit(value, ctx.from));
      const [ev] = eventsOf(ctx.b.pool.interface, receipt, "Deposit");
      const shares = ev.shares as bigint;
      const [, unlockAt] = await ctx.b.pool.lockedShares(ctx.from);
      say(`deposited ${amount(value, usdc)} into the pool for ${formatUnits(shares, shareDecimals)} shares, locked until ${when(unlockAt)}`);
      return { shares, unlockAt };
    }),
  );

ballastTask("lp:redeem", "Redeems liquidity-pool shares for USDC (after their hold period)")
  .addOptionalParam("shares", 'shares to redeem, e.g. "1000" (the pool\'s share units)')
  .addFlag("all", "redeem every share the signer holds")
  .addOptionalParam("from", "signer index or address", "0")
  .setAction(
    action(async (args: { shares?: string; all: boolean; from: string }, hre) => {
      const ctx = await connect(hre, args.from);
      const { usdc, shareDecimals } = await pieces(ctx);
      if (args.all === (args.shares !== undefined)) fail("give either --shares <amount> or --all");
      const held = await ctx.b.pool.balanceOf(ctx.from);
      const shares = args.all ? held : parse(() => parsePositive(args.shares!, shareDecimals, "--shares"));
      if (shares === 0n) fail(`${ctx.from} holds no pool shares: nothing to redeem`);
      if (held < shares) fail(`${ctx.from} holds ${formatUnits(held, shareDecimals)} shares, ${formatUnits(shares, shareDecimals)} asked: redeem at most what it holds`);
      const receipt = await send(ctx, () => ctx.b.pool.redeem(shares, ctx.from, ctx.from));
      const [ev] = eventsOf(ctx.b.pool.interface, receipt, "Withdraw");
      const assets = ev.assets as bigint;
      say(`redeemed ${formatUnits(shares, shareDecimals)} shares for ${amount(assets, usdc)}`);
      return { shares, assets };
    }),
  );
