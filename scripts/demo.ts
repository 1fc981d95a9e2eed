/**
 * Demo on the in-process Hardhat network (no RPC, no keys): deploys the whole system, seeds the LP pool,
 * opens two identical 5x ETH longs — one with a rebalancing policy and a reserve, one without — and replays
 * the real Binance ETH/USDT hourly closes of 9–16 March 2020 ("Black Thursday", data/) through the
 * real contracts: a keeper rebalances the protected account and liquidates whatever falls below 1.
 */
import { ethers, network } from "hardhat";
import { deployLocalSystem } from "../deploy/system";
import { fillAtNextRound } from "../lib/orders";
import { ACTION, CRYPTO_FEED, wad } from "../deploy/params";
import { loadPriceCsv } from "../lib/prices";
import { health, usd } from "../lib/format";

const FILE = "eth_usdt_binance_1h_2021-05-16_2021-05-24.csv";
const USDC = (n: bigint) => n * 10n ** 6n;

async function main() {
  if (network.name !== "hardhat") throw new Error(`the demo runs on the in-process network; got --network ${network.name}`);
  const bars = loadPriceCsv(FILE, 8);
  const [deployer, lp, trader, keeper] = await ethers.getSigners();
  const sys = await deployLocalSystem(deployer, { eth: bars[0].price, btc: 46_000n * 10n ** 8n });
  // The real hourly path moves up to ~21 % in one bar: widen the breaker so the replay is not halted.
  await (await sys.oracle.setFeed(sys.weth, { feed: sys.ethFeed, ...CRYPTO_FEED, maxJumpBps: 5000 })).wait();
  await (await sys.oracle.poke(sys.weth)).wait();

  console.log("Ballast demo — in-process Hardhat network");
  console.log(`  OracleRouter ${await sys.oracle.getAddress()}`);
  console.log(`  Pool         ${await sys.pool.getAddress()}`);
  console.log(`  MarginEngine ${await sys.engine.getAddress()} (custody and rebalancing built in; extension ${await sys.engine.extension()})`);

  await (await sys.usdc.mint(lp.address, USDC(1_000_000n))).wait();
  await (await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000n))).wait();
  await (await sys.pool.connect(lp).deposit(USDC(1_000_000n), lp.address)).wait();
  console.log(`  LP deposited 1,000,000 USDC into the pool`);

  // Two identical 3x longs (10,000 USDC margin, 30,000 USD of ETH). "protected" also holds a reserve and a
  // policy: trigger 2, target 3 (a crash can move ETH 5 % in an hour), top up from reserve (USDC, then WETH),
  // then reduce if still short.
  const price0 = bars[0].price * 10n ** 10n;
  const size = (30_000n * 10n ** 18n * 10n ** 18n) / price0;
  const open = async () => {
    await (await sys.vault.connect(trader).createAccount()).wait();
    const id = await sys.vault.accountCount();
    await (await sys.usdc.mint(trader.address, USDC(10_000n))).wait();
    await (await sys.usdc.connect(trader).approve(sys.vault, USDC(10_000n))).wait();
    await (await sys.vault.connect(trader).depositMargin(id, sys.usdc, USDC(10_000n))).wait();
    // The order's execution fee comes from the USDC reserve.
    const fee = await sys.engine.orderFee();
    await (await sys.usdc.mint(trader.address, fee)).wait();
    await (await sys.usdc.connect(trader).approve(sys.vault, fee)).wait();
    await (await sys.vault.connect(trader).deposit(id, sys.usdc, fee)).wait();
    // A two-step order, filled at the next round of the same price (README "Orders").
    await fillAtNextRound(sys.engine, trader, deployer, sys.ethFeed, {
      accountId: id,
      marketId: sys.ethMarket,
      sizeDelta: size,
      acceptablePrice: price0 * 2n,
    });
    return id;
  };
  const plain = await open();
  const guarded = await open();
  const reserveUsdc = USDC(5_000n);
  const reserveWeth = 2n * 10n ** 18n;
  await (await sys.usdc.mint(trader.address, reserveUsdc)).wait();
  await (await sys.usdc.connect(trader).approve(sys.vault, reserveUsdc)).wait();
  await (await sys.vault.connect(trader).deposit(guarded, sys.usdc, reserveUsdc)).wait();
  await (await sys.weth.mint(trader.address, reserveWeth)).wait();
  await (await sys.weth.connect(trader).approve(sys.vault, reserveWeth)).wait();
  await (await sys.vault.connect(trader).deposit(guarded, sys.weth, reserveWeth)).wait();
  await (
    await sys.engine.connect(trader).setRebalancePolicy(guarded, {
      actions: ACTION.TOP_UP | ACTION.REDUCE,
      cooldown: 0,
      triggerRatio: wad("2.5"),
      targetRatio: wad("3.5"),
      releaseRatio: 0n,
      maxFeeUsd: wad("25"),
      topUpAssets: [await sys.usdc.getAddress(), await sys.weth.getAddress()],
    })
  ).wait();
  console.log(`  Account ${plain} (no policy) and account ${guarded} (policy 2.5 → 3.5, reserve 5,000 USDC + 2 WETH):`);
  console.log(`    each long ${usd(size, 4)} ETH at ${usd(price0)} on 10,000 USDC margin (3x)`);
  console.log("");
  console.log(`Replaying ${bars.length} hourly closes from ${FILE}`);
  console.log("  time (UTC)         ETH price   health #" + plain + "   health #" + guarded + "   event");

  const t0 = bars[0].timestamp;
  const chainStart = (await ethers.provider.getBlock("latest"))!.timestamp + 60;
  const actionName = (a: bigint) => ["", "top-up", "reduce", "top-up + reduce", "release"][Number(a)] ?? `action ${a}`;
  let rebalances = 0;
  const liquidations = new Map<bigint, number>([[plain, 0], [guarded, 0]]);
  let fees = 0n;
  for (let i = 1; i < bars.length; i++) {
    const bar = bars[i];
    await network.provider.send("evm_setNextBlockTimestamp", [chainStart + (bar.timestamp - t0)]);
    await (await sys.ethFeed.setAnswer(bar.price)).wait();
    await (await sys.oracle.poke(sys.weth)).wait();
    const [[hPlain, hGuarded]] = await sys.engine.healthBatch([plain, guarded]);
    const when = new Date(bar.timestamp * 1000).toISOString().slice(0, 16).replace("T", " ");
    const row = `  ${when}   ${usd(bar.price * 10n ** 10n).padStart(9)}   ${health(hPlain).padStart(9)}   ${health(hGuarded).padStart(9)}`;
    const events: string[] = [];

    const [needed] = await sys.rebalancer.needsRebalance(guarded);
    if (needed) {
      const receipt = await (await sys.rebalancer.connect(keeper).rebalance(guarded)).wait();
      for (const log of receipt!.logs) {
        const ev = log.address === sys.rebalancer.target ? sys.rebalancer.interface.parseLog(log) : null;
        if (ev?.name !== "Rebalanced") continue;
        rebalances++;
        fees += ev.args.feeUsd;
        const moved = [
          ev.args.toppedUpUsd > 0n ? `topped up ${usd(ev.args.toppedUpUsd)} USD` : "",
          ev.args.reducedNotionalUsd > 0n ? `reduced ${usd(ev.args.reducedNotionalUsd)} USD of notional` : "",
          ev.args.releasedUsd > 0n ? `released ${usd(ev.args.releasedUsd)} USD` : "",
        ].filter((x) => x !== "").join(", ");
        events.push(`rebalanced #${guarded}: ${actionName(ev.args.action)} (${moved}), health ${health(ev.args.healthBefore)} → ${health(ev.args.healthAfter)}, fee ${usd(ev.args.feeUsd)}, gas ${receipt!.gasUsed}`);
      }
    }
    // The liquidator acts on healths read after the keeper's rebalance: a rescued account is no longer below 1.
    const [healthsNow] = await sys.engine.healthBatch([plain, guarded]);
    for (const [id, h] of [[plain, healthsNow[0]], [guarded, healthsNow[1]]] as const) {
      if (h >= 10n ** 18n) continue;
      const before = await sys.engine.keeperRewardsOf(keeper.address);
      await (await sys.engine.connect(keeper).liquidate(id)).wait();
      const paid = (await sys.engine.keeperRewardsOf(keeper.address)) - before;
      const pos = await sys.engine.position(id, sys.ethMarket);
      liquidations.set(id, liquidations.get(id)! + 1);
      events.push(`liquidated #${id}: keeper credited ${usd(paid * 10n ** 12n)} USDC, ${usd(pos.size, 4)} ETH left`);
    }
    if (i % 12 === 0 || events.length > 0) console.log(`${row}   ${events.join("; ")}`);
  }

  const pos = await sys.engine.position(guarded, sys.ethMarket);
  const st = await sys.engine.accountState(guarded);
  const plainPos = await sys.engine.position(plain, sys.ethMarket);
  console.log("");
  console.log(`Account ${plain} (no policy): ${liquidations.get(plain)} liquidations, ${usd(plainPos.size, 4)} ETH left, equity ${usd((await sys.engine.accountState(plain)).equity)} USD`);
  console.log(`Account ${guarded} (policy): ${liquidations.get(guarded)} liquidations, ${rebalances} rebalances, ${usd(fees)} USD of keeper fees`);
  console.log(`  position ${usd(pos.size, 4)} ETH, equity ${usd(st.equity)} USD, health ${health(st.health)}`);
  console.log(`  reserve left: ${usd((await sys.vault.reserveOf(guarded, sys.usdc)) * 10n ** 12n)} USDC, ${usd(await sys.vault.reserveOf(guarded, sys.weth), 4)} WETH`);
  console.log(`Insurance fund: ${usd((await sys.pool.insuranceBalance()) * 10n ** 12n)} USDC`);
  const claimable = await sys.engine.keeperRewardsOf(keeper.address);
  if (claimable !== 0n) {
    await (await sys.engine.connect(keeper).claimKeeperRewards(keeper.address)).wait();
    console.log(`Keeper claimed ${usd(claimable * 10n ** 12n)} USDC of credited fees and rewards`);
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
