/**
 * The attacks of issue #8, each as a fixed sequence of the invariant suite's actions: every step is judged and
 * followed by all seven invariants exactly as in the random sequences (Invariants.test.ts), and each test then
 * checks that the attack step did what it is there for. Together with the random sequences they make sure the
 * suite exercises every attack whatever the seed.
 */
import { expect } from "chai";
import { Commands as C, type Act } from "./actions";
import { setTokenAddresses, type StepRecord } from "./invariants";
import { freshRun, releaseChain } from "./world";

/** Runs the commands from the fixture; returns what each step did. */
async function sequence(...cmds: Act[]): Promise<StepRecord[]> {
  const { model, real } = await freshRun();
  setTokenAddresses(real);
  const log: StepRecord[] = [];
  real.log = log;
  try {
    for (const c of cmds) await c.run(model, real);
  } finally {
    real.log = undefined;
  }
  return log;
}

const step = (log: StepRecord[], prefix: string) => {
  const r = log.find((x) => x.label.startsWith(prefix));
  if (!r) throw new Error(`no step "${prefix}" in ${log.map((x) => x.label).join(" / ")}`);
  return r;
};

describe("Invariants: the attacks of issue #8, step by step", function () {
  after(releaseChain);

  it("1. a just-in-time LP deposit around a losing trader's close gains nothing and cannot redeem in that block", async function () {
    // ETH −15 %: account 1's 40 ETH long loses 12,000 (its 20,000 USDC margin pays), account 3's short gains 6,000.
    const log = await sequence(new C.PriceMove(0, "down15"), new C.Jit("closeLoser", true));
    const jit = step(log, "jitLp").jit!;
    expect(jit.inner).to.match(/^account 1 closes its ETH position \(PnL -12000 USD\)/);
    expect(jit.redeemed).to.equal(false);
    expect(jit.usdcAfter).to.equal(jit.usdcBefore - jit.assets);
  });

  it("2. open losses of one side never offset the other side's profits: no JIT gain around the loser's close", async function () {
    // ETH +15 %: account 1's 40 ETH long gains 12,000, account 3's 20 ETH short loses 6,000 (one market, two sides).
    const log = await sequence(new C.PriceMove(0, "up15"), new C.Jit("closeLoser", false));
    expect(step(log, "jitLp").jit!.inner).to.match(/^account 3 closes its ETH position \(PnL -6000 USD\)/);
  });

  it("3. an LP's withdrawals and deposits never move an account's health, so a keeper-LP farms no rebalance fees", async function () {
    const log = await sequence(
      new C.Trade(0, 0, "long", 0.5),
      new C.TimePasses(901),
      new C.LpRedeem("max"),
      new C.Rebalance(0),
      new C.LpDeposit(2, false),
      new C.Rebalance(0),
    );
    expect(step(log, "pool.redeem").mined).to.equal(true);
    expect(step(log, "pool.deposit").mined).to.equal(true);
  });

  it("4. a stranger's dust collateral cannot block liquidation or rebalancing when its oracle trips", async function () {
    const log = await sequence(
      new C.StrangerMargin(0, 2, true), // 1 satoshi of WBTC into account 1: refused
      // The owner takes its USDC and WETH reserve out: its policy's top-up assets are empty, so no rescue has
      // priority (at the 5.8x IM allows in a calm market, the 17,200 USD they count at −20 % would rescue it).
      new C.VaultOwnerMove(0, 0, "withdraw", 1),
      new C.VaultOwnerMove(0, 1, "withdraw", 1),
      // 0.9× free margin: at IM from max(σ, σ_mm, imVolFloor) account 1 ends near that 5.8x, so −20 % takes more
      // than its equity and the liquidation is the keeper's
      new C.Trade(0, 0, "long", 0.9),
      new C.PriceMove(1, "tripUp"), // BTC's breaker trips (account 1 has WBTC in its reserve only)
      new C.PriceMove(0, "down20"),
      new C.Liquidate(0),
    );
    expect(step(log, "depositMargin").error?.name).to.equal("MarginAssetRestricted");
    expect(step(log, "trade").mined).to.equal(true);
    expect(step(log, "liquidate").mined).to.equal(true);
  });

  const OPT_OUT = { optOut: true, stranger: false, actions: 0, cooldown: 0, trigger: "1", band: "0", release: "none", maxFee: "0", assets: [] };

  it("4. an outage of one collateral's oracle never blocks liquidating risk priced by healthy oracles", async function () {
    // Account 2 (no policy): short 2 BTC on 2,000 USDC and 10 WETH of margin. ETH's breaker trips (its WETH counts
    // as zero) and BTC +15 % puts it below 1.
    const log = await sequence(new C.SetPolicy(1, OPT_OUT), new C.PriceMove(0, "tripUp"), new C.PriceMove(1, "up15"), new C.Liquidate(1), new C.Rebalance(1));
    expect(step(log, "liquidate").mined).to.equal(true);
  });

  it("4. …nor the rescue its own reserve has priority for: the liquidation reverts RescueAvailable, the rescue lands at >= 1.2", async function () {
    // Account 2 keeps its policy (TOP_UP, maxFee 5 = the keeper reward, reserve WETH then USDC): with WETH unpriced
    // its 10,000 USDC reserve alone lifts it to the liquidation target.
    const log = await sequence(new C.PriceMove(0, "tripUp"), new C.PriceMove(1, "up15"), new C.Liquidate(1), new C.Rebalance(1));
    expect(step(log, "liquidate").error?.name).to.equal("RescueAvailable");
    const rescue = step(log, "rebalance");
    expect(rescue.mined).to.equal(true);
    expect(rescue.pre.accounts[1].health! < 10n ** 18n).to.equal(true);
    expect(rescue.post.accounts[1].health! >= rescue.pre.risk.liquidationTargetRatio).to.equal(true);
  });

  it("5. an account with no position and no debt takes everything out with every oracle stale", async function () {
    const log = await sequence(
      new C.Trade(0, 0, "close", 1),
      new C.VaultOwnerMove(0, 1, "post", 1),
      new C.VaultOwnerMove(0, 2, "post", 1),
      new C.TimePasses(7_201),
      new C.Exit(0),
    );
    expect(step(log, "exit").mined).to.equal(true);
  });

  it("6. the oracle serves nothing that skipped validation: a −30 % answer at the same updatedAt, a round going back", async function () {
    const log = await sequence(
      new C.PriceMove(0, "sameTsCrash"),
      new C.Liquidate(0),
      new C.Trade(0, 0, "long", 0.05),
      new C.PriceMove(1, "back"),
      new C.Trade(1, 1, "reduce", 1),
    );
    expect(step(log, "liquidate").error?.name).to.equal("OracleUnhealthy");
    expect(step(log, "trade(account 1").error?.name).to.equal("OracleUnhealthy");
    expect(step(log, "trade(account 2").error?.name).to.equal("OracleUnhealthy");
  });

  it("7. bad debt is written off at once when an owner closes an underwater position", async function () {
    const log = await sequence(new C.RebalanceBatch([0]), new C.PriceMove(0, "down20"), new C.Trade(0, 0, "close", 1));
    const close = step(log, "trade");
    expect(close.txs[0].events.some((e) => e.name === "BadDebt")).to.equal(true);
  });

  it("a deposit → redeem in one block around a price step, a liquidation or a rebalance does not go through", async function () {
    await sequence(
      new C.Jit("priceDown", true),
      new C.Trade(0, 0, "long", 0.9),
      new C.PriceMove(0, "down15"),
      new C.Jit("liquidate", true),
      new C.Jit("rebalance", false),
    );
  });

  it("open → close at one price costs the two fees", async function () {
    const log = await sequence(new C.RoundTripTrade(0, 0, true, 0.5));
    expect(step(log, "openThenClose").roundTrip!.fees > 0n).to.equal(true);
  });
});
