/** policy:set and policy:show: an account's rebalancing policy (README "Rebalancing", "Configuration reference"). */

import { ACTION_NAMES } from "../deploy/params";
import { ballastTask, accountOf, action, actionNames, assetOf, connect, fail, parse, ratio, say, send, symbolOf, usd, type Ctx } from "../lib/tasks";
import { parseInteger, parseWad } from "../lib/units";

/** "top-up,reduce" → 3; "none" → 0. */
export function parseActions(text: string): number {
  if (text.trim().toLowerCase() === "none") return 0;
  let bits = 0;
  for (const raw of text.split(",")) {
    const name = raw.trim().toLowerCase().replace("_", "-");
    const bit = (ACTION_NAMES as Record<string, number>)[name];
    if (bit === undefined) fail(`--actions: unknown action "${raw.trim()}", use top-up, reduce, release, reduce-first (comma-separated) or none`);
    bits |= bit;
  }
  return bits;
}

async function show(ctx: Ctx, id: bigint): Promise<string> {
  const p = await ctx.b.engine.rebalancePolicy(id);
  if (p.actions === 0n) return `account ${id}: no rebalancing policy (policy:set opts in)`;
  return (
    `account ${id}: ${actionNames(p.actions)}, trigger ${ratio(p.triggerRatio)}, target ${ratio(p.targetRatio)}, ` +
    `release ${p.releaseRatio === 0n ? "off" : ratio(p.releaseRatio)}, max fee ${usd(p.maxFeeUsd)} USD, cooldown ${p.cooldown} s, ` +
    `assets ${p.topUpAssets.map((a) => symbolOf(ctx, a)).join(",") || "none"}`
  );
}

interface SetArgs {
  account: string;
  actions: string;
  trigger?: string;
  target?: string;
  release: string;
  assets: string;
  maxFee: string;
  cooldown: string;
  from: string;
}

ballastTask("policy:set", "Sets an account's rebalancing policy (--actions none opts out)")
  .addOptionalParam("account", "account id (required)")
  .addOptionalParam("actions", "comma-separated: top-up, reduce, release, reduce-first (reduce before topping up, with reduce); or none", "top-up,reduce")
  .addOptionalParam("trigger", 'health below which a rebalance acts, e.g. "1.6" (> 1)')
  .addOptionalParam("target", 'health a rebalance restores, e.g. "2" (≥ trigger + 0.05, ≤ 10)')
  .addOptionalParam("release", 'health above which excess margin is released, e.g. "3"; 0 = off', "0")
  .addOptionalParam("assets", "reserve assets for top-ups and releases, in order, e.g. USDC,WETH", "USDC")
  .addOptionalParam("maxFee", "most a keeper is paid per rebalance, USD", "50")
  .addOptionalParam("cooldown", "seconds between two rebalances", "0")
  .addOptionalParam("from", "signer index or address (the account's owner or an operator)", "0")
  .setAction(
    action(async (args: SetArgs, hre) => {
      const ctx = await connect(hre, args.from);
      const id = await accountOf(ctx, args.account);
      const actions = parseActions(args.actions);
      let policy;
      if (actions === 0) {
        policy = { actions: 0, cooldown: 0, triggerRatio: 0n, targetRatio: 0n, releaseRatio: 0n, maxFeeUsd: 0n, topUpAssets: [] as string[] };
      } else {
        if (args.trigger === undefined) fail('--trigger is required, e.g. --trigger 1.6');
        if (args.target === undefined) fail('--target is required, e.g. --target 2');
        const assets = args.assets.split(",").map((s) => s.trim()).filter(Boolean).map((s) => assetOf(ctx, s, "--assets").address);
        policy = {
          actions,
          cooldown: Number(parse(() => parseInteger(args.cooldown, "--cooldown", 2n ** 32n - 1n))),
          triggerRatio: parse(() => parseWad(args.trigger!, { what: "--trigger" })),
          targetRatio: parse(() => parseWad(args.target!, { what: "--target" })),
          releaseRatio: parse(() => parseWad(args.release, { what: "--release" })),
          maxFeeUsd: parse(() => parseWad(args.maxFee, { what: "--max-fee" })),
          topUpAssets: assets,
        };
      }
      await send(ctx, () => ctx.b.engine.setRebalancePolicy(id, policy));
      say(`policy set. ${await show(ctx, id)}`);
    }),
  );

ballastTask("policy:show", "Shows an account's rebalancing policy")
  .addOptionalParam("account", "account id (required)")
  .setAction(
    action(async (args: { account: string }, hre) => {
      const ctx = await connect(hre);
      const id = await accountOf(ctx, args.account);
      const line = await show(ctx, id);
      say(line);
      return line;
    }),
  );
