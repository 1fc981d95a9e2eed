/**
 * The keeper tests' world on the in-process Hardhat network: the production system (productionFixture), five
 * accounts opened through two-step orders, and keepers wired to the in-process provider (and to fake endpoints).
 */
import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { HDNodeWallet, type Wallet } from "ethers";
import { ethers, network } from "hardhat";

import { MAJOR_MARKET, NARROW_POLICY } from "../../deploy/params";
import { recordOfLocalSystem, type DeploymentRecord } from "../../lib/deployment";
import { fillAtNextRound } from "../../lib/orders";
import { parseConfig, type KeeperConfig } from "../../keeper/config";
import { Keeper, type KeeperDeps } from "../../keeper/keeper";
import type { HealthMirror, LensView } from "../../keeper/mirror";
import { memoryLogger } from "../../keeper/log";
import { Eip1193Provider, type Eip1193, type Endpoint } from "../../keeper/rpc";
import { productionFixture, USDC, E18, E8, type ProductionFixture } from "../helpers/fixtures";

export const W = 10n ** 18n;
export const GWEI = 10n ** 9n;
const MNEMONIC = "test test test test test test test test test test test junk";
/**
 * Keepers sign with keys of Hardhat's mnemonic beyond the funded default accounts (index 1000 + i): no other test
 * file ever sends from them, so their nonces start at 0 in every world; the world funds them.
 */
export const keeperWallet = (i: 10 | 11 | 12): Wallet =>
  HDNodeWallet.fromPhrase(MNEMONIC, undefined, `m/44'/60'/0'/0/${1000 + i}`) as unknown as Wallet;

export interface World extends ProductionFixture {
  rec: DeploymentRecord;
  /** policy accounts 1..4 (10 ETH long, 4,000 USDC margin, 1,000 USDC reserve) and account 5 (5 ETH, 1,800 USDC, no policy) */
  ids: bigint[];
  policy: { actions: number; cooldown: number; triggerRatio: bigint; targetRatio: bigint; releaseRatio: bigint; maxFeeUsd: bigint; topUpAssets: string[] };
}

export async function world(): Promise<World> {
  const f = await productionFixture();
  for (const i of [10, 11, 12] as const) {
    await network.provider.send("hardhat_setBalance", [keeperWallet(i).address, "0x56BC75E2D63100000"]); // 100 ETH
  }
  await f.engine.setMarketParams(f.ethMarket, { asset: await f.weth.getAddress(), ...MAJOR_MARKET, maxFundingRate: 0n });
  const rec = await recordOfLocalSystem(f, { network: "hardhat", chainId: 31337, startBlock: 0, deployer: f.deployer.address });
  const policy = { ...NARROW_POLICY, topUpAssets: [await f.usdc.getAddress()] };
  const ids: bigint[] = [];
  for (let i = 0; i < 5; i++) {
    const who = i % 2 === 0 ? f.alice : f.bob;
    const margin = i < 4 ? USDC(4_000) : USDC(1_800);
    const reserve = i < 4 ? USDC(1_010) : USDC(10);
    await f.usdc.mint(who.address, margin + reserve);
    await f.usdc.connect(who).approve(f.vault, margin + reserve);
    await f.vault.connect(who).createAccount();
    const id = await f.vault.accountCount();
    await f.vault.connect(who).depositMargin(id, f.usdc, margin);
    await f.vault.connect(who).deposit(id, f.usdc, reserve);
    await fillAtNextRound(f.engine, who, f.deployer, f.ethFeed, { accountId: id, marketId: f.ethMarket, sizeDelta: i < 4 ? E18(10) : E18(5) });
    if (i < 4) await f.engine.connect(who).setRebalancePolicy(id, policy);
    ids.push(id);
  }
  return { ...f, rec, ids, policy };
}

/** ETH to `usd` (a new round) and poked. */
export async function setEth(f: World, usd: bigint) {
  await f.ethFeed.setAnswer(E8(usd));
  await f.oracle.poke(f.weth);
}

export function tmpDb(): string {
  return path.join(fs.mkdtempSync(path.join(os.tmpdir(), "keeper-it-")), "keeper.db");
}

/** The in-process network as an endpoint; `lag` blocks behind, or down. */
export function endpoint(name: string, mode: { down?: boolean; lag?: number } = {}): Endpoint {
  const eip: Eip1193 = {
    async request({ method, params }) {
      if (mode.down) throw Object.assign(new Error(`connect ECONNREFUSED (${name})`), { code: -32000 });
      if (mode.lag && method === "eth_blockNumber") {
        const head = BigInt((await network.provider.request({ method })) as string);
        return "0x" + (head - BigInt(mode.lag)).toString(16);
      }
      return network.provider.request({ method, params: params as unknown[] });
    },
  };
  return { name, provider: new Eip1193Provider(eip, 31337) };
}

export function config(dbPath: string, over: Record<string, unknown> = {}): KeeperConfig {
  return parseConfig(
    {
      network: "hardhat",
      rpcUrls: ["http://in-process"],
      chainId: 31337,
      dbPath,
      logLevel: "debug",
      minProfitUsd: "0",
      maxFeePerGasGwei: "500",
      priorityFeeGwei: "0.001",
      batchSize: 10,
      reorgDepth: 4,
      gas: { rebalance: 500_000, rebalanceBatchBase: 100_000, rebalanceBatchPerAccount: 450_000, liquidate: 800_000, executeOrder: 300_000 },
      ...over,
    },
    () => "test",
    {},
  );
}

export async function keeper(f: World, opts: { db?: string; wallet?: 10 | 11 | 12; over?: Record<string, unknown>; deps?: Partial<KeeperDeps>; endpoints?: Endpoint[] } = {}) {
  const { log, lines } = memoryLogger();
  const k = await Keeper.create(config(opts.db ?? tmpDb(), opts.over), {
    rec: f.rec,
    endpoints: opts.endpoints ?? [endpoint("primary")],
    signer: keeperWallet(opts.wallet ?? 10),
    log,
    ...opts.deps,
  });
  return { k, lines };
}

/** Pins the base fee of the next block and mines it. */
export async function baseFee(wei: bigint) {
  await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x" + wei.toString(16)]);
  await network.provider.send("evm_mine", []);
}

const STATE_FIELDS = ["collateral", "settlement", "unrealisedPnl", "equity", "notional", "maintenanceMargin", "initialMargin", "health"] as const;

/** Every account's mirror valuation against accountState (when priced) and healthBatch, at `block`. */
export async function expectMirrorExact(w: World, ids: bigint[], v: LensView, mirror: HealthMirror, block: number) {
  const [healths, priced] = await w.engine.healthBatch(ids, { blockTag: block });
  for (let i = 0; i < ids.length; i++) {
    const got = mirror.value(ids[i], v)!;
    expect(got.priced, `account ${ids[i]} priced`).to.equal(priced[i]);
    if (!priced[i]) continue;
    expect(got.state!.health, `account ${ids[i]} health`).to.equal(healths[i]);
    const st = await w.engine.accountState(ids[i], { blockTag: block });
    for (const k of STATE_FIELDS) expect(got.state![k], `account ${ids[i]} ${k}`).to.equal(st[k]);
  }
}

export { ethers, USDC, E18, E8 };
