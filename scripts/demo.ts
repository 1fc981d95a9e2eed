/**
 * Demo on the in-process Hardhat network (no RPC, no keys): deploys the whole system, seeds the LP pool,
 * opens a 5x ETH long and replays the real Binance ETH/USDT hourly closes of 9–16 March 2020 ("Black
 * Thursday", ../shared/data) through the real contracts until a keeper liquidates the account.
 */
import { ethers, network } from "hardhat";
import { deployLocalSystem } from "../deploy/system";
import { CRYPTO_FEED } from "../deploy/params";
import { loadPriceCsv } from "../lib/prices";
import { health, usd } from "../lib/format";

const FILE = "eth_usdt_binance_1h_2020-03-09_2020-03-17.csv";
const USDC = (n: bigint) => n * 10n ** 6n;

async function main() {
  if (network.name !== "hardhat") throw new Error(`the demo runs on the in-process network; got --network ${network.name}`);
  const bars = loadPriceCsv(FILE, 8);
  const [deployer, lp, trader, keeper] = await ethers.getSigners();
  const sys = await deployLocalSystem(deployer, { eth: bars[0].price, btc: 7_900n * 10n ** 8n });
  // The real hourly path moves up to ~21 % in one bar: widen the breaker so the replay is not halted.
  await (await sys.oracle.setFeed(sys.weth, { feed: sys.ethFeed, ...CRYPTO_FEED, maxJumpBps: 5000 })).wait();
  await (await sys.oracle.poke(sys.weth)).wait();

  console.log("Ballast demo — in-process Hardhat network");
  console.log(`  Vault        ${await sys.vault.getAddress()}`);
  console.log(`  OracleRouter ${await sys.oracle.getAddress()}`);
  console.log(`  Pool         ${await sys.pool.getAddress()}`);
  console.log(`  MarginEngine ${await sys.engine.getAddress()}`);

  await (await sys.usdc.mint(lp.address, USDC(1_000_000n))).wait();
  await (await sys.usdc.connect(lp).approve(sys.pool, USDC(1_000_000n))).wait();
  await (await sys.pool.connect(lp).deposit(USDC(1_000_000n), lp.address)).wait();
  console.log(`  LP deposited 1,000,000 USDC into the pool`);

  const margin = USDC(10_000n);
  await (await sys.vault.connect(trader).createAccount()).wait();
  const accountId = await sys.vault.accountCount();
  await (await sys.usdc.mint(trader.address, margin)).wait();
  await (await sys.usdc.connect(trader).approve(sys.vault, margin)).wait();
  await (await sys.vault.connect(trader).depositMargin(accountId, sys.usdc, margin)).wait();
  // 5x: notional 50,000 USD at the first close. size = 50,000 / price (WAD).
  const price0 = bars[0].price * 10n ** 10n;
  const size = (50_000n * 10n ** 18n * 10n ** 18n) / price0;
  await (await sys.engine.connect(trader).modifyPosition(accountId, sys.ethMarket, size, price0 * 2n)).wait();
  let st = await sys.engine.accountState(accountId);
  console.log(`  Account ${accountId}: 10,000 USDC margin, long ${usd(size, 4)} ETH at ${usd(price0)} (5x), health ${health(st.health)}`);
  console.log("");
  console.log(`Replaying ${bars.length} hourly closes from ${FILE}`);
  console.log("  time (UTC)         ETH price    equity        maint. margin  health");

  const t0 = bars[0].timestamp;
  const chainStart = (await ethers.provider.getBlock("latest"))!.timestamp + 60;
  for (let i = 1; i < bars.length; i++) {
    const bar = bars[i];
    await network.provider.send("evm_setNextBlockTimestamp", [chainStart + (bar.timestamp - t0)]);
    await (await sys.ethFeed.setAnswer(bar.price)).wait();
    await (await sys.oracle.poke(sys.weth)).wait();
    st = await sys.engine.accountState(accountId);
    const when = new Date(bar.timestamp * 1000).toISOString().slice(0, 16).replace("T", " ");
    const line = `  ${when}   ${usd(bar.price * 10n ** 10n).padStart(9)}  ${usd(st.equity).padStart(11)}  ${usd(st.maintenanceMargin).padStart(13)}  ${health(st.health)}`;
    if (i % 12 === 0 || st.health < 10n ** 18n) console.log(line);
    if (st.health < 10n ** 18n) {
      const before = await sys.usdc.balanceOf(keeper.address);
      const receipt = await (await sys.engine.connect(keeper).liquidate(accountId)).wait();
      const paid = (await sys.usdc.balanceOf(keeper.address)) - before;
      const after = await sys.engine.accountState(accountId);
      const pos = await sys.engine.position(accountId, sys.ethMarket);
      console.log("");
      console.log(`  Liquidated at ${when}: health ${health(st.health)} < 1, keeper paid ${usd(paid * 10n ** 12n)} USDC, gas ${receipt!.gasUsed}`);
      console.log(`  Left: position ${usd(pos.size, 4)} ETH, equity ${usd(after.equity)} USD, health ${health(after.health)}`);
      console.log(`  Insurance fund: ${usd((await sys.pool.insuranceBalance()) * 10n ** 12n)} USDC`);
      if (pos.size === 0n) break;
    }
  }
  console.log("");
  console.log("Automatic rebalancing (top-up from reserve, minimal reduce, release) arrives with the Rebalancer module.");
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
