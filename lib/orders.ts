/**
 * Two-step orders (README "Orders"), shared by the bench, the demo, and (next) the keeper and tasks: request an
 * order, execute one, and read what happened from the engine's events.
 */
import type { ContractRunner, TransactionReceipt } from "ethers";
import type { IMarginEngine, MockAggregator } from "../typechain-types";

/** Deadline of an order requested without one: an hour, the heartbeat of the majors' feeds on Ethereum. */
export const DEFAULT_ORDER_LIFETIME = 3_600;

export interface OrderRequest {
  accountId: bigint;
  marketId: bigint;
  /** signed WAD size change */
  sizeDelta: bigint;
  /** WAD; default: any price (a buy accepts up to 2^256 − 1, a sell down to 0) */
  acceptablePrice?: bigint;
  /** unix seconds; default: the latest block's time + DEFAULT_ORDER_LIFETIME */
  deadline?: bigint;
  reduceOnly?: boolean;
}

export type OrderOutcome =
  | { filled: true; price: bigint; roundUpdatedAt: bigint; receipt: TransactionReceipt }
  | { filled: false; reason: string; receipt: TransactionReceipt };

/** Sends `requestOrder` and returns the new order's id (from `OrderRequested`). */
export async function requestOrder(
  engine: IMarginEngine,
  runner: ContractRunner,
  req: OrderRequest,
): Promise<{ orderId: bigint; receipt: TransactionReceipt }> {
  const latest = await engine.runner!.provider!.getBlock("latest");
  const deadline = req.deadline ?? BigInt(latest!.timestamp + DEFAULT_ORDER_LIFETIME);
  const acceptable = req.acceptablePrice ?? (req.sizeDelta > 0n ? 2n ** 256n - 1n : 0n);
  const tx = await (engine.connect(runner) as IMarginEngine).requestOrder(
    req.accountId,
    req.marketId,
    req.sizeDelta,
    acceptable,
    deadline,
    req.reduceOnly ?? false,
  );
  const receipt = (await tx.wait())!;
  const log = receipt.logs
    .map((l) => engine.interface.parseLog(l))
    .find((p) => p?.name === "OrderRequested");
  if (!log) throw new Error(`requestOrder ${tx.hash} emitted no OrderRequested`);
  return { orderId: log.args.orderId as bigint, receipt };
}

/** Sends `executeOrder` and reports the fill (price, round) or the cancellation (the named reason). */
export async function executeOrder(engine: IMarginEngine, runner: ContractRunner, orderId: bigint): Promise<OrderOutcome> {
  const receipt = (await (await (engine.connect(runner) as IMarginEngine).executeOrder(orderId)).wait())!;
  return outcomeOf(engine, receipt);
}

/** The outcome of a mined `executeOrder`: its `OrderExecuted` or `OrderCancelled` (reason decoded to its name). */
export function outcomeOf(engine: IMarginEngine, receipt: TransactionReceipt): OrderOutcome {
  for (const l of receipt.logs) {
    const p = engine.interface.parseLog(l);
    if (p?.name === "OrderExecuted") {
      return { filled: true, price: p.args.price as bigint, roundUpdatedAt: p.args.roundUpdatedAt as bigint, receipt };
    }
    if (p?.name === "OrderCancelled") return { filled: false, reason: reasonName(engine, p.args.reason as string), receipt };
  }
  throw new Error(`transaction ${receipt.hash} settled no order`);
}

/** The name of the engine error whose selector is `selector` (the selector itself when unknown). */
export function reasonName(engine: IMarginEngine, selector: string): string {
  return engine.interface.getError(selector)?.name ?? selector;
}

/**
 * Local networks only (a MockAggregator feed): requests the order, publishes the feed's current answer again as a
 * new round (the first round after the request), and executes the order at it. Throws with the reason when the
 * order was cancelled.
 */
export async function fillAtNextRound(
  engine: IMarginEngine,
  trader: ContractRunner,
  keeper: ContractRunner,
  feed: MockAggregator,
  req: OrderRequest,
): Promise<{ orderId: bigint; price: bigint }> {
  const { orderId } = await requestOrder(engine, trader, req);
  const [, answer] = await feed.latestRoundData();
  await (await feed.setAnswer(answer)).wait();
  const out = await executeOrder(engine, keeper, orderId);
  if (!out.filled) throw new Error(`order ${orderId} was cancelled: ${out.reason}`);
  return { orderId, price: out.price };
}
