/**
 * The keeper's health-scan benchmark (`npm run bench`, the `keeperScan` section of bench/results.json): N accounts
 * with positions on the in-process network, in the keeper's registry (its SQLite store), then one full scan by its
 * Scanner (`healthBatch` in chunks of `scanChunk`) per chunk size, through a counting EIP-1193 wrapper: how many RPC
 * requests, how many eth_calls (how many of them healthBatch), and the wall time of the scan.
 *
 * The accounts are made as cheaply as the in-process network allows: on the InstantFillEngine
 * (contracts/test/InstantFillEngine.sol via lib/instantFill.ts — the engine plus a one-transaction fill at the
 * oracle price; the production engine's two-step orders would need a fill round per account) a helper contract,
 * compiled here (never part of the project's build), creates `perTx` accounts per transaction: createAccount,
 * depositMargin and an instant fill of ±0.01 ETH each (alternately long and short). The helper owns the accounts.
 * Health does not depend on who owns an account, and the scan reads only `healthBatch` for them (none is below its
 * maintenance margin, none has a policy).
 */
import { ContractFactory, Interface } from "ethers";
import hre from "hardhat";

import { deployInstantFillSystem } from "../instantFill";
import { recordOfLocalSystem } from "../deployment";
import { createLogger } from "../../keeper/log";
import { Eip1193Provider, RpcPool, type Eip1193 } from "../../keeper/rpc";
import { Scanner } from "../../keeper/scanner";
import { Store } from "../../keeper/store";
import { compileWithServedSolc, pick } from "./solc";
import { SCAN_GOALS, SCAN_ROW, type ScanRow } from "./results";

const OPENER = `// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;
interface IVaultLike { function createAccount() external returns (uint256); function depositMargin(uint256, address, uint256) external; }
interface IFillLike { function modifyPosition(uint256, uint256, int256, uint256) external; }
interface IERC20Like { function approve(address, uint256) external returns (bool); }
/// Bench helper: n accounts per call, each with margin and an instant-filled position (alternately long, short).
contract ScanBenchOpener {
    function open(address engine, address usdc, uint256 marketId, uint256 n, uint256 margin, int256 size) external {
        IERC20Like(usdc).approve(engine, type(uint256).max);
        for (uint256 i; i < n; ++i) {
            uint256 id = IVaultLike(engine).createAccount();
            IVaultLike(engine).depositMargin(id, usdc, margin);
            bool long = i % 2 == 0;
            IFillLike(engine).modifyPosition(id, marketId, long ? size : -size, long ? type(uint256).max : 0);
        }
    }
}
`;

/** Counts the JSON-RPC requests that go through it, by method (and healthBatch eth_calls by selector). */
export function countingEndpoint(): { eip: Eip1193; counts: Map<string, number>; reset(): void } {
  const counts = new Map<string, number>();
  const healthBatch = new Interface(["function healthBatch(uint256[])"]).getFunction("healthBatch")!.selector;
  const eip: Eip1193 = {
    async request({ method, params }) {
      counts.set(method, (counts.get(method) ?? 0) + 1);
      if (method === "eth_call") {
        const data = String((params as { data?: string; input?: string }[])[0]?.data ?? (params as { input?: string }[])[0]?.input ?? "");
        if (data.startsWith(healthBatch)) counts.set("eth_call:healthBatch", (counts.get("eth_call:healthBatch") ?? 0) + 1);
      }
      return hre.network.provider.request({ method, params: params as unknown[] });
    },
  };
  return { eip, counts, reset: () => counts.clear() };
}

export interface ScanBenchOptions {
  accounts?: number;
  /** scan chunk sizes to measure, one row each (the keeper's default, 200, first) */
  chunks?: number[];
  perTx?: number;
  log?: (s: string) => void;
}

/** Creates the accounts, indexes them, and scans once per chunk size. */
export async function benchScan(opts: ScanBenchOptions = {}): Promise<ScanRow[]> {
  const n = opts.accounts ?? 10_000;
  const perTx = opts.perTx ?? 90;
  // 200: the keeper's default; 625: about the most a healthBatch call fits under this network's eth_call gas cap
  // (16,777,216, EIP-7825 on osaka: ~24,000 gas per account), 16 calls for 10,000 accounts
  const chunks = opts.chunks ?? [200, 625];
  const log = opts.log ?? (() => undefined);
  const [deployer] = await hre.ethers.getSigners();

  let t = Date.now();
  const startBlock = (await hre.ethers.provider.getBlockNumber()) + 1;
  const sys = await deployInstantFillSystem(deployer);
  const compiled = await compileWithServedSolc(hre, "scan-bench-opener", "0.8.28", { "ScanBenchOpener.sol": { content: OPENER } }, {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
  });
  const art = pick(compiled.contracts, "ScanBenchOpener.sol:ScanBenchOpener");
  const opener = await new ContractFactory(art.abi as never, art.bytecode, deployer).deploy();
  await opener.waitForDeployment();
  // liquidity in the pool (the open-interest cap follows it)
  const lp = 10_000_000n * 10n ** 6n;
  await (await sys.usdc.mint(deployer.address, lp)).wait();
  await (await sys.usdc.approve(sys.pool, lp)).wait();
  await (await sys.pool.deposit(lp, deployer.address)).wait();
  const margin = 100n * 10n ** 6n; // 100 USDC
  const size = 10n ** 16n; // 0.01 ETH
  await (await sys.usdc.mint(await opener.getAddress(), margin * BigInt(n))).wait();
  const engine = await sys.engine.getAddress();
  const usdc = await sys.usdc.getAddress();
  // many transactions per block: automine off, one evm_mine per 20 transactions
  await hre.network.provider.send("evm_setAutomine", [false]);
  try {
    const open = opener.getFunction("open");
    let nonce = await deployer.getNonce();
    const gasLimit = 16_000_000n;
    let sent = 0;
    for (let done = 0; done < n; done += perTx) {
      const k = Math.min(perTx, n - done);
      await open.send(engine, usdc, sys.ethMarket, k, margin, size, { nonce: nonce++, gasLimit });
      if (++sent % 3 === 0) await hre.network.provider.send("evm_mine", []);
    }
    await hre.network.provider.send("evm_mine", []);
  } finally {
    await hre.network.provider.send("evm_setAutomine", [true]);
  }
  const count = Number(await sys.vault.accountCount());
  if (count !== n) throw new Error(`scan bench: ${count} accounts created, expected ${n}`);
  const setupMs = Date.now() - t;
  log(`  ${n} accounts with positions (${(setupMs / 1000).toFixed(1)} s)`);

  const rec = await recordOfLocalSystem(sys as never, { network: "hardhat", chainId: 31337, startBlock, deployer: deployer.address });
  const counting = countingEndpoint();
  const silent = createLogger("silent");
  const pool = new RpcPool([{ name: "in-process", provider: new Eip1193Provider(counting.eip, 31337) }], { maxLagBlocks: 0, log: silent });
  const store = new Store(":memory:");
  try {
    const head = await pool.refresh();
    // the registry the indexer would build (accounts 1..n, one ETH position each), written directly: indexing is
    // not what is measured (it costs ~7 s per 3,000 accounts here)
    const owner = await opener.getAddress();
    store.tx(() => {
      for (let id = 1n; id <= BigInt(n); id++) {
        store.upsertAccount(id, owner, head);
        store.setPosition(id, sys.ethMarket, id % 2n === 1n ? size : -size, head);
      }
    });
    const withPosition = store.accounts({ withPosition: true }).length;
    if (withPosition !== n) throw new Error(`scan bench: ${withPosition} accounts with positions in the registry, expected ${n}`);

    const rows: ScanRow[] = [];
    for (const chunk of chunks) {
      const scanner = new Scanner(store, pool, rec, { chunk, keeper: deployer.address, shard: { index: 0, count: 1 }, log: silent });
      counting.reset();
      t = Date.now();
      const res = await scanner.scan(head);
      const wallMs = Date.now() - t;
      if (res.accounts.length !== n || res.accounts.some((a) => !a.priced || a.health < 10n ** 18n)) {
        throw new Error(`scan bench: ${res.accounts.length} accounts scanned, expected ${n} priced and healthy`);
      }
      const ethCalls = counting.counts.get("eth_call") ?? 0;
      const healthBatchCalls = counting.counts.get("eth_call:healthBatch") ?? 0;
      const rpcRequests = [...counting.counts.entries()].filter(([m]) => !m.includes(":")).reduce((s, [, v]) => s + v, 0);
      rows.push({
        id: SCAN_ROW.full(n, chunk),
        label: `keeper health scan of ${n.toLocaleString("en-US")} accounts, scanChunk ${chunk.toLocaleString("en-US")}`,
        accounts: n,
        chunk,
        ethCalls,
        healthBatchCalls,
        rpcRequests,
        wallMs,
        goals: {
          ethCalls: { limit: SCAN_GOALS.ethCalls, status: ethCalls <= SCAN_GOALS.ethCalls ? "PASS" : "MISS" },
          wallMs: { limit: SCAN_GOALS.wallMs, status: wallMs <= SCAN_GOALS.wallMs ? "PASS" : "MISS" },
        },
        description:
          `${n} accounts with a ±0.01 ETH position and 100 USDC margin each, made on the InstantFillEngine (test engine: ` +
          `instant fill at the oracle price) by a bench helper contract, ${perTx} accounts per transaction, several ` +
          `transactions per block; the keeper's registry (SQLite store) filled with them directly, not indexed; then one ` +
          `Scanner.scan at the head through an in-process EIP-1193 counting wrapper: ${healthBatchCalls} ` +
          `healthBatch eth_calls of at most ${chunk} accounts, plus the scan's ${ethCalls - healthBatchCalls} parameter ` +
          `reads (gasAsset, feeParams, riskParams, the ETH price); no account was below its maintenance margin or had ` +
          `a policy, so no per-account call followed`,
      });
      log(`  scan, chunk ${chunk}: ${ethCalls} eth_calls (${healthBatchCalls} healthBatch), ${rpcRequests} requests, ${wallMs} ms`);
    }
    return rows;
  } finally {
    store.close();
  }
}
