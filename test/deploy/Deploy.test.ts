/**
 * Deployment (deploy/deploy.ts, `npx hardhat deploy`): the numbered steps on the in-process network, idempotent
 * (a second run sends nothing) and resumable (after a failed step only what is missing is sent), the record they
 * write, the live networks' parameters, and the same command against a local `hardhat node` it starts itself.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, spawnSync } from "node:child_process";
import { expect } from "chai";
import { ethers } from "hardhat";

import { deployBallast, DeployError } from "../../deploy/deploy";
import { NETWORKS, networkParams, type NetworkParams } from "../../deploy/networks";
import { DEFAULT_RISK, MAJOR_MARKET, wad } from "../../deploy/params";
import { DEPLOYMENT_SCHEMA, loadDeployment } from "../../lib/deployment";
import { connectBallast } from "../../lib/connect";
import { freePort } from "../e2e/runbook";
import { createPoolAtPrice, deployUniswapV3Factory } from "../../lib/uniswapV3";
import { FlashLiquidator__factory } from "../../typechain-types";

const tmp = () => fs.mkdtempSync(path.join(os.tmpdir(), "ballast-deploy-"));

describe("deploy: numbered, idempotent, resumable steps", function () {
  it("deploys the local system, wired, and records it", async () => {
    const [deployer] = await ethers.getSigners();
    const dir = tmp();
    const lines: string[] = [];
    const rec = await deployBallast(deployer, "hardhat", NETWORKS.hardhat, { dir, fresh: true, log: (l) => lines.push(l) });
    expect(lines.map((l) => l.split(":")[0])).to.deep.equal([
      "01 tokens", "02 feeds", "03 oracle", "04 pool", "05 engine", "06 sequencer", "07 feeds set", "08 assets", "09 risk", "10 markets", "11 flash liquidator", "12 record",
    ]);
    expect(loadDeployment("hardhat", dir)).to.deep.equal(rec);
    expect([rec.schema, rec.network, rec.chainId, rec.deployer]).to.deep.equal([DEPLOYMENT_SCHEMA, "hardhat", 31337, deployer.address]);
    expect(Object.keys(rec.assets)).to.deep.equal(["USDC", "WETH", "WBTC"]);
    expect(rec.markets).to.deep.equal({ ETH: { id: 0, asset: rec.assets.WETH }, BTC: { id: 1, asset: rec.assets.WBTC } });
    expect(Object.keys(rec.parts).sort()).to.deep.equal(
      ["GovernanceLogic", "LiquidationLogic", "MarginEngineCustody", "MarginEngineExtension", "RebalanceLogic", "TradeLogic"],
    );
    const b = connectBallast(rec, deployer);
    expect(await b.pool.engine()).to.equal(rec.engine);
    expect(await b.engine.extension()).to.equal(rec.parts.MarginEngineExtension);
    expect(await b.vault.listedAssets()).to.deep.equal([rec.assets.USDC, rec.assets.WETH, rec.assets.WBTC]);
    expect((await b.oracle.feedParams(rec.assets.WETH)).feed).to.equal(rec.feeds.WETH);
    expect(await b.oracle.price(rec.assets.WETH)).to.equal(wad("2000"));
    expect(await b.oracle.price(rec.assets.WBTC)).to.equal(wad("30000"));
    const risk = await b.engine.riskParams();
    for (const k of Object.keys(DEFAULT_RISK) as (keyof typeof DEFAULT_RISK)[]) expect(BigInt(risk[k] as bigint), k).to.equal(BigInt(DEFAULT_RISK[k]));
    expect((await b.engine.marketParams(0)).feeRate).to.equal(MAJOR_MARKET.feeRate);
    expect(await b.engine.orderFee()).to.equal(NETWORKS.hardhat.keeper.orderFee);
    expect(rec.startBlock).to.be.lessThan(await ethers.provider.getBlockNumber());
    expect(await ethers.provider.getCode(rec.engine, rec.startBlock)).to.equal("0x");
  });

  it("a second run sends nothing; a journal that lost its config steps re-checks the chain and sends nothing either", async () => {
    const [deployer] = await ethers.getSigners();
    const dir = tmp();
    const rec = await deployBallast(deployer, "hardhat", NETWORKS.hardhat, { dir, fresh: true });
    const nonce = await deployer.getNonce();
    const lines: string[] = [];
    expect(await deployBallast(deployer, "hardhat", NETWORKS.hardhat, { dir, log: (l) => lines.push(l) })).to.deep.equal(rec);
    expect(lines.filter((l) => l.endsWith("done before")).length).to.equal(11);
    // Steps 06–10 forgotten: each reads the chain (feeds, listings, risk, markets) and finds its work done.
    const journal = path.join(dir, "hardhat.steps.json");
    const j = JSON.parse(fs.readFileSync(journal, "utf8"));
    for (const k of ["06 sequencer", "07 feeds set", "08 assets", "09 risk", "10 markets"]) delete j.steps[k];
    fs.writeFileSync(journal, JSON.stringify(j));
    expect(await deployBallast(deployer, "hardhat", NETWORKS.hardhat, { dir })).to.deep.equal(rec);
    expect(await deployer.getNonce()).to.equal(nonce);
  });

  it("resumes after a failed step, sending only what is missing", async () => {
    const [deployer] = await ethers.getSigners();
    const dir = tmp();
    const local = NETWORKS.hardhat;
    // The BTC market's fee above the 1 % bound: createMarket reverts at step 10, after the ETH market.
    const broken: NetworkParams = {
      ...local,
      markets: [local.markets[0], { ...local.markets[1], params: { ...MAJOR_MARKET, feeRate: wad("0.02") } }],
    };
    await expect(deployBallast(deployer, "hardhat", broken, { dir, fresh: true })).to.be.rejected;
    const j = JSON.parse(fs.readFileSync(path.join(dir, "hardhat.steps.json"), "utf8"));
    expect(Object.keys(j.steps)).to.deep.equal(["01 tokens", "02 feeds", "03 oracle", "04 pool", "05 engine", "06 sequencer", "07 feeds set", "08 assets", "09 risk"]);
    const nonce = await deployer.getNonce();
    const rec = await deployBallast(deployer, "hardhat", local, { dir });
    expect(await deployer.getNonce()).to.equal(nonce + 1); // the BTC market alone
    expect(rec.markets).to.deep.equal({ ETH: { id: 0, asset: rec.assets.WETH }, BTC: { id: 1, asset: rec.assets.WBTC } });
    expect(rec.engine).to.equal(j.steps["05 engine"].engine);
  });

  it("deploys the FlashLiquidator where the network names a Uniswap V3 pool (checked against its factory) and records it", async () => {
    const [deployer] = await ethers.getSigners();
    const dir = tmp();
    const first = await deployBallast(deployer, "hardhat", NETWORKS.hardhat, { dir, fresh: true });
    expect(first.parts.flashLiquidator).to.equal(undefined);
    // a Uniswap V3 factory (the npm artifact's bytecode) with a WETH/USDC 0.05 % pool and a WBTC/USDC one
    const factory = await deployUniswapV3Factory(deployer);
    const pool = await createPoolAtPrice(factory, first.assets.WETH, first.assets.USDC, 500, wad("2000"));
    const btcPool = await createPoolAtPrice(factory, first.assets.WBTC, first.assets.USDC, 500, wad("30000"));
    const fl = { factory: await factory.getAddress(), pool: await pool.getAddress(), collateral: "WETH" };
    await expect(deployBallast(deployer, "hardhat", { ...NETWORKS.hardhat, flashLiquidator: { ...fl, pool: await btcPool.getAddress() } }, { dir })).to.be.rejectedWith(
      DeployError,
      `${await btcPool.getAddress()} is not the factory's WETH/USDC pool at fee 500 (that is ${fl.pool}): fix deploy/networks.ts`,
    );
    const lines: string[] = [];
    const rec = await deployBallast(deployer, "hardhat", { ...NETWORKS.hardhat, flashLiquidator: fl }, { dir, log: (l) => lines.push(l) });
    expect(lines.filter((l) => !l.endsWith("done before")).map((l) => l.split(":")[0])).to.deep.equal(["11 flash liquidator", "12 record"]);
    expect(rec.engine).to.equal(first.engine);
    expect(rec.parts.flashLiquidatorPool).to.equal(fl.pool);
    const flash = FlashLiquidator__factory.connect(rec.parts.flashLiquidator, deployer);
    expect([await flash.engine(), await flash.factory(), await flash.settlementAsset()]).to.deep.equal([rec.engine, fl.factory, rec.assets.USDC]);
    expect(loadDeployment("hardhat", dir).parts.flashLiquidator).to.equal(rec.parts.flashLiquidator);
    // a second run sends nothing
    const nonce = await deployer.getNonce();
    expect(await deployBallast(deployer, "hardhat", { ...NETWORKS.hardhat, flashLiquidator: fl }, { dir })).to.deep.equal(rec);
    expect(await deployer.getNonce()).to.equal(nonce);
  });

  it("refuses parameters of another chain, by name", async () => {
    const [deployer] = await ethers.getSigners();
    await expect(deployBallast(deployer, "mainnet", NETWORKS.mainnet, { dir: tmp() })).to.be.rejectedWith(
      DeployError,
      'network "mainnet" answers with chain id 31337, its parameters are for chain 1: check the RPC URL',
    );
    expect(() => networkParams("goerli")).to.throw('no deployment parameters for network "goerli": use one of hardhat, localhost, mainnet, sepolia, arbitrum, base');
  });

  it("live networks: real feeds with heartbeats, sequencer feeds on L2s, checksummed addresses, a feed for every market", () => {
    const live = ["mainnet", "sepolia", "arbitrum", "base"];
    expect(live.map((n) => NETWORKS[n].chainId)).to.deep.equal([1, 11_155_111, 42_161, 8_453]);
    for (const n of live) {
      const p = NETWORKS[n];
      expect(p.local, n).to.equal(false);
      const addresses = [p.settlement, ...p.assets].flatMap((a) => [
        "address" in a.token ? a.token.address : "",
        a.feed && "proxy" in a.feed ? a.feed.proxy : "",
      ]).filter((x) => x !== "");
      for (const a of [...addresses, ...(p.sequencer ? [p.sequencer.feed] : [])]) expect(ethers.getAddress(a), `${n} ${a}`).to.equal(a);
      for (const m of p.markets) {
        const asset = p.assets.find((a) => a.symbol === m.asset)!;
        expect(asset.feed && "proxy" in asset.feed, `${n} ${m.symbol}`).to.equal(true);
      }
      expect(p.sequencer !== undefined, n).to.equal(n === "arbitrum" || n === "base");
    }
    const feedOf = (n: string, s: string) => NETWORKS[n].assets.find((a) => a.symbol === s)!;
    expect((feedOf("mainnet", "WETH").feed as { proxy: string }).proxy).to.equal("0x5f4eC3Df9cbd43714FE2740f5E3616155c5b8419");
    expect(feedOf("mainnet", "WETH").feedConfig!.heartbeat).to.equal(5_400); // 1 h heartbeat + 30 min
    expect(feedOf("arbitrum", "WETH").feedConfig!.heartbeat).to.equal(90_000); // 24 h + 1 h
    expect(feedOf("base", "WETH").feedConfig!.heartbeat).to.equal(3_000); // 20 min + 30 min
    expect(NETWORKS.arbitrum.sequencer).to.deep.equal({ feed: "0xFdB631F5EE196F0ed6FAa767959853A9F217697D", gracePeriod: 3_600 });
    expect(NETWORKS.mainnet.keeper.orderFee).to.equal(10_000_000n);
    // Uniswap V3's mainnet factory and WETH/USDC 0.05 % pool for the FlashLiquidator; none elsewhere yet
    expect(NETWORKS.mainnet.flashLiquidator).to.deep.equal({
      factory: "0x1F98431c8aD98523631AE4a59f267346ea31F984",
      pool: "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640",
      collateral: "WETH",
    });
    for (const a of [NETWORKS.mainnet.flashLiquidator!.factory, NETWORKS.mainnet.flashLiquidator!.pool]) expect(ethers.getAddress(a)).to.equal(a);
    expect(live.filter((n) => NETWORKS[n].flashLiquidator !== undefined)).to.deep.equal(["mainnet"]);
  });
});

describe("deploy: the same command against a local `hardhat node`", function () {
  this.timeout(300_000);
  const root = path.resolve(__dirname, "..", "..");

  it("`npx hardhat deploy --network localhost` deploys to a node it did not start, and a second run sends nothing", async () => {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const node = spawn("npx", ["hardhat", "node", "--port", String(port)], { cwd: root, stdio: ["ignore", "pipe", "pipe"], detached: true });
    try {
      const body = JSON.stringify({ jsonrpc: "2.0", id: 1, method: "eth_chainId", params: [] });
      for (let i = 0; ; i++) {
        try {
          if ((await fetch(url, { method: "POST", headers: { "content-type": "application/json" }, body })).ok) break;
        } catch {
          // not listening yet
        }
        if (i > 120) throw new Error("hardhat node did not start");
        await new Promise((r) => setTimeout(r, 500));
      }
      const provider = new ethers.JsonRpcProvider(url, 31337, { staticNetwork: true });
      const dir = tmp();
      const env = { ...process.env, BALLAST_LOCALHOST_URL: url, BALLAST_DEPLOYMENTS_DIR: dir };
      const first = spawnSync("npx", ["hardhat", "deploy", "--network", "localhost"], { cwd: root, env, encoding: "utf8" });
      expect(first.status, first.stderr).to.equal(0);
      expect(first.stdout).to.include("12 record");
      const rec = loadDeployment("localhost", dir);
      expect(rec.chainId).to.equal(31337);
      expect(await provider.getCode(rec.engine)).to.not.equal("0x");
      const nonce = await provider.getTransactionCount(rec.deployer);
      const second = spawnSync("npx", ["hardhat", "deploy", "--network", "localhost"], { cwd: root, env, encoding: "utf8" });
      expect(second.status, second.stderr).to.equal(0);
      expect(second.stdout.match(/done before/g)?.length).to.equal(11);
      expect(await provider.getTransactionCount(rec.deployer)).to.equal(nonce);
      provider.destroy();
    } finally {
      process.kill(-node.pid!, "SIGTERM");
    }
  });
});
