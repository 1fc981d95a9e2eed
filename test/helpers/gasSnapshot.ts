import fs from "node:fs";
import path from "node:path";
import { expect } from "chai";
import type { ContractTransactionResponse } from "ethers";

/** The committed gas snapshot: `UPDATE_GAS_SNAPSHOT=true npm test` rewrites it after a deliberate change. */
export const SNAPSHOT_FILE = path.resolve(__dirname, "..", "..", "gas-snapshot.json");
const update = process.env.UPDATE_GAS_SNAPSHOT === "true";
const measured: Record<string, number> = {};

function load(): Record<string, number> {
  return fs.existsSync(SNAPSHOT_FILE) ? JSON.parse(fs.readFileSync(SNAPSHOT_FILE, "utf8")) : {};
}

/** Asserts that `tx` used exactly the committed gas for `name` (or records it when updating). */
export async function snapshotGas(name: string, tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  const receipt = await (await tx).wait();
  const gas = Number(receipt!.gasUsed);
  measured[name] = gas;
  if (update) {
    const all = { ...load(), ...measured };
    const sorted = Object.fromEntries(Object.keys(all).sort().map((k) => [k, all[k]]));
    fs.writeFileSync(SNAPSHOT_FILE, JSON.stringify(sorted, null, 2) + "\n");
  } else {
    const expected = load()[name];
    expect(expected, `no gas snapshot for "${name}": run UPDATE_GAS_SNAPSHOT=true npm test`).to.not.equal(undefined);
    expect(gas, `gas of "${name}" changed: run UPDATE_GAS_SNAPSHOT=true npm test and commit gas-snapshot.json`).to.equal(expected);
  }
  return receipt!.gasUsed;
}
