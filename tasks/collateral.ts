/** collateral:deposit, collateral:withdraw, collateral:post, collateral:release: an account's reserve and margin. */

import { ballastTask, need, accountOf, action, amount, assetOf, connect, fail, parse, say, send, type Asset, type Ctx } from "../lib/tasks";
import { parsePositive } from "../lib/units";

interface Args {
  account: string;
  asset: string;
  amount: string;
  from: string;
}

/** The account, asset and amount a collateral task names, checked. */
async function named(hre: Parameters<typeof connect>[0], args: Args): Promise<{ ctx: Ctx; id: bigint; a: Asset; value: bigint }> {
  const ctx = await connect(hre, args.from);
  const id = await accountOf(ctx, args.account);
  const a = assetOf(ctx, args.asset);
  const value = parse(() => parsePositive(need(args.amount, "--amount", "250"), a.decimals, "--amount"));
  return { ctx, id, a, value };
}

const balances = async (ctx: Ctx, id: bigint, a: Asset) =>
  `reserve ${amount(await ctx.b.vault.reserveOf(id, a.address), a)}, margin ${amount(await ctx.b.vault.marginOf(id, a.address), a)}`;

ballastTask("collateral:deposit", "Deposits tokens from the signer's wallet into an account's reserve (or straight into margin)")
  .addOptionalParam("account", "account id (required)")
  .addOptionalParam("asset", "listed asset symbol (USDC, WETH, WBTC) or address (required)")
  .addOptionalParam("amount", 'amount in the token\'s units, e.g. "250" or "1.5" (required)')
  .addFlag("margin", "deposit straight into margin (depositMargin) instead of the reserve")
  .addOptionalParam("from", "signer index or address", "0")
  .setAction(
    action(async (args: Args & { margin: boolean }, hre) => {
      const { ctx, id, a, value } = await named(hre, args);
      const { tokenOf } = await import("../lib/connect");
      const token = tokenOf(ctx.b, a.address, ctx.signer);
      const held = await token.balanceOf(ctx.from);
      if (held < value) fail(`${ctx.from} holds ${amount(held, a)}, ${amount(value, a)} needed: fund the wallet first`);
      if ((await token.allowance(ctx.from, ctx.rec.engine)) < value) {
        await send(ctx, () => token.approve(ctx.rec.engine, value));
      }
      await send(ctx, () => (args.margin ? ctx.b.vault.depositMargin(id, a.address, value) : ctx.b.vault.deposit(id, a.address, value)));
      say(`deposited ${amount(value, a)} into account ${id}'s ${args.margin ? "margin" : "reserve"}: ${await balances(ctx, id, a)}`);
    }),
  );

ballastTask("collateral:withdraw", "Withdraws tokens from an account's reserve to a wallet (owner or operator)")
  .addOptionalParam("account", "account id (required)")
  .addOptionalParam("asset", "listed asset symbol or address (required)")
  .addOptionalParam("amount", "amount in the token's units (required)")
  .addOptionalParam("to", "recipient address (default: the signer)")
  .addOptionalParam("from", "signer index or address", "0")
  .setAction(
    action(async (args: Args & { to?: string }, hre) => {
      const { ctx, id, a, value } = await named(hre, args);
      const to = args.to ?? ctx.from;
      if (!hre.ethers.isAddress(to)) fail(`--to "${to}" is not an address`);
      await send(ctx, () => ctx.b.vault.withdraw(id, a.address, value, to));
      say(`withdrew ${amount(value, a)} from account ${id}'s reserve to ${to}: ${await balances(ctx, id, a)}`);
    }),
  );

// Reserve ↔ margin moves of an account's own collateral: one definition, two tasks.
for (const [name, description, toMargin] of [
  ["collateral:post", "Moves collateral from an account's reserve to its margin", true],
  ["collateral:release", "Moves collateral from an account's margin back to its reserve (the account must keep IM)", false],
] as const) {
  ballastTask(name, description)
    .addOptionalParam("account", "account id (required)")
    .addOptionalParam("asset", "listed asset symbol or address (required)")
    .addOptionalParam("amount", "amount in the token's units (required)")
    .addOptionalParam("from", "signer index or address", "0")
    .setAction(
      action(async (args: Args, hre) => {
        const { ctx, id, a, value } = await named(hre, args);
        await send(ctx, () => (toMargin ? ctx.b.vault.postMargin(id, a.address, value) : ctx.b.vault.releaseMargin(id, a.address, value)));
        const moved = toMargin ? `posted ${amount(value, a)} of account ${id}'s reserve as margin` : `released ${amount(value, a)} of account ${id}'s margin to its reserve`;
        say(`${moved}: ${await balances(ctx, id, a)}`);
      }),
    );
}
