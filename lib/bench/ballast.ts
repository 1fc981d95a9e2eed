/**
 * Ballast's side of the gas benchmark: every measured action through the real contracts, deployed by the
 * project's own deploy code (deploy/system.ts `deployLocalSystem`) with its own parameters (deploy/params.ts).
 *
 * Each scenario starts from one snapshot of the world (`ballastWorld`, via loadFixture) and measures its action
 * twice: first touch (a new account and a keeper that has never done it), then steady state (the same account and
 * keeper again, later). Before each measured transaction a new round is pushed to the ETH feed and left unpoked,
 * so the transaction's own oracle read records a fresh observation; `expectFreshObservation` checks that it did,
 * and that no volatility sample (a grid-boundary crossing, which reads the feed's history) was taken.
 *
 * To adapt after a redesign: `openAccount` (how an account with margin, reserve, policy and position is made),
 * the `send` closures of each scenario (what the action is called), and the `accept` predicates of
 * `moveEthUntil` (when an account is ready for the action).
 */
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import type { TransactionReceipt } from "ethers";

import { deployLocalSystem, type LocalSystem } from "../../deploy/system";
import { ACTION, NARROW_POLICY, wad } from "../../deploy/params";
import { expectReverted, measure, measureRevert, mineTogether, revertData, txGasLimit, type Mined, type Send } from "./measure";
import { ROW, type Figure, type Row } from "./results";
import { fillAtNextRound, outcomeOf } from "../orders";

const USDC = (n: number | bigint): bigint => BigInt(n) * 10n ** 6n;
const E18 = (n: number | bigint): bigint => BigInt(n) * 10n ** 18n;
const WAD = 10n ** 18n;
/** Feed answers have 8 decimals; prices move on a one-cent grid. */
const FEED_UNIT = 10n ** 8n;
const CENT = 10n ** 6n;
/** Largest move between two pokes while searching for a price (the breaker trips at 25 %). */
const LEG_BPS = 1500n;

export interface BallastWorld extends LocalSystem {
  deployer: HardhatEthersSigner;
  /** owns every measured account */
  owner: HardhatEthersSigner;
  /** keepers / liquidators; `keepers[i]` has done nothing when a scenario starts */
  keepers: HardhatEthersSigner[];
  /** the volatility-grid interval (index) of the world's feeds: no measured transaction may leave it */
  volInterval: number;
  volIntervalSeconds: number;
}

/**
 * The world every scenario starts from: the local system at the first second of a volatility-grid interval, an
 * LP with 1,000,000 USDC in the pool, and open interest on both sides of the ETH market (a 1 ETH long and a
 * 1 ETH short of another trader, 10,000 USDC margin each), so no measured trade is the market's first.
 */
export async function ballastWorld(): Promise<BallastWorld> {
  const [deployer, lp, owner, trader, ...keepers] = await ethers.getSigners();
  const volIntervalSeconds = 3_600; // Constants.DEFAULT_VOL_INTERVAL; checked against the router below
  const start = (Math.floor((await time.latest()) / volIntervalSeconds) + 1) * volIntervalSeconds + 1;
  await time.setNextBlockTimestamp(start);
  const sys = await deployLocalSystem(deployer);
  const interval = Number((await sys.oracle.volParams(sys.weth)).interval);
  if (interval !== volIntervalSeconds) throw new Error(`the oracle's volatility interval is ${interval} s, the bench assumes ${volIntervalSeconds}`);

  await (await sys.usdc.mint(lp.address, USDC(1_000_000))).wait();
  await (await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000))).wait();
  await (await sys.pool.connect(lp).deposit(USDC(1_000_000), lp.address)).wait();
  for (const who of [owner, trader]) {
    await (await sys.usdc.mint(who.address, USDC(100_000_000))).wait();
    await (await sys.usdc.connect(who).approve(sys.vault, ethers.MaxUint256)).wait();
  }
  const w: BallastWorld = { ...sys, deployer, owner, keepers, volInterval: Math.floor(start / volIntervalSeconds), volIntervalSeconds };
  await openAccount(w, { who: trader, margin: USDC(10_000), size: E18(1) });
  await openAccount(w, { who: trader, margin: USDC(10_000), size: -E18(1) });
  return w;
}

export interface AccountSpec {
  who?: HardhatEthersSigner;
  margin: bigint;
  reserve?: bigint;
  /** ETH position, signed WAD; 0 = none */
  size?: bigint;
  /** a rebalancing policy (NARROW_POLICY's band unless overridden) */
  policy?: { actions: number; releaseRatio?: bigint; topUpAssets?: "usdc" | "none" };
}

/** A new account of `spec.who` (the world's owner): USDC margin and reserve, a policy, an ETH position. */
export async function openAccount(w: BallastWorld, spec: AccountSpec): Promise<bigint> {
  const who = spec.who ?? w.owner;
  await (await w.vault.connect(who).createAccount()).wait();
  const id = await w.vault.accountCount();
  if (spec.margin > 0n) await (await w.vault.connect(who).depositMargin(id, w.usdc, spec.margin)).wait();
  if ((spec.reserve ?? 0n) > 0n) await (await w.vault.connect(who).deposit(id, w.usdc, spec.reserve!)).wait();
  if (spec.policy) {
    await (
      await w.engine.connect(who).setRebalancePolicy(id, {
        ...NARROW_POLICY,
        actions: spec.policy.actions,
        releaseRatio: spec.policy.releaseRatio ?? 0n,
        topUpAssets: spec.policy.topUpAssets === "none" ? [] : [await w.usdc.getAddress()],
      })
    ).wait();
  }
  if ((spec.size ?? 0n) !== 0n) {
    // A two-step order filled at a new round of the current answer (the deployer executes it); its execution fee
    // comes from the USDC reserve, deposited for it here.
    const fee = await w.engine.orderFee();
    if (fee > 0n) await (await w.vault.connect(who).deposit(id, w.usdc, fee)).wait();
    await fillAtNextRound(w.engine, who, w.deployer, w.ethFeed, { accountId: id, marketId: w.ethMarket, sizeDelta: spec.size! });
  }
  return id;
}

// ------------------------------------------------------------------------------------------ the ETH feed

async function ethAnswer(w: BallastWorld): Promise<bigint> {
  return (await w.ethFeed.latestRoundData())[1];
}

async function pushRound(w: BallastWorld, answer: bigint): Promise<void> {
  await (await w.ethFeed.setAnswer(answer)).wait();
}

/** Pokes the latest round and checks the router accepted it (no breaker, no bound). */
async function pokeEth(w: BallastWorld): Promise<void> {
  await (await w.oracle.poke(w.weth)).wait();
  const answer = await ethAnswer(w);
  const recorded = (await w.oracle.observation(w.weth)).price;
  if (recorded !== answer * 10n ** 10n) throw new Error(`the router did not accept ETH at ${answer} (recorded ${recorded})`);
}

/**
 * A new round 0.05 % above the last answer, left unpoked: the "fresh round" of a measured transaction that needs
 * no particular price (up, so an account inside or above its band stays there).
 */
export async function freshRound(w: BallastWorld): Promise<void> {
  const a = await ethAnswer(w);
  await pushRound(w, a + (a * 5n) / 10_000n);
}

/**
 * Moves ETH from its last answer (dir −1 down, +1 up) to the first price on a one-cent grid at which `accept()`
 * holds (`accept` must be monotone along the way), by bisection over unpoked rounds (the router's views apply an
 * unpoked round as `poke` would), in legs of at most 15 % between pokes. Ends with the price one cent short of
 * it poked and the accepted price pushed as a new, unpoked round — the fresh round of the measured transaction.
 */
export async function moveEthUntil(w: BallastWorld, dir: -1 | 1, accept: () => Promise<boolean>, maxLegs = 6): Promise<bigint> {
  await pokeEth(w);
  let last = await ethAnswer(w);
  if (await accept()) throw new Error("moveEthUntil: already accepted before any move");
  for (let leg = 0; leg < maxLegs; leg++) {
    const bound = (((last * (10_000n + BigInt(dir) * LEG_BPS)) / 10_000n) / CENT) * CENT;
    await pushRound(w, bound);
    if (!(await accept())) {
      await pokeEth(w);
      last = bound;
      continue;
    }
    let good = bound;
    let bad = last;
    for (;;) {
      const mid = (((good + bad) / 2n) / CENT) * CENT;
      if (mid === good || mid === bad) break; // adjacent on the grid (`last` may be off it)
      await pushRound(w, mid);
      if (await accept()) good = mid;
      else bad = mid;
    }
    await pushRound(w, bad);
    await pokeEth(w);
    await pushRound(w, good);
    if (!(await accept())) throw new Error(`moveEthUntil: ${good} accepted in the search but not after the poke at ${bad}`);
    return good;
  }
  throw new Error(`moveEthUntil: nothing accepted within ${maxLegs} legs of ${LEG_BPS} bps`);
}

async function healths(w: BallastWorld, ids: bigint[]): Promise<bigint[]> {
  const [hs, priced] = await w.engine.healthBatch(ids);
  if (priced.some((p) => !p)) throw new Error("an account has no valid price");
  return [...hs];
}

const allBelow = (w: BallastWorld, ids: bigint[], ratio: bigint) => async () => (await healths(w, ids)).every((h) => h < ratio);

// ------------------------------------------------------------------------------------------ checks

/** The measured transaction recorded the fresh round (ObservationRecorded) and took no volatility sample. */
export function expectFreshObservation(w: BallastWorld, receipt: TransactionReceipt): void {
  const names = receipt.logs
    .filter((l) => l.address === (w.oracle.target as string))
    .map((l) => w.oracle.interface.parseLog(l)?.name);
  if (!names.includes("ObservationRecorded")) throw new Error(`tx ${receipt.hash} did not record the fresh round`);
  if (names.includes("VolatilitySampled")) {
    throw new Error(`tx ${receipt.hash} crossed a volatility-grid boundary: its gas includes a history walk (the run took too long?)`);
  }
}

async function expectInInterval(w: BallastWorld, m: Mined): Promise<void> {
  const block = await ethers.provider.getBlock(m.receipt.blockNumber);
  if (Math.floor(block!.timestamp / w.volIntervalSeconds) !== w.volInterval) {
    throw new Error(`measured block ${m.receipt.blockNumber} left the world's volatility-grid interval`);
  }
}

function events(w: BallastWorld, receipt: TransactionReceipt, name: string) {
  // The engine and its rebalancing interface are one address: a log is parsed with whichever interface knows it.
  return receipt.logs
    .filter((l) => l.address === (w.engine.target as string))
    .map((l) => w.engine.interface.parseLog(l) ?? w.rebalancer.interface.parseLog(l))
    .filter((e) => e?.name === name);
}

function rebalancedActions(w: BallastWorld, receipt: TransactionReceipt): number[] {
  return events(w, receipt, "Rebalanced").map((e) => Number(e!.args.action));
}

async function expectPlan(w: BallastWorld, id: bigint, action: number): Promise<void> {
  const [needed, status, plan] = await w.rebalancer.needsRebalance(id);
  if (!needed || Number(plan.action) !== action) {
    throw new Error(`account ${id}: expected plan ${action}, got needed=${needed} status=${status} action=${plan.action}`);
  }
}

/** A measured rebalance that must apply `action`. */
async function measureRebalance(w: BallastWorld, keeper: HardhatEthersSigner, id: bigint, action: number): Promise<Figure> {
  await expectPlan(w, id, action);
  const m = await measure((o) => w.rebalancer.connect(keeper).rebalance(id, o));
  const applied = rebalancedActions(w, m.receipt);
  if (applied.length !== 1 || applied[0] !== action) throw new Error(`rebalance applied ${applied.join(",")}, expected ${action}`);
  expectFreshObservation(w, m.receipt);
  await expectInInterval(w, m);
  return { gas: m.gas, method: "receipt" };
}

function row(id: string, label: string, description: string, firstTouch: Figure, steady: Figure): Row {
  return { id, protocol: "ballast", label, steady, firstTouch, description };
}

// ------------------------------------------------------------------------------------------ scenarios

/** depositMargin (IVault, at the engine) of 1,000 USDC: the account's first margin deposit, then a second one. */
export async function benchDeposit(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const id = await openAccount(w, { margin: 0n });
  const dep: Send = (o) => w.vault.connect(w.owner).depositMargin(id, w.usdc, USDC(1_000), o);
  await freshRound(w);
  const first = await measure(dep);
  await freshRound(w);
  const steady = await measure(dep);
  return row(
    ROW.deposit,
    "Ballast deposit (depositMargin)",
    "1,000 USDC margin into an existing account; first touch = the account's first margin (slot and mask from zero)",
    { gas: first.gas, method: "receipt" },
    { gas: steady.gas, method: "receipt" },
  );
}

/**
 * Two-step orders: open (+5 ETH), increase (+2 ETH), close (−7 ETH, reduce-only, as `position:close` sends it) on an
 * account with 10,000 USDC margin, each as `requestOrder` by the owner, a fresh round, then `executeOrder` by a keeper; a row's figure is the two
 * receipts together (two transactions: 2 × 21,000 intrinsic gas). The account's first cycle is first touch (and
 * the keeper's first execution), the second cycle steady state.
 */
export async function benchTrades(): Promise<Row[]> {
  const w = await loadFixture(ballastWorld);
  // The reserve pays the six orders' execution fees.
  const id = await openAccount(w, { margin: USDC(10_000), reserve: USDC(10) });
  const keeper = w.keepers[0];
  const deadline = async () => BigInt((await time.latest()) + 3_600);
  const cycle = async (): Promise<Figure[][]> => {
    const out: Figure[][] = [];
    for (const size of [E18(5), E18(2), -E18(7)]) {
      const orderId = (await w.engine.lastOrderId()) + 1n;
      const limit = size > 0n ? E18(1_000_000) : 0n;
      const dl = await deadline();
      const reduceOnly = size < 0n;
      const request = await measure((o) => w.engine.connect(w.owner).requestOrder(id, w.ethMarket, size, limit, dl, reduceOnly, o));
      await freshRound(w);
      const execute = await measure((o) => w.engine.connect(keeper).executeOrder(orderId, o));
      if (!outcomeOf(w.engine, execute.receipt).filled) throw new Error(`order ${orderId} was cancelled`);
      expectFreshObservation(w, execute.receipt);
      await expectInInterval(w, execute);
      out.push([
        { gas: request.gas + execute.gas, method: "receipt" },
        { gas: request.gas, method: "receipt" },
        { gas: execute.gas, method: "receipt" },
      ]);
    }
    if ((await w.engine.position(id, w.ethMarket)).size !== 0n) throw new Error("the close left a position");
    return out;
  };
  const first = await cycle();
  const steady = await cycle();
  const what =
    "ETH market, 10,000 USDC margin; requestOrder + executeOrder (two transactions); first touch = the account's first " +
    "trade cycle and the keeper's first execution, steady = the second cycle";
  return [
    row(ROW.open, "Ballast open (request + execute, +5 ETH)", what, first[0][0], steady[0][0]),
    row(ROW.openRequest, "Ballast open: requestOrder", what, first[0][1], steady[0][1]),
    row(ROW.openExecute, "Ballast open: executeOrder", what, first[0][2], steady[0][2]),
    row(ROW.increase, "Ballast increase (request + execute, +2 ETH)", what, first[1][0], steady[1][0]),
    row(ROW.close, "Ballast close (request + execute, −7 ETH, reduce-only)", what, first[2][0], steady[2][0]),
  ];
}

/** A 10 ETH long (5,000 USDC margin, 4x) with a 5,000 USDC reserve and the narrow 1.3 / 1.6 policy. */
async function topUpAccount(w: BallastWorld): Promise<bigint> {
  return openAccount(w, {
    margin: USDC(5_000),
    reserve: USDC(5_000),
    size: E18(10),
    policy: { actions: ACTION.TOP_UP | ACTION.REDUCE },
  });
}

/**
 * ETH falls until the account is below its 1.3 trigger and keeper 0 rebalances it (first touch), then the same
 * again (steady state): the two figures of a TOP_UP or REDUCE row.
 */
async function belowTriggerTwice(w: BallastWorld, id: bigint, action: number): Promise<{ first: Figure; steady: Figure }> {
  const k = w.keepers[0];
  await moveEthUntil(w, -1, allBelow(w, [id], NARROW_POLICY.triggerRatio));
  const first = await measureRebalance(w, k, id, action);
  await moveEthUntil(w, -1, allBelow(w, [id], NARROW_POLICY.triggerRatio));
  const steady = await measureRebalance(w, k, id, action);
  return { first, steady };
}

/** MarginEngine.rebalance TOP_UP: ETH falls until the account is below its 1.3 trigger, twice. */
export async function benchTopUp(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const id = await topUpAccount(w);
  const { first, steady } = await belowTriggerTwice(w, id, ACTION.TOP_UP);
  return row(
    ROW.topUp,
    "Ballast rebalance TOP_UP",
    "10 ETH long, 5,000 USDC margin + 5,000 USDC reserve, policy 1.3/1.6 TOP_UP|REDUCE; ETH falls to just below the trigger; tops up USDC from reserve to margin",
    first,
    steady,
  );
}

/** MarginEngine.rebalance REDUCE: a REDUCE-only account (no reserve) below its trigger, twice. */
export async function benchReduce(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const id = await openAccount(w, { margin: USDC(5_000), size: E18(10), policy: { actions: ACTION.REDUCE, topUpAssets: "none" } });
  const { first, steady } = await belowTriggerTwice(w, id, ACTION.REDUCE);
  return row(
    ROW.reduce,
    "Ballast rebalance REDUCE",
    "10 ETH long, 5,000 USDC margin, no reserve, policy 1.3/1.6 REDUCE only; ETH falls to just below the trigger; closes the least fraction",
    first,
    steady,
  );
}

/**
 * MarginEngine.rebalance RELEASE: a 2 ETH long with 11,000 USDC margin (far above its 3.0 release ratio) releases
 * excess margin to its (empty) reserve; then ETH rises until at least 100 USDC is releasable again (4x the
 * keeper fee at the pinned base fee: an `eth_call` sees base fee 0 and plans with the flat fee only).
 */
export async function benchRelease(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const id = await openAccount(w, {
    margin: USDC(11_000),
    size: E18(2),
    policy: { actions: ACTION.TOP_UP | ACTION.RELEASE, releaseRatio: wad("3") },
  });
  const k = w.keepers[0];
  await freshRound(w);
  const first = await measureRebalance(w, k, id, ACTION.RELEASE);
  await moveEthUntil(w, 1, async () => {
    const [needed, , plan] = await w.rebalancer.needsRebalance(id);
    return needed && Number(plan.action) === ACTION.RELEASE && plan.amounts[0] >= USDC(100);
  });
  const steady = await measureRebalance(w, k, id, ACTION.RELEASE);
  return row(
    ROW.release,
    "Ballast rebalance RELEASE",
    "2 ETH long with 11,000 USDC margin, policy 1.3/1.6/3.0 TOP_UP|RELEASE; first touch releases into an empty reserve; steady after ETH rises",
    first,
    steady,
  );
}

/**
 * MarginEngine.rebalance of an account inside its band: reverts NothingToRebalance after planning. First touch: a new
 * account (health ~16) that was never rebalanced; steady: the account after a top-up (at its 1.6 target), a block
 * later, after a fresh round. Gas from the receipt of the mined reverted transaction (explicit gas limit).
 */
export async function benchNothingToRebalance(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const id = await topUpAccount(w);
  const k = w.keepers[0];
  const call: Send = (o) => w.rebalancer.connect(k).rebalance(id, o);
  await freshRound(w);
  const first = await measureRevert(call, w.rebalancer.interface, "NothingToRebalance");
  await moveEthUntil(w, -1, allBelow(w, [id], NARROW_POLICY.triggerRatio));
  await measureRebalance(w, k, id, ACTION.TOP_UP);
  await freshRound(w);
  const steady = await measureRevert(call, w.rebalancer.interface, "NothingToRebalance");
  const how = "receipt of the mined reverted transaction (explicit gas limit; eth_estimateGas cannot price a revert)";
  return row(
    ROW.inBand,
    "Ballast rebalance in band → NothingToRebalance",
    "the TOP_UP account inside its band (first: never rebalanced, health ~16; steady: at 1.6 after a top-up); reverts after planning",
    { gas: first.gas, method: "receipt-reverted", note: how },
    { gas: steady.gas, method: "receipt-reverted", note: how },
  );
}

/**
 * Two keepers rebalance the same account in one block: the first (higher tip) tops it up, the second reverts at
 * the engine's one-rebalance-per-block gate. The loser's receipt (status 0) is the figure; it pays
 * gasUsed × the block's gas price.
 */
export async function benchRaceLoser(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const id = await topUpAccount(w);
  const [winner, loser] = w.keepers;
  const race = async (): Promise<Figure> => {
    await moveEthUntil(w, -1, allBelow(w, [id], NARROW_POLICY.triggerRatio));
    await expectPlan(w, id, ACTION.TOP_UP);
    const [won, lost] = await mineTogether([
      (o) => w.rebalancer.connect(winner).rebalance(id, o),
      (o) => w.rebalancer.connect(loser).rebalance(id, o),
    ]);
    if (!won.ok || won.receipt.index > lost.receipt.index) throw new Error(`the race's first transaction failed: ${await revertData(won.receipt.hash)}`);
    expectFreshObservation(w, won.receipt);
    await expectReverted(lost, w.rebalancer.interface, "NothingToRebalance");
    const paidWei = lost.receipt.gasUsed * lost.receipt.gasPrice;
    const usd = (paidWei * (await ethAnswer(w))) / FEED_UNIT;
    return {
      gas: lost.gas,
      method: "receipt-reverted",
      note:
        `mined in the winner's block, after its TOP_UP (${won.gas.toLocaleString("en-US")} gas); reverts NothingToRebalance at the ` +
        `cooldown gate; the loser pays gasUsed × gas price = ${ethers.formatEther(paidWei)} ETH ` +
        `(${Number(lost.receipt.gasPrice) / 1e9} gwei: base fee + its tip; ≈ ${Number(ethers.formatEther(usd)).toFixed(2)} USD at the feed's ETH price)`,
    };
  };
  const first = await race();
  const steady = await race();
  return row(
    ROW.raceLoser,
    "Ballast rebalance race loser (same block)",
    "the TOP_UP account below its trigger; keepers A and B both call rebalance in one block, A first; first touch = neither keeper nor the account did it before",
    first,
    steady,
  );
}

/** `n` accounts of 1 ETH (500 USDC margin, 4x; 500 USDC reserve) with the narrow TOP_UP|REDUCE policy. */
/** `n` accounts of 1 ETH long, 500 USDC margin + 500 USDC reserve, policy 1.3/1.6 (TOP_UP | REDUCE). */
export async function batchAccounts(w: BallastWorld, n: number): Promise<bigint[]> {
  const ids: bigint[] = [];
  for (let i = 0; i < n; i++) {
    ids.push(await openAccount(w, { margin: USDC(500), reserve: USDC(500), size: E18(1), policy: { actions: ACTION.TOP_UP | ACTION.REDUCE } }));
  }
  return ids;
}

/** Runs a batch-like call over `ids` that must top up every one of them; null gas when it exceeds the cap. */
async function measureBatch(w: BallastWorld, ids: bigint[], send: Send): Promise<Figure> {
  await moveEthUntil(w, -1, allBelow(w, ids, NARROW_POLICY.triggerRatio));
  for (const id of ids) await expectPlan(w, id, ACTION.TOP_UP);
  const m = await measure(send, { allowOutOfGas: true });
  if (m.outOfGas) {
    return {
      gas: null,
      method: "over-tx-gas-cap",
      note: `${ids.length} accounts ran out of gas at the per-transaction limit of ${(await txGasLimit()).toLocaleString("en-US")} (EIP-7825 on osaka)`,
    };
  }
  const applied = rebalancedActions(w, m.receipt);
  const skipped = events(w, m.receipt, "RebalanceSkipped");
  if (applied.length !== ids.length || applied.some((a) => a !== ACTION.TOP_UP) || skipped.length !== 0) {
    throw new Error(`batch of ${ids.length}: ${applied.length} topped up, ${skipped.length} skipped`);
  }
  expectFreshObservation(w, m.receipt);
  await expectInInterval(w, m);
  return { gas: m.gas, method: "receipt" };
}

/** MarginEngine.rebalanceBatch over `n` accounts that all need a TOP_UP: first batch, then a second one. */
export async function benchBatch(n: number): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const ids = await batchAccounts(w, n);
  const k = w.keepers[0];
  const send: Send = (o) => w.rebalancer.connect(k).rebalanceBatch(ids, o);
  const first = await measureBatch(w, ids, send);
  const steady: Figure =
    first.gas === null
      ? { gas: null, method: "not-measured", note: "the first-touch batch could not execute, so no account was rebalanced before" }
      : await measureBatch(w, ids, send);
  return row(
    ROW.batch(n),
    `Ballast rebalanceBatch of ${n} (TOP_UP each)`,
    `${n} accounts of 1 ETH long, 500 USDC margin + 500 USDC reserve, policy 1.3/1.6; ETH falls until all are below the trigger; one keeper`,
    first,
    steady,
  );
}

/** MarginEngine.performUpkeep with the performData of checkUpkeep over a window of 10 accounts needing a TOP_UP. */
export async function benchUpkeep10(): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const ids = await batchAccounts(w, 10);
  const k = w.keepers[0];
  const checkData = ethers.AbiCoder.defaultAbiCoder().encode(["uint256", "uint256"], [ids[0], ids.length]);
  const send: Send = async (o) => {
    const [needed, performData] = await w.rebalancer.checkUpkeep.staticCall(checkData);
    const found = ethers.AbiCoder.defaultAbiCoder().decode(["uint256[]"], performData)[0] as bigint[];
    if (!needed || found.length !== ids.length) throw new Error(`checkUpkeep found ${found.length} of ${ids.length}`);
    return w.rebalancer.connect(k).performUpkeep(performData, o);
  };
  const first = await measureBatch(w, ids, send);
  const steady = await measureBatch(w, ids, send);
  return row(
    ROW.upkeep10,
    "Ballast performUpkeep of 10 (TOP_UP each)",
    "checkUpkeep(abi.encode(firstId, 10)) then performUpkeep(performData) by the keeper (no upkeepFeeRecipient: fees to the caller); accounts as in rebalanceBatch",
    first,
    steady,
  );
}

/**
 * MarginEngine.liquidate. Two identical 25 ETH longs (10,000 USDC margin, 5x, no policy). ETH falls to the
 * first price at which a liquidation is partial (or, for `full`, closes everything: health < 0.5, equity still
 * positive); the keeper liquidates the first account (first touch: its first liquidation, its first credited reward), then,
 * after a fresh round, the second (steady: the keeper has done it before).
 */
export async function benchLiquidate(kind: "partial" | "full"): Promise<Row> {
  const w = await loadFixture(ballastWorld);
  const a = await openAccount(w, { margin: USDC(10_000), size: E18(25) });
  const b = await openAccount(w, { margin: USDC(10_000), size: E18(25) });
  const k = w.keepers[0];
  const ready = (f: bigint) => (kind === "partial" ? f > 0n && f < WAD : f === WAD);
  await moveEthUntil(w, -1, async () => {
    const f = await w.engine.liquidationFraction(a);
    return kind === "partial" ? f > 0n : f === WAD;
  });
  const liquidate = async (id: bigint): Promise<Figure> => {
    const f = await w.engine.liquidationFraction(id);
    if (!ready(f)) throw new Error(`account ${id}: liquidation fraction ${f} is not ${kind}`);
    const m = await measure((o) => w.engine.connect(k).liquidate(id, o));
    if (events(w, m.receipt, "Liquidated").length !== 1) throw new Error(`account ${id} was not liquidated`);
    expectFreshObservation(w, m.receipt);
    await expectInInterval(w, m);
    const badDebt = events(w, m.receipt, "BadDebt").length !== 0;
    return { gas: m.gas, method: "receipt", note: kind === "full" ? `bad debt written off: ${badDebt ? "yes" : "no"}` : undefined };
  };
  const first = await liquidate(a);
  // A fresh round one cent lower keeps the second account at the same kind of liquidation.
  await pushRound(w, (await ethAnswer(w)) - CENT);
  const steady = await liquidate(b);
  return row(
    kind === "partial" ? ROW.liquidatePartial : ROW.liquidateFull,
    `Ballast liquidate ${kind}`,
    `25 ETH long, 10,000 USDC margin, no policy; ETH at the first price where the liquidation is ${kind === "partial" ? "partial" : "full (health just below 0.5)"}; first touch = the keeper's first liquidation, steady = its second (another identical account)`,
    first,
    steady,
  );
}

/** Every Ballast row, in table order. */
export async function benchBallast(opts: { batchSizes: number[]; log?: (s: string) => void }): Promise<Row[]> {
  const log = opts.log ?? (() => undefined);
  const rows: Row[] = [];
  const step = async <T extends Row | Row[]>(name: string, f: () => Promise<T>): Promise<void> => {
    const t = Date.now();
    const r = await f();
    rows.push(...(Array.isArray(r) ? r : [r]));
    log(`  ${name} (${((Date.now() - t) / 1000).toFixed(1)} s)`);
  };
  await step("deposit", benchDeposit);
  await step("open / increase / close", benchTrades);
  await step("rebalance TOP_UP", benchTopUp);
  await step("rebalance REDUCE", benchReduce);
  await step("rebalance RELEASE", benchRelease);
  await step("NothingToRebalance", benchNothingToRebalance);
  await step("race loser", benchRaceLoser);
  for (const n of opts.batchSizes) await step(`rebalanceBatch ${n}`, () => benchBatch(n));
  await step("performUpkeep 10", benchUpkeep10);
  await step("liquidate partial", () => benchLiquidate("partial"));
  await step("liquidate full", () => benchLiquidate("full"));
  return rows;
}
