/**
 * sim:backtest and sim:sweep refuse bad input with one line naming the file, row or option — before anything is
 * deployed (the chain's block number is unchanged) — and a valid short run writes both report files.
 */
import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import hre from "hardhat";

/** Runs a task and returns the message of the one-line error it must fail with. */
async function failure(task: string, args: Record<string, unknown>): Promise<string> {
  const before = await hre.ethers.provider.getBlockNumber();
  try {
    await hre.run(task, { quiet: true, ...args });
  } catch (e) {
    expect((e as Error).constructor.name, (e as Error).stack).to.equal("HardhatPluginError");
    const msg = (e as Error).message;
    expect(msg.split("\n")).to.have.length(1);
    expect(await hre.ethers.provider.getBlockNumber(), "nothing deployed").to.equal(before);
    return msg;
  }
  throw new Error(`${task} did not fail`);
}

describe("Sim › tasks: bad input is one line and deploys nothing", function () {
  let dir: string;
  const csv = (name: string, text: string) => {
    const file = path.join(dir, name);
    fs.writeFileSync(file, text);
    return file;
  };

  const quiet = process.env.BALLAST_TASKS_QUIET;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-sim-"));
    process.env.BALLAST_TASKS_QUIET = "true";
  });
  after(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    if (quiet === undefined) delete process.env.BALLAST_TASKS_QUIET;
    else process.env.BALLAST_TASKS_QUIET = quiet;
  });

  it("a missing file", async () => {
    const file = path.join(dir, "nope.csv");
    expect(await failure("sim:backtest", { data: file })).to.equal(`${file}: no such file — give a path to a timestamp,price CSV`);
  });

  it("a bad header, non-increasing timestamps, a non-positive price: file, row and problem", async () => {
    const header = csv("header.csv", "time,close\n1667606400,1657.2\n");
    expect(await failure("sim:backtest", { data: header })).to.equal(`${header}, row 1: expected the header "timestamp,price", found "time,close"`);
    const order = csv("order.csv", "timestamp,price\n1667606400,1657.2\n1667610000,1652.8\n1667610000,1650\n");
    expect(await failure("sim:backtest", { data: order })).to.equal(`${order}, row 4: timestamp 1667610000 is not after the previous row's 1667610000`);
    const zero = csv("zero.csv", "timestamp,price\n1667606400,1657.2\n1667610000,0\n");
    expect(await failure("sim:sweep", { data: zero })).to.equal(`${zero}, row 3: price 0 is not positive (prices must be > 0)`);
    const negative = csv("negative.csv", "timestamp,price\n1667606400,1657.2\n1667610000,-3\n");
    expect(await failure("sim:backtest", { data: negative })).to.equal(`${negative}, row 3: price -3 is not positive (prices must be > 0)`);
  });

  it("options: policy, actions, sampling, accounts, leverages, a path too short for the warm-up", async () => {
    expect(await failure("sim:backtest", { policy: "1.6,1.3" })).to.equal("policy top-up+reduce 1.6→1.3: target must be above the trigger");
    expect(await failure("sim:backtest", { policy: "0.9,1.6" })).to.equal("policy top-up+reduce 0.9→1.6: trigger must be above 1 (health 1 is liquidation)");
    expect(await failure("sim:backtest", { policy: "1.3" })).to.equal('--policy "1.3": give trigger,target[,release], e.g. 1.3,1.6 or 1.3,1.6,3');
    expect(await failure("sim:backtest", { policy: "1.3,1.6", actions: "top-up,sell" })).to.equal('--actions: "sell" is not an action — use top-up, reduce, release or reduce-first, comma-separated');
    expect(await failure("sim:backtest", { policy: "1.3,1.6", actions: "release" })).to.equal("policy release 1.3→1.6: the release action needs a release ratio (--policy trigger,target,release)");
    expect(await failure("sim:backtest", { policy: "1.3,1.31" })).to.equal("policy top-up+reduce 1.3→1.31: target must be at least trigger + 0.05");
    expect(await failure("sim:backtest", { policy: "1.3,11" })).to.equal("policy top-up+reduce 1.3→11: target must be at most 10");
    expect(await failure("sim:backtest", { policy: "1.3,1.6,1.62", actions: "release" })).to.equal("policy release 1.3→1.6 ↑1.62: release must be at least target + 0.05");
    expect(await failure("sim:sweep", { triggers: "1.3", targets: "1.32" })).to.equal("policy top-up 1.3→1.32: target must be at least trigger + 0.05");
    expect(await failure("sim:backtest", { gasGwei: "600" })).to.equal("--gas-gwei 600: at most 500 (the replay's keeper caps its fee there)");
    expect(await failure("sim:backtest", { gasGwei: "1e9" })).to.equal('--gas-gwei "1e9" is not a decimal number: write it like 1.5 or 250');
    expect(await failure("sim:backtest", { policy: "1.3,1.6", actions: "top-up,reduce-first" })).to.equal("--actions top-up,reduce-first: reduce-first orders a reduce: add reduce");
    expect(await failure("sim:backtest", { sampling: "daily" })).to.equal('--sampling "daily": use close or chainlink');
    expect(await failure("sim:backtest", { accounts: "0" })).to.equal('--accounts "0": give a whole number in 1..2000');
    expect(await failure("sim:backtest", { leverages: "2,x" })).to.equal('--leverages: "x" is not a leverage — give numbers in 1..50 with at most one decimal, e.g. 2,3,5');
    expect(await failure("sim:sweep", { triggers: "2", targets: "1.6" })).to.equal("--triggers 2 --targets 1.6: no pair has target above trigger");
    const short = csv("short.csv", "timestamp,price\n1667606400,1657.2\n1667610000,1652.8\n1667613600,1650\n");
    expect(await failure("sim:backtest", { data: short, warmup: "2" })).to.equal("the path covers 2.0 h: too short for a 2 h warm-up and a replay after it");
    expect(await failure("sim:backtest", { warmup: "0" })).to.equal('--warmup "0": give a whole number in 1..8760');
  });

  it("a valid 48-row file through the task: a quarter of it warms up, 8 accounts replay the rest; both reports written", async () => {
    // the first 48 hourly closes of the FTX file (47 h): the default warm-up is a quarter of it, 11 h
    const rows = fs.readFileSync(path.join(__dirname, "..", "..", "data", "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv"), "utf8").trim().split("\n");
    const data = csv("ftx48.csv", rows.slice(0, 49).join("\n") + "\n");
    const out = path.join(dir, "out");
    const report = await hre.run("sim:backtest", { data, accounts: "8", leverages: "2,5.5", scenario: "ftx48", out, quiet: true });
    expect(report.steps.time).to.have.length(48);
    expect(report.steps.openStep).to.equal(11);
    expect(report.accounts.map((a: { label: string }) => a.label)).to.deep.equal([
      "2x long control",
      "2x long top-up 1.3→1.6",
      "2x long reduce 1.3→1.6",
      "2x long top-up+reduce+reduce-first 1.3→1.6",
      "2x short control",
      "2x short top-up 1.3→1.6",
      "2x short reduce 1.3→1.6",
      "2x short top-up+reduce+reduce-first 1.3→1.6",
    ]);
    expect(report.accounts.every((a: { opened: boolean }) => a.opened)).to.equal(true);
    // every account has no health before its order fills (steps 0..11), then one at every later step
    for (const a of report.accounts as { health: (string | null)[] }[]) {
      expect(a.health.slice(0, 12).every((h) => h === null)).to.equal(true);
      expect(a.health.slice(13).every((h) => h !== null)).to.equal(true);
    }
    expect(JSON.parse(fs.readFileSync(path.join(out, "ftx48.json"), "utf8"))).to.deep.equal(report);
    expect(fs.readFileSync(path.join(out, "ftx48.html"), "utf8")).to.include('<canvas id="chart-health">');
  });

  it("--ohlc replays each bar through its low and high; --sampling chainlink publishes a feed's rounds: the steps are the path's", async () => {
    // 48 hourly closes of 12-13 Mar 2020 and the same hours' Binance bars (data/ohlc/)
    const rows = fs.readFileSync(path.join(__dirname, "..", "..", "data", "eth_usdt_binance_1h_2020-03-09_2020-03-17.csv"), "utf8").trim().split("\n");
    const data = csv("mar2020.csv", [rows[0], ...rows.slice(73, 121)].join("\n") + "\n");
    const ohlc = path.join(__dirname, "..", "..", "data", "ohlc", "andrewsiah_Binance_ETHUSDT_1h_crash_windows.csv");
    const { buildPath } = await import("../../sim/path");
    const out = path.join(dir, "out");
    const bars = await hre.run("sim:backtest", { data, ohlc, accounts: "2", leverages: "2", scenario: "mar2020-ohlc", out, quiet: true });
    const barPath = buildPath({ data, ohlc, sampling: "close" }).points;
    expect(barPath).to.have.length(4 * 48);
    expect(bars.steps.time).to.deep.equal(barPath.map((p) => p.time));
    expect(bars.steps.price).to.deep.equal(barPath.map((p) => Number(p.price) / 1e8));
    expect(bars.data.source).to.match(/^prices from the OHLC bars: /);
    const feed = await hre.run("sim:backtest", { data, sampling: "chainlink", accounts: "2", leverages: "2", scenario: "mar2020-feed", out, quiet: true });
    const feedPath = buildPath({ data, sampling: "chainlink" }).points;
    expect(feed.steps.time).to.deep.equal(feedPath.map((p) => p.time));
    // more rounds than closes: a 0.5 % deviation is crossed many times an hour in that crash
    expect(feedPath.length).to.be.greaterThan(48);
    expect(feed.data.sampling).to.equal("chainlink");
  });
});
