import { expect } from "chai";
import fc from "fast-check";

import {
  collateralFor,
  collateralUsd,
  plan,
  shardOf,
  STATUS,
  type AccountSnapshot,
  type Conditions,
  type DebtSnapshot,
  type Inventory,
  type OrderSnapshot,
} from "../../keeper/strategy";

const W = 10n ** 18n;
const GWEI = 10n ** 9n;
const usd = (cents: bigint) => (cents * W) / 100n;
const USDC = (n: bigint | number) => BigInt(n) * 10n ** 6n;

const acct = (id: bigint, health: bigint, extra: Partial<AccountSnapshot> = {}): AccountSnapshot => ({
  id,
  round: `r${id}`,
  health,
  priced: true,
  liquidatable: false,
  rescueAvailable: false,
  liquidationRewardUsd: 0n,
  ...extra,
});
const ready = (maxFeeUsd: bigint) => ({ needed: true, status: STATUS.Ready, maxFeeUsd });

/** 1 gwei, ETH 2,000 USD, the engine's default fee (1 USD + 600k gas), min profit 0.10 USD, batches of 2. */
const conditions = (over: Partial<Conditions> = {}): Conditions => ({
  baseFee: GWEI,
  ethUsd: 2_000n * W,
  feeParams: { baseFeeUsd: W, gasUnits: 600_000n },
  maxFeePerGas: 200n * GWEI,
  gas: { rebalance: 500_000, rebalanceBatchBase: 100_000, rebalanceBatchPerAccount: 400_000, liquidate: 800_000, executeOrder: 300_000 },
  minProfitUsd: usd(10n),
  batchSize: 2,
  shard: { index: 0, count: 1 },
  busy: new Set(),
  ...over,
});

describe("keeper strategy", () => {
  it("orders liquidations (lowest health first), rescues, batched rebalances, then orders oldest first; says why it waits", () => {
    const accounts = [
      acct(1n, (W * 8n) / 10n, { liquidatable: true, liquidationRewardUsd: 10n * W }),
      acct(2n, (W * 12n) / 10n, { rebalance: ready(50n * W) }),
      acct(3n, (W * 13n) / 10n, { rebalance: ready(W) }), // fee capped at 1 USD < 1 USD gas + 0.10
      acct(4n, 2n * W, { rebalance: { needed: false, status: STATUS.InBand, maxFeeUsd: 50n * W } }),
      acct(5n, (W * 6n) / 10n, { liquidatable: true, liquidationRewardUsd: 7n * W }),
      acct(6n, 0n, { priced: false, liquidatable: true, liquidationRewardUsd: 7n * W }),
      acct(7n, (W * 9n) / 10n, { rescueAvailable: true, rebalance: ready(50n * W) }),
      acct(8n, (W * 11n) / 10n, { rebalance: ready(50n * W) }), // already sent this round
      acct(10n, (W * 11n) / 10n, { rebalance: ready(50n * W) }),
      acct(11n, (W * 125n) / 100n, { rebalance: ready(50n * W) }),
      acct(12n, (W * 5n) / 10n, { liquidatable: true, liquidationRewardUsd: 10n * W, rebalance: { needed: false, status: STATUS.Liquidatable, maxFeeUsd: W } }),
    ];
    const orders: OrderSnapshot[] = [
      { id: 9n, accountId: 2n, ready: true, feeUsd: usd(50n) },
      { id: 4n, accountId: 1n, ready: true, feeUsd: W },
      { id: 3n, accountId: 3n, ready: false, feeUsd: W },
    ];
    const p = plan(accounts, orders, conditions({ busy: new Set(["rebalance:8"]) }));
    expect(p.actions).to.deep.equal([
      { kind: "liquidate", ids: [12n], targets: [{ key: "liquidate:12", round: "r12" }], valueUsd: 10n * W, costUsd: usd(160n), gas: 800_000 },
      { kind: "liquidate", ids: [5n], targets: [{ key: "liquidate:5", round: "r5" }], valueUsd: 7n * W, costUsd: usd(160n), gas: 800_000 },
      { kind: "liquidate", ids: [1n], targets: [{ key: "liquidate:1", round: "r1" }], valueUsd: 10n * W, costUsd: usd(160n), gas: 800_000 },
      { kind: "rescue", ids: [7n], targets: [{ key: "rebalance:7", round: "r7" }], valueUsd: usd(220n), costUsd: W, gas: 500_000 },
      {
        kind: "rebalanceBatch",
        ids: [10n, 2n],
        targets: [{ key: "rebalance:10", round: "r10" }, { key: "rebalance:2", round: "r2" }],
        valueUsd: usd(440n),
        costUsd: usd(180n),
        gas: 900_000,
      },
      { kind: "rebalance", ids: [11n], targets: [{ key: "rebalance:11", round: "r11" }], valueUsd: usd(220n), costUsd: W, gas: 500_000 },
      { kind: "executeOrder", ids: [4n], targets: [{ key: "order:4", round: "0" }], valueUsd: W, costUsd: usd(60n), gas: 300_000 },
    ]);
    expect(p.waits).to.deep.equal([
      { key: "rebalance:3", reason: "unprofitable: fee 1.00 USD < gas 1.00 USD + min profit 0.10 USD at base fee 1 gwei" },
      { key: "order:3", reason: "not ready: no oracle round after the request yet" },
      { key: "order:9", reason: "unprofitable: order fee 0.50 USD < gas 0.60 USD + min profit 0.10 USD at base fee 1 gwei" },
    ]);
  });

  it("gas spike: waits while the capped fee does not cover gas, acts once it does", () => {
    const accounts = [acct(2n, (W * 12n) / 10n, { rebalance: ready(50n * W) })];
    const spike = plan(accounts, [], conditions({ baseFee: 100n * GWEI }));
    expect(spike.actions).to.deep.equal([]);
    // fee = min(50, 1 + 600k × 100 gwei × 2,000) = 50 USD; gas = 500k × 100 gwei × 2,000 = 100 USD
    expect(spike.waits).to.deep.equal([
      { key: "rebalance:2", reason: "unprofitable: fee 50.00 USD < gas 100.00 USD + min profit 0.10 USD at base fee 100 gwei" },
    ]);
    const calm = plan(accounts, [], conditions({ baseFee: 10n * GWEI }));
    // fee = 1 + 12 = 13 USD; gas = 10 USD
    expect(calm.actions).to.deep.equal([
      { kind: "rebalance", ids: [2n], targets: [{ key: "rebalance:2", round: "r2" }], valueUsd: 13n * W, costUsd: 10n * W, gas: 500_000 },
    ]);
    expect(calm.waits).to.deep.equal([]);
    const aboveCap = plan(accounts, [], conditions({ baseFee: 250n * GWEI }));
    expect(aboveCap.waits).to.deep.equal([{ key: "rebalance:2", reason: "base fee 250 gwei above the cap maxFeePerGasGwei 200" }]);
    const noPrice = plan(accounts, [], conditions({ ethUsd: undefined }));
    expect(noPrice.waits).to.deep.equal([{ key: "rebalance:2", reason: "no ETH price (gas asset unpriced and no ethUsdFallback)" }]);
  });

  it("shards partition accounts and the orders of their accounts", () => {
    const accounts = [1n, 2n, 3n, 4n, 5n, 6n].map((id) => acct(id, (W * 12n) / 10n, { rebalance: ready(50n * W) }));
    const orders: OrderSnapshot[] = [
      { id: 1n, accountId: 3n, ready: true, feeUsd: W },
      { id: 2n, accountId: 1n, ready: true, feeUsd: W },
    ];
    const ids = (i: number) =>
      plan(accounts, orders, conditions({ batchSize: 10, shard: { index: i, count: 2 } })).actions.map((a) => `${a.kind}:${a.ids.join(",")}`);
    expect(ids(0)).to.deep.equal(["rebalanceBatch:1,2,5", "executeOrder:2"]);
    expect(ids(1)).to.deep.equal(["rebalanceBatch:3,4,6", "executeOrder:1"]);
  });

  it("every account id is in exactly one shard", () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 1n, max: 2n ** 128n }), fc.integer({ min: 1, max: 16 }), (id, n) => {
        const s = shardOf(id, n);
        expect(s).to.be.within(0, n - 1);
        expect(shardOf(id, n)).to.equal(s);
      }),
    );
    expect([1n, 2n, 3n, 4n].map((id) => shardOf(id, 1))).to.deep.equal([0, 0, 0, 0]);
  });

  describe("collateral sales: own USDC first, else the FlashLiquidator", () => {
    const WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2";
    /** An owing account with WETH at 1,500 whose simulated flash liquidation earns `profit` WETH (or reverts). */
    const debt = (id: bigint, debtUsd: bigint, quote: DebtSnapshot["quote"]): DebtSnapshot => ({
      id,
      round: `r${id}`,
      debtUsd,
      collateral: WETH,
      margin: 2n * W,
      collateralPriceUsd: 1_500n * W,
      collateralDecimals: 18,
      quote,
    });
    /** flash gas 300k at 1 gwei and ETH 2,000 = 0.60 USD; 5 USD of profit asked above it */
    const flash = { minProfitUsd: 5n * W, gas: 300_000 };

    it("after the liquidations, buys the largest debts first when the profit covers gas + flashMinProfitUsd; says why it waits", () => {
      const debts = [
        debt(3n, (27_914n * W) / 10n, { profit: (953n * W) / 10_000n }), // 0.0953 WETH = 142.95 USD
        debt(4n, 10n * W, { profit: W / 1_000n }), // 0.001 WETH = 1.50 USD
        debt(5n, 3_000n * W, { reason: "InsufficientProfit(-42, 0)" }),
        debt(6n, 4_000n * W, { profit: W }), // already sent this round
        { ...debt(7n, 20n * W, { profit: W }), collateralPriceUsd: undefined },
        debt(8n, 5_000n * W, { profit: W / 5n }), // 0.2 WETH = 300 USD
      ];
      const accounts = [acct(1n, W / 2n, { liquidatable: true, liquidationRewardUsd: 10n * W })];
      const p = plan(accounts, [], conditions({ flash, busy: new Set(["buy:6"]) }), debts);
      // minProfit: (0.60 + 5) USD at 1,500 = 0.003733… WETH, rounded up
      const minProfit = 3_733_333_333_333_334n;
      expect(minProfit).to.equal(collateralFor(usd(560n), 1_500n * W, 18));
      expect(p.actions).to.deep.equal([
        { kind: "liquidate", ids: [1n], targets: [{ key: "liquidate:1", round: "r1" }], valueUsd: 10n * W, costUsd: usd(160n), gas: 800_000 },
        { kind: "flashLiquidate", ids: [8n], targets: [{ key: "buy:8", round: "r8" }], valueUsd: 300n * W, costUsd: usd(60n), gas: 300_000, minProfit },
        { kind: "flashLiquidate", ids: [3n], targets: [{ key: "buy:3", round: "r3" }], valueUsd: usd(14_295n), costUsd: usd(60n), gas: 300_000, minProfit },
      ]);
      expect(p.waits).to.deep.equal([
        { key: "buy:5", reason: "flash liquidation would revert: InsufficientProfit(-42, 0)" },
        { key: "buy:7", reason: "collateral unpriced" },
        { key: "buy:4", reason: "unprofitable: flash profit 1.50 USD < gas 0.60 USD + min profit 5.00 USD at base fee 1 gwei" },
      ]);
    });

    it("the on-chain floor is never above a profit that passed: collateralFor(collateralUsd(p)) <= p", () => {
      fc.assert(
        fc.property(fc.bigInt({ min: 1n, max: 10n ** 24n }), fc.bigInt({ min: 1n, max: 10n ** 24n }), fc.integer({ min: 0, max: 24 }), (p, px, d) => {
          expect(collateralFor(collateralUsd(p, px, d), px, d) <= p).to.equal(true);
        }),
      );
    });

    /** The keeper's USDC: `balance` units, no allowance yet; buy 200k gas + approve 50k = 0.50 USD at 1 gwei, ETH 2,000. */
    const inventory = (balance: bigint, allowance = 0n): Inventory => ({
      balance,
      allowance,
      settlementScale: 10n ** 12n,
      collateralDiscount: W / 20n,
      gas: { buyCollateral: 200_000, approve: 50_000 },
    });

    it("buys directly while its own USDC covers the repay (an exact approve first), flash-buys the rest, says why it waits", () => {
      const debts = [
        debt(3n, (27_914n * W) / 10n, { profit: W / 10n }), // repay 2,791.40 USDC: covered by 3,000
        debt(4n, 1_000n * W, { profit: W / 100n }), // 1,000 USDC > the 208.60 left: flash (0.01 WETH = 15 USD)
        debt(5n, 100n * W, { profit: W / 1_000n }), // 100 USDC <= 208.60: direct again
        debt(6n, 5n * W, { profit: W / 1_000n }), // 5 USDC: covered, but 0.26 USD of profit < 0.50 gas + 0.10
      ];
      const p = plan([], [], conditions({ flash, inventory: inventory(USDC(3_000)) }), debts);
      // WETH out at 1,500 × 0.95 = 1,425, rounded down (the engine's, lib/margin.ts collateralSale); profit = its value
      // at the oracle less the repay; minAmountOut = WETH worth the repay + gas (0.50) + min profit (0.10), rounded up
      expect(p.actions).to.deep.equal([
        { kind: "approve", ids: [3n], targets: [{ key: "approve:3", round: "r3" }], valueUsd: 0n, costUsd: usd(10n), gas: 50_000, repay: 2_791_400_000n },
        {
          kind: "buyCollateral",
          ids: [3n],
          targets: [{ key: "buy:3", round: "r3" }],
          valueUsd: 146_915_789_473_684_210_000n, // 1.958877192982456140 WETH × 1,500 − 2,791.40
          costUsd: usd(50n),
          gas: 250_000,
          collateral: WETH,
          repay: 2_791_400_000n,
          minAmountOut: 1_861_333_333_333_333_334n,
        },
        { kind: "flashLiquidate", ids: [4n], targets: [{ key: "buy:4", round: "r4" }], valueUsd: 15n * W, costUsd: usd(60n), gas: 300_000, minProfit: 3_733_333_333_333_334n },
        { kind: "approve", ids: [5n], targets: [{ key: "approve:5", round: "r5" }], valueUsd: 0n, costUsd: usd(10n), gas: 50_000, repay: 100_000_000n },
        {
          kind: "buyCollateral",
          ids: [5n],
          targets: [{ key: "buy:5", round: "r5" }],
          valueUsd: 5_263_157_894_736_842_000n, // 0.070175438596491228 WETH × 1,500 − 100
          costUsd: usd(50n),
          gas: 250_000,
          collateral: WETH,
          repay: 100_000_000n,
          minAmountOut: 67_066_666_666_666_667n,
        },
      ]);
      expect(p.waits).to.deep.equal([
        { key: "buy:6", reason: "unprofitable: direct buy profit 0.26 USD < gas 0.50 USD + min profit 0.10 USD at base fee 1 gwei" },
      ]);
    });

    it("needs no approve when the allowance covers the repay; without a FlashLiquidator, what its USDC cannot cover is left", () => {
      const debts = [debt(3n, (27_914n * W) / 10n, undefined), debt(5n, 100n * W, undefined)];
      // 2,000 USDC: not enough for account 3 (left, no wait), enough for 5; allowance 100 USDC: no approve, 200k gas
      const p = plan([], [], conditions({ inventory: inventory(USDC(2_000), USDC(100)) }), debts);
      expect(p.actions).to.deep.equal([
        {
          kind: "buyCollateral",
          ids: [5n],
          targets: [{ key: "buy:5", round: "r5" }],
          valueUsd: 5_263_157_894_736_842_000n,
          costUsd: usd(40n),
          gas: 200_000,
          collateral: WETH,
          repay: 100_000_000n,
          minAmountOut: 67_000_000_000_000_000n, // (100 + 0.40 + 0.10) USD / 1,500
        },
      ]);
      expect(p.waits).to.deep.equal([]);
      // one unit short of the repay and no FlashLiquidator: nothing to do, nothing to say
      expect(plan([], [], conditions({ inventory: inventory(USDC(100) - 1n) }), [debts[1]])).to.deep.equal({ actions: [], waits: [] });
      // an approve already on its way: the buy waits for it
      expect(plan([], [], conditions({ inventory: inventory(USDC(100)), busy: new Set(["approve:5"]) }), [debts[1]]).waits).to.deep.equal([
        { key: "buy:5", reason: "waiting for the engine's approval to be mined" },
      ]);
    });

    it("sells all the collateral, at its discounted value rounded up, when that is less than the debt", () => {
      // 3,000 USD owed, 2 WETH at 1,425 = 2,850 USDC: all of it for 2,850 USDC
      const p = plan([], [], conditions({ inventory: inventory(USDC(3_000)) }), [debt(3n, 3_000n * W, undefined)]);
      expect(p.actions.map((a) => [a.kind, a.repay, a.valueUsd])).to.deep.equal([
        ["approve", USDC(2_850), 0n],
        ["buyCollateral", USDC(2_850), 150n * W], // 2 × 1,500 − 2,850
      ]);
    });

    it("leaves owing accounts alone without a FlashLiquidator, and waits with everything else above the gas cap", () => {
      const debts = [debt(3n, 100n * W, { profit: W })];
      expect(plan([], [], conditions(), debts)).to.deep.equal({ actions: [], waits: [] });
      expect(plan([], [], conditions({ flash, baseFee: 250n * GWEI }), debts).waits).to.deep.equal([
        { key: "buy:3", reason: "base fee 250 gwei above the cap maxFeePerGasGwei 200" },
      ]);
    });
  });
});
