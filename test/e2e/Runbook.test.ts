/**
 * docs/RUNBOOK.md, run as written. The commands are read from the runbook itself (the fenced blocks marked
 * `<!-- e2e:NAME -->`) and run as subprocesses from the repository root, in the runbook's order; each block's marked
 * expected output (`e2e:NAME:out`) must appear in what it printed, and the chain is checked to the unit through ethers.
 *
 * What differs from a user's session, and only this:
 * - the node (`e2e:node`, run with `--hostname 127.0.0.1 --port <free port>` appended) listens on a free loopback port,
 *   given to the tasks as BALLAST_LOCALHOST_URL; the deployment record goes to a temporary BALLAST_DEPLOYMENTS_DIR;
 * - `keeper.json` is a file in the temporary directory, and after the runbook's `cp` the test sets its rpcUrls (the
 *   node), deploymentsDir, dbPath (the temporary directory) and metricsPort (another free port, replacing 9464 in the
 *   commands and the expected outputs);
 * - the keeper runs in the background (its terminal is a log file) and is stopped with SIGTERM, what Ctrl-C sends;
 * - the Automation fee-recipient block (written for `--network arbitrum` and a placeholder address) runs against the
 *   local deployment with the keeper's address.
 * The node and the keeper are stopped in `after`, failure or not (their whole process groups).
 * About 75 s on 2 cores: the node, 15 Hardhat task processes (~3 s each) and the keeper's start (compile check +
 * ts-node, ~10 s).
 */
import { expect } from "chai";
import type { ChildProcess } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { AbiCoder, JsonRpcProvider, Wallet } from "ethers";

import { loadDeployment, type DeploymentRecord } from "../../lib/deployment";
import { IMarginEngine__factory, IRebalancer__factory, IVault__factory, LiquidityPool__factory, MockERC20__factory } from "../../typechain-types";
import { freePort, missingLines, parseRunbook, runScript, startBackground, stop, waitFor, type Ran } from "./runbook";

const ROOT = path.resolve(__dirname, "..", "..");
const RUNBOOK = path.join(ROOT, "docs", "RUNBOOK.md");
const USDC = (n: bigint) => n * 10n ** 6n;
const WAD = 10n ** 18n;

/** `text` without ANSI escape sequences (colours, bold). */
const stripAnsi = (text: string) => text.replace(/\u001b\[[0-9;]*m/g, "");

describe("docs/RUNBOOK.md, end to end against a `hardhat node`", function () {
  this.timeout(300_000);

  const blocks = parseRunbook(fs.readFileSync(RUNBOOK, "utf8"));
  let tmp: string;
  let nodePort: number;
  let metricsPort: number;
  let url: string;
  let env: NodeJS.ProcessEnv;
  let node: ChildProcess | undefined;
  let keeper: ChildProcess | undefined;
  let provider: JsonRpcProvider;
  let rec: DeploymentRecord;
  let nodeLog: string;
  let keeperLog: string;
  const trader = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"; // Account #1 (the runbook's --from 1)
  const lp = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"; // Account #0

  /** A marked block, with the test's substitutions (see the header). */
  const block = (name: string): string => {
    const b = blocks.get(name);
    if (!b) throw new Error(`docs/RUNBOOK.md has no block marked e2e:${name}`);
    return b.body
      .replace(/(?<![\w/.-])keeper\.json\b/g, path.join(tmp, "keeper.json"))
      .replace(/\b9464\b/g, String(metricsPort));
  };
  const expectOut = (name: string, output: string) => {
    const missing = missingLines(output, block(`${name}:out`));
    expect(missing, `expected lines of e2e:${name}:out missing from:\n${output}`).to.deep.equal([]);
  };
  /** Runs a marked command block; it must exit 0 and print its expected output. */
  const run = async (name: string, script = block(name)): Promise<Ran> => {
    const r = await runScript(script, { cwd: ROOT, env, timeoutMs: 120_000 });
    expect(r.code, `e2e:${name} exited ${r.code}\n${r.stdout}\n${r.stderr}`).to.equal(0);
    if (blocks.has(`${name}:out`)) expectOut(name, r.stdout);
    return r;
  };
  // Without ANSI colours: with CI set, Hardhat colours its output even into a file.
  const logOf = (file: string) => (fs.existsSync(file) ? stripAnsi(fs.readFileSync(file, "utf8")) : "");

  before(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-runbook-"));
    nodePort = await freePort();
    metricsPort = await freePort();
    url = `http://127.0.0.1:${nodePort}`;
    // No colours in what the commands print (CI=true turns them on), so outputs compare as the runbook shows them.
    env = { ...process.env, BALLAST_LOCALHOST_URL: url, BALLAST_DEPLOYMENTS_DIR: tmp, FORCE_COLOR: "0", NO_COLOR: "1" };
    for (const k of Object.keys(env)) if (k.startsWith("KEEPER_") || k === "HARDHAT_NETWORK" || k === "BALLAST_TASKS_QUIET") delete env[k];
    nodeLog = path.join(tmp, "node.log");
    keeperLog = path.join(tmp, "keeper.log");
    provider = new JsonRpcProvider(url, 31337, { staticNetwork: true });
  });

  after(async () => {
    if (keeper) await stop(keeper, "SIGTERM");
    if (node) await stop(node, "SIGTERM");
    provider?.destroy();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it("2. starts the node (e2e:node) and it prints the test accounts the runbook names", async () => {
    expect(block("node")).to.equal("npx hardhat node");
    node = startBackground(`${block("node")} --hostname 127.0.0.1 --port ${nodePort}`, { cwd: ROOT, env, logFile: nodeLog });
    await waitFor("the node to answer eth_chainId", async () => {
      try {
        return (await provider.send("eth_chainId", [])) as string;
      } catch {
        return undefined;
      }
    }, 60_000, 500);
    await waitFor("the node's account list", () => (/Account #19:/.test(logOf(nodeLog)) ? true : undefined), 10_000);
    const expected = block("node:out").replace("http://0.0.0.0:8545/", `http://127.0.0.1:${nodePort}/`);
    expect(missingLines(logOf(nodeLog), expected), logOf(nodeLog)).to.deep.equal([]);
    // The keeper's key in the runbook is the one the node prints for Account #9.
    const printed = /Account #9: (0x[0-9a-fA-F]{40}).*\nPrivate Key: (0x[0-9a-f]{64})/.exec(logOf(nodeLog));
    const inRunbook = /KEEPER_PRIVATE_KEY=(0x[0-9a-f]{64})/.exec(block("keeper"));
    expect(inRunbook?.[1]).to.equal(printed?.[2]);
    expect(new Wallet(inRunbook![1]).address).to.equal(printed?.[1]);
  });

  it("3. deploys (e2e:deploy): the record is written and the engine is on chain", async () => {
    await run("deploy");
    expect(fs.existsSync(path.join(tmp, "localhost.json"))).to.equal(true);
    rec = loadDeployment("localhost", tmp);
    expect(rec.chainId).to.equal(31337);
    expect(rec.network).to.equal("localhost");
    expect(rec.deployer).to.equal(lp);
    expect(Object.keys(rec.markets)).to.deep.equal(["ETH", "BTC"]);
    for (const a of [rec.engine, rec.oracle, rec.pool, rec.assets.USDC]) expect(await provider.getCode(a)).to.not.equal("0x");
  });

  it("4. funds the wallets with mock USDC (e2e:fund)", async () => {
    await run("fund");
    const usdc = MockERC20__factory.connect(rec.assets.USDC, provider);
    expect(await usdc.balanceOf(lp)).to.equal(USDC(100_000n));
    expect(await usdc.balanceOf(trader)).to.equal(USDC(10_000n));
  });

  it("5. provides LP capital (e2e:lp)", async () => {
    await run("lp");
    const pool = LiquidityPool__factory.connect(rec.pool, provider);
    expect(await pool.balanceOf(lp)).to.equal(100_000n * 10n ** 12n); // shares have 12 decimals
    expect(await pool.totalAssets()).to.equal(USDC(100_000n));
    expect(await MockERC20__factory.connect(rec.assets.USDC, provider).balanceOf(lp)).to.equal(0n);
  });

  it("6. creates account 1 and deposits margin and reserve (e2e:account)", async () => {
    await run("account");
    const vault = IVault__factory.connect(rec.engine, provider);
    expect(await vault.accountCount()).to.equal(1n);
    expect(await vault.ownerOf(1)).to.equal(trader);
    expect(await vault.marginOf(1, rec.assets.USDC)).to.equal(USDC(2_000n));
    expect(await vault.reserveOf(1, rec.assets.USDC)).to.equal(USDC(3_000n));
    expect(await MockERC20__factory.connect(rec.assets.USDC, provider).balanceOf(trader)).to.equal(USDC(5_000n));
  });

  it("7. requests an order, pushes a round and fills the order at the pushed price (e2e:open)", async () => {
    await run("open");
    const engine = IMarginEngine__factory.connect(rec.engine, provider);
    const [filled] = await engine.queryFilter(engine.filters.OrderExecuted(1n));
    expect(filled.args.price).to.equal(2_005n * WAD);
    expect(filled.args.accountId).to.equal(1n);
    const p = await engine.position(1, rec.markets.ETH.id);
    expect(p.size).to.equal(5n * WAD);
    expect(p.entryPrice).to.equal(2_005n * WAD);
    const vault = IVault__factory.connect(rec.engine, provider);
    // the order fee (0.5 USDC) from the reserve; the trading fee (5 bps of 10,025 USD = 5.0125 USDC) from margin
    expect(await vault.reserveOf(1, rec.assets.USDC)).to.equal(USDC(3_000n) - 500_000n);
    expect(await vault.marginOf(1, rec.assets.USDC)).to.equal(USDC(2_000n) - 5_012_500n);
    expect((await engine.pendingOrders(1)).length).to.equal(0);
  });

  it("8. sets the policy and shows it (e2e:policy)", async () => {
    await run("policy");
    const p = await IMarginEngine__factory.connect(rec.engine, provider).rebalancePolicy(1);
    expect(p.actions).to.equal(3n);
    expect(p.triggerRatio).to.equal(25n * 10n ** 17n);
    expect(p.targetRatio).to.equal(35n * 10n ** 17n);
    expect(p.releaseRatio).to.equal(0n);
    expect(p.maxFeeUsd).to.equal(50n * WAD);
    expect(p.cooldown).to.equal(0n);
    expect([...p.topUpAssets]).to.deep.equal([rec.assets.USDC]);
  });

  it("9. starts the keeper from a copy of the example config (e2e:keeper-config, e2e:keeper)", async () => {
    await run("keeper-config");
    const file = path.join(tmp, "keeper.json");
    const example = JSON.parse(fs.readFileSync(path.join(ROOT, "keeper", "keeper.example.json"), "utf8"));
    const cfg = JSON.parse(fs.readFileSync(file, "utf8"));
    expect(cfg).to.deep.equal(example);
    // What the runbook says the example already points at (a user on the default port changes nothing) …
    expect([cfg.network, cfg.rpcUrls, cfg.chainId, cfg.metricsPort, cfg.dbPath]).to.deep.equal(
      ["localhost", ["http://127.0.0.1:8545"], 31337, 9464, "keeper.db"],
    );
    // … and what this test's node and temporary directory need instead.
    Object.assign(cfg, { rpcUrls: [url], deploymentsDir: tmp, dbPath: path.join(tmp, "keeper.db"), metricsPort });
    fs.writeFileSync(file, JSON.stringify(cfg, null, 2));
    keeper = startBackground(block("keeper"), { cwd: ROOT, env, logFile: keeperLog });
    await waitFor("the keeper to start", () => {
      if (keeper!.exitCode !== null) throw new Error(`the keeper exited ${keeper!.exitCode}:\n${logOf(keeperLog)}`);
      return missingLines(logOf(keeperLog), block("keeper:out")).length === 0 ? true : undefined;
    }, 120_000, 500);
  });

  it("10. after the price drop (e2e:drop) the keeper rebalances account 1 to its target from the reserve", async () => {
    const rb = IRebalancer__factory.connect(rec.engine, provider);
    const vault = IVault__factory.connect(rec.engine, provider);
    const [reserveBefore, marginBefore] = [await vault.reserveOf(1, rec.assets.USDC), await vault.marginOf(1, rec.assets.USDC)];
    await run("drop");
    const ev = await waitFor("a Rebalanced event of account 1", async () => (await rb.queryFilter(rb.filters.Rebalanced(1n)))[0], 60_000, 500);
    const keeperAddress = new Wallet(/KEEPER_PRIVATE_KEY=(0x[0-9a-f]{64})/.exec(block("keeper"))![1]).address;
    expect(ev.args.keeper).to.equal(keeperAddress);
    expect(ev.args.action).to.equal(1n); // TOP_UP alone: the reserve was enough
    expect(ev.args.healthBefore).to.be.lessThan(25n * 10n ** 17n);
    expect(ev.args.healthBefore).to.be.greaterThan(WAD);
    expect(ev.args.healthAfter).to.be.gte(35n * 10n ** 17n);
    expect(ev.args.healthAfter).to.be.lessThan(3_501n * 10n ** 15n);
    expect(ev.args.reducedNotionalUsd).to.equal(0n);
    // USDC counts 1 USD per unit: the reserve paid the top-up, the margin kept it less the keeper's fee
    const toppedUp = ev.args.toppedUpUsd / 10n ** 12n;
    expect(toppedUp * 10n ** 12n).to.equal(ev.args.toppedUpUsd);
    expect(ev.args.feeUsd % 10n ** 12n).to.equal(0n);
    expect(ev.args.feeUsd).to.be.greaterThan(0n);
    expect(ev.args.feeUsd).to.be.lte(50n * WAD);
    expect(await vault.reserveOf(1, rec.assets.USDC)).to.equal(reserveBefore - toppedUp);
    expect(await vault.marginOf(1, rec.assets.USDC)).to.equal(marginBefore + toppedUp - ev.args.feeUsd / 10n ** 12n);
    // The runbook's checkData (e2e:checkdata) is what Automation would have seen in the block before the keeper acted.
    const checkData = (await run("checkdata")).stdout.trim();
    expect(Array.from(AbiCoder.defaultAbiCoder().decode(["uint256", "uint256"], checkData))).to.deep.equal([1n, 2_000n]);
    const before = await rb.checkUpkeep(checkData, { blockTag: ev.blockNumber - 1 });
    expect(before.upkeepNeeded).to.equal(true);
    expect(before.performData).to.equal(AbiCoder.defaultAbiCoder().encode(["uint256[]"], [[1n]]));
    expect((await rb.checkUpkeep(checkData)).upkeepNeeded).to.equal(false);
    // The keeper's terminal shows the plan and the mined transaction; account:status the result.
    await waitFor("the keeper's rebalance log", () => (missingLines(logOf(keeperLog), block("keeper-rebalance:out")).length === 0 ? true : undefined), 20_000);
    await run("status");
  });

  it("11. the keeper serves /metrics and /healthz (e2e:metrics)", async () => {
    const r = await run("metrics");
    expect(r.stdout).to.match(/^keeper_cycles_total [1-9]\d*$/m);
    expect(r.stdout).to.not.match(/outcome="(failed|reverted)"/);
  });

  it("12. the keeper stops on SIGTERM (Ctrl-C) after its cycle", async () => {
    await stop(keeper!, "SIGTERM");
    expect(logOf(keeperLog)).to.match(/"msg":"keeper stopped"/);
    keeper = undefined;
  });
  it("13. sets the upkeep fee recipient with the runbook's console snippet (e2e:fee-recipient, on the local deployment)", async () => {
    const recipient = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"; // Account #9
    const script = block("fee-recipient")
      .replace("--network arbitrum", "--network localhost")
      .replace("arbitrum.json", "localhost.json")
      .replace("0xYourAddress", recipient);
    const r = await run("fee-recipient", script);
    expect(r.stdout).to.include(`upkeep fees go to ${recipient}`);
    expect(await IRebalancer__factory.connect(rec.engine, provider).upkeepFeeRecipient()).to.equal(recipient);
  });

});
