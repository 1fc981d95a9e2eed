/**
 * How the benchmark reads gas: `gasUsed` of the receipt of a real transaction, mined on the in-process Hardhat
 * network. Every measured transaction runs in a block whose base fee is pinned (BENCH_BASE_FEE: the
 * rebalance keeper fee reads `block.basefee`, so the plan, and the gas, would otherwise depend on what ran
 * before) and carries an explicit gas limit (the network's per-transaction cap): no estimation, and a
 * transaction that reverts is still mined, so its receipt (status 0) gives the gas a keeper really pays for it.
 */
import { network, ethers } from "hardhat";
import type { ContractTransactionResponse, Interface, TransactionReceipt } from "ethers";

/** Base fee of every measured block: 20 gwei. */
export const BENCH_BASE_FEE = 20n * 10n ** 9n;

/** EIP-7825 (Osaka): the most gas one transaction may use; Hardhat enforces it on `osaka` and later. */
export const OSAKA_TX_GAS_CAP = 16_777_216n;

/** The gas limit measured transactions carry: the per-transaction cap of the network (or its block limit). */
export async function txGasLimit(): Promise<bigint> {
  const block = await ethers.provider.getBlock("latest");
  const blockLimit = block!.gasLimit;
  return blockLimit < OSAKA_TX_GAS_CAP ? blockLimit : OSAKA_TX_GAS_CAP;
}

/** Fee fields and gas limit of a measured transaction; `tip` orders transactions inside one block. */
export async function txOverrides(tip = 0n): Promise<{ gasLimit: bigint; maxFeePerGas: bigint; maxPriorityFeePerGas: bigint }> {
  return { gasLimit: await txGasLimit(), maxFeePerGas: 2n * BENCH_BASE_FEE + tip, maxPriorityFeePerGas: tip };
}

export async function pinBaseFee(baseFee: bigint = BENCH_BASE_FEE): Promise<void> {
  await network.provider.send("hardhat_setNextBlockBaseFeePerGas", ["0x" + baseFee.toString(16)]);
}

export type Send = (overrides: Awaited<ReturnType<typeof txOverrides>>) => Promise<ContractTransactionResponse>;

export interface Mined {
  receipt: TransactionReceipt;
  gas: number;
  ok: boolean;
  /**
   * true when a failed transaction ran out of gas (e.g. past the per-transaction cap): it used its whole limit, or all
   * but the 1/64 a caller keeps when a call it made (a library delegatecall) ran out (EIP-150).
   */
  outOfGas: boolean;
}

/**
 * Sends each transaction in order into one block (automine off, then one `evm_mine` at the pinned base fee),
 * so their order is the order given (each later one tips less) and none is refused for reverting.
 */
export async function mineTogether(sends: Send[]): Promise<Mined[]> {
  const hashes: string[] = [];
  await network.provider.send("evm_setAutomine", [false]);
  try {
    for (let i = 0; i < sends.length; i++) {
      const tip = BigInt(sends.length - i) * 10n ** 9n;
      hashes.push((await sends[i](await txOverrides(sends.length > 1 ? tip : 0n))).hash);
    }
    await pinBaseFee();
    await network.provider.send("evm_mine", []);
  } finally {
    await network.provider.send("evm_setAutomine", [true]);
  }
  const mined: Mined[] = [];
  for (const hash of hashes) {
    const receipt = await ethers.provider.getTransactionReceipt(hash);
    if (receipt === null) throw new Error(`transaction ${hash} was not mined`);
    const tx = await ethers.provider.getTransaction(hash);
    mined.push({
      receipt,
      gas: Number(receipt.gasUsed),
      ok: receipt.status === 1,
      outOfGas: receipt.status !== 1 && receipt.gasUsed * 64n >= tx!.gasLimit * 63n,
    });
  }
  const blocks = new Set(mined.map((m) => m.receipt.blockNumber));
  if (blocks.size !== 1) throw new Error(`transactions meant for one block landed in ${blocks.size}`);
  return mined;
}

/**
 * One measured transaction that must succeed (or, with `allowOutOfGas`, may run out of gas at the limit: a
 * batch too large for one transaction); returns its receipt.
 */
export async function measure(send: Send, opts: { allowOutOfGas?: boolean } = {}): Promise<Mined> {
  const [m] = await mineTogether([send]);
  if (m.outOfGas && opts.allowOutOfGas) return m;
  if (!m.ok) {
    const why = m.outOfGas ? `out of gas at ${m.gas}` : await revertData(m.receipt.hash);
    throw new Error(`measured transaction ${m.receipt.hash} failed: ${why}`);
  }
  return m;
}

/**
 * The revert data of a mined failed transaction (`debug_traceTransaction`, without storage, memory or stack),
 * decoded with `iface` when it names the error.
 */
export async function revertData(hash: string, iface?: Interface): Promise<string> {
  const trace = (await network.provider.send("debug_traceTransaction", [
    hash,
    { disableStorage: true, disableMemory: true, disableStack: true },
  ])) as { failed: boolean; returnValue: string };
  if (!trace.failed) return "(did not fail)";
  const data = trace.returnValue.startsWith("0x") ? trace.returnValue : `0x${trace.returnValue}`;
  const parsed = iface?.parseError(data);
  return parsed ? parsed.name : data;
}

/** A measured transaction that must revert with `errorName` (decoded with `iface`). */
export async function measureRevert(send: Send, iface: Interface, errorName: string): Promise<Mined> {
  const [m] = await mineTogether([send]);
  await expectReverted(m, iface, errorName);
  return m;
}

export async function expectReverted(m: Mined, iface: Interface, errorName: string): Promise<void> {
  if (m.ok) throw new Error(`expected ${errorName}, but the transaction succeeded`);
  const reason = await revertData(m.receipt.hash, iface);
  if (reason !== errorName) throw new Error(`expected ${errorName}, got ${reason}`);
}
