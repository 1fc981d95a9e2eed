/**
 * position:open, position:close and order:execute: two-step orders (README "Orders"). A request is recorded now and
 * filled by a keeper at the first oracle round published after it; `--wait` (local networks) watches for that.
 */
import type { HardhatRuntimeEnvironment } from "hardhat/types";

import { executeOrder, requestOrder } from "../lib/orders";
import {
  ballastTask,
  accountOf,
  action,
  call,
  connect,
  fail,
  marketOf,
  need,
  parse,
  requireLocal,
  say,
  usd,
  when,
  type Ctx,
  type Market,
} from "../lib/tasks";
import { formatUnits, parseInteger, parsePositive } from "../lib/units";

const BPS = 10_000n;
const MAX_LIFETIME = 86_400n;

interface OrderArgs {
  account: string;
  market: string;
  slippageBps?: string;
  acceptablePrice?: string;
  deadlineSeconds: string;
  wait: boolean;
  timeout: string;
  from: string;
}

export interface RequestedOrder {
  orderId: bigint;
  sizeDelta: bigint;
  acceptablePrice: bigint;
  deadline: bigint;
  /** with --wait: how the order ended */
  outcome?: { filled: true; price: bigint } | { filled: false; reason: string };
}

/** The acceptable price of an order: --acceptable-price, or the oracle price moved by --slippage-bps against the trader. */
async function acceptablePriceOf(ctx: Ctx, m: Market, buy: boolean, args: OrderArgs): Promise<bigint> {
  if (args.acceptablePrice !== undefined && args.slippageBps !== undefined) {
    fail("give --slippage-bps or --acceptable-price, not both");
  }
  if (args.acceptablePrice !== undefined) return parse(() => parsePositive(args.acceptablePrice!, 18, "--acceptable-price"));
  const bps = parse(() => parseInteger(args.slippageBps ?? "50", "--slippage-bps", BPS));
  const price = await call(ctx, () => ctx.b.oracle.price(m.asset.address));
  return buy ? (price * (BPS + bps) + BPS - 1n) / BPS : (price * (BPS - bps)) / BPS;
}

/** Requests the order, prints it, and with --wait follows it to its fill or cancellation. */
async function request(
  hre: HardhatRuntimeEnvironment,
  ctx: Ctx,
  id: bigint,
  m: Market,
  sizeDelta: bigint,
  reduceOnly: boolean,
  args: OrderArgs,
): Promise<RequestedOrder> {
  const lifetime = parse(() => parseInteger(args.deadlineSeconds, "--deadline-seconds", MAX_LIFETIME));
  if (lifetime === 0n) fail("--deadline-seconds 0: give 1 to 86400 seconds");
  const timeout = parse(() => parseInteger(args.timeout, "--timeout"));
  const acceptablePrice = await acceptablePriceOf(ctx, m, sizeDelta > 0n, args);
  const latest = await hre.ethers.provider.getBlock("latest");
  const deadline = BigInt(latest!.timestamp) + lifetime;
  const { orderId, receipt } = await call(ctx, () =>
    requestOrder(ctx.b.engine, ctx.signer, { accountId: id, marketId: BigInt(m.id), sizeDelta, acceptablePrice, deadline, reduceOnly }),
  );
  const fee = await ctx.b.engine.orderFee();
  const usdc = [...ctx.assets.values()].find((a) => a.address.toLowerCase() === ctx.rec.settlementAsset.toLowerCase())!;
  const abs = sizeDelta < 0n ? -sizeDelta : sizeDelta;
  say(
    `order ${orderId} requested: account ${id} ${sizeDelta > 0n ? "buys" : "sells"} ${formatUnits(abs, 18)} ${m.symbol}` +
      `${reduceOnly ? " (reduce-only)" : ""}, price ${sizeDelta > 0n ? "at most" : "at least"} ${acceptableText(acceptablePrice)}, ` +
      `deadline ${when(deadline)}, fee ${formatUnits(fee, usdc.decimals)} ${usdc.symbol} escrowed. ` +
      `A keeper fills it at the next ${m.asset.symbol} oracle round (order:execute --id ${orderId}).`,
  );
  const out: RequestedOrder = { orderId, sizeDelta, acceptablePrice, deadline };
  if (args.wait) out.outcome = await waitFor(ctx, orderId, receipt.blockNumber, Number(timeout));
  return out;
}

/** Polls the engine's events for the order's OrderExecuted / OrderCancelled, up to `timeout` seconds; pushes nothing. */
async function waitFor(ctx: Ctx, orderId: bigint, fromBlock: number, timeout: number): Promise<NonNullable<RequestedOrder["outcome"]>> {
  const { engine } = ctx.b;
  const { reasonName } = await import("../lib/orders");
  const end = Date.now() + timeout * 1000;
  say(`waiting up to ${timeout} s for order ${orderId} to be settled…`);
  for (;;) {
    const filled = await engine.queryFilter(engine.filters.OrderExecuted(orderId), fromBlock);
    if (filled.length) {
      const price = filled[0].args.price;
      say(`order ${orderId} filled at ${usd(price)} (round of ${when(filled[0].args.roundUpdatedAt)})`);
      return { filled: true, price };
    }
    const cancelled = await engine.queryFilter(engine.filters.OrderCancelled(orderId), fromBlock);
    if (cancelled.length) {
      const reason = reasonName(engine, cancelled[0].args.reason);
      say(`order ${orderId} cancelled: ${reason}`);
      return { filled: false, reason };
    }
    if (Date.now() >= end) {
      fail(`order ${orderId} is still pending after ${timeout} s: a keeper fills it at the next oracle round (order:execute --id ${orderId})`);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
}

const acceptableText = (p: bigint) => (p === 0n ? "any" : usd(p));

const withOrderParams = (t: ReturnType<typeof ballastTask>) =>
  t
    .addOptionalParam("slippageBps", "acceptable price = oracle price ± this many basis points against you (default 50)")
    .addOptionalParam("acceptablePrice", 'worst fill price in USD, e.g. "2100" (instead of --slippage-bps)')
    .addOptionalParam("deadlineSeconds", "seconds the order may wait for its round (1 … 86400)", "3600")
    .addFlag("wait", "local networks only: wait for a keeper to fill or cancel the order (pushes nothing)")
    .addOptionalParam("timeout", "seconds --wait waits", "60")
    .addOptionalParam("from", "signer index or address (the account's owner or an operator)", "0");

withOrderParams(
  ballastTask("position:open", "Requests an order that opens, increases or reduces a position (filled by a keeper at the next round)")
    .addOptionalParam("account", "account id (required)")
    .addOptionalParam("market", "market symbol (ETH, BTC) (required)")
    .addOptionalParam("size", 'size in units of the market\'s asset, e.g. "1.5" (required)')
    .addOptionalParam("side", "long or short", "long"),
).setAction(
  action(async (args: OrderArgs & { size: string; side: string }, hre) => {
    if (args.wait) await requireLocal(hre, "--wait");
    const ctx = await connect(hre, args.from);
    const id = await accountOf(ctx, args.account);
    const m = marketOf(ctx, args.market);
    const side = args.side.toLowerCase();
    if (side !== "long" && side !== "short") fail(`--side "${args.side}": use long or short`);
    const size = parse(() => parsePositive(need(args.size, "--size", "1.5"), 18, "--size"));
    return request(hre, ctx, id, m, side === "long" ? size : -size, false, args);
  }),
);

withOrderParams(
  ballastTask("position:close", "Requests a reduce-only order that closes the whole position in a market")
    .addOptionalParam("account", "account id (required)")
    .addOptionalParam("market", "market symbol (ETH, BTC) (required)"),
).setAction(
  action(async (args: OrderArgs, hre) => {
    if (args.wait) await requireLocal(hre, "--wait");
    const ctx = await connect(hre, args.from);
    const id = await accountOf(ctx, args.account);
    const m = marketOf(ctx, args.market);
    const p = await ctx.b.engine.position(id, m.id);
    if (p.size === 0n) fail(`account ${id} has no ${m.symbol} position: nothing to close`);
    return request(hre, ctx, id, m, -p.size, true, args);
  }),
);

ballastTask("order:execute", "Executes a pending order (anyone): fills it at the first round after its request, or cancels it")
  .addOptionalParam("id", "order id (required)")
  .addOptionalParam("from", "signer index or address (credited the order's fee)", "0")
  .setAction(
    action(async (args: { id: string; from: string }, hre) => {
      const ctx = await connect(hre, args.from);
      const orderId = parse(() => parseInteger(need(args.id, "--id", "3"), "--id"));
      const out = await call(ctx, () => executeOrder(ctx.b.engine, ctx.signer, orderId));
      if (out.filled) say(`order ${orderId} filled at ${usd(out.price)} (round of ${when(out.roundUpdatedAt)})`);
      else say(`order ${orderId} cancelled: ${out.reason}`);
      return out.filled ? { filled: true, price: out.price } : { filled: false, reason: out.reason };
    }),
  );
