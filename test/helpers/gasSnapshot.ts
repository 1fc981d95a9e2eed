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

/**
 * Largest drift from the committed figure the check lets through: 1 %. An action that grows by more fails (a gas
 * regression must be a deliberate snapshot update, its reason in the commit message); one that shrinks by more fails
 * too, so the snapshot stays current with the code.
 */
export const SNAPSHOT_TOLERANCE = 0.01;

/** Fails unless `gas` is within SNAPSHOT_TOLERANCE of the committed `expected`, naming the direction. */
export function checkSnapshot(name: string, gas: number, expected: number | undefined): void {
  expect(expected, `no gas snapshot for "${name}": run UPDATE_GAS_SNAPSHOT=true npm test`).to.not.equal(undefined);
  const limit = Math.floor(expected! * (1 + SNAPSHOT_TOLERANCE));
  const floor = Math.ceil(expected! * (1 - SNAPSHOT_TOLERANCE));
  expect(gas, `gas of "${name}" grew more than 1 % (${expected} → ${gas}): fix it, or run UPDATE_GAS_SNAPSHOT=true npm test and say why in the commit`).to.be.at.most(limit);
  expect(gas, `gas of "${name}" fell more than 1 % (${expected} → ${gas}): run UPDATE_GAS_SNAPSHOT=true npm test and commit gas-snapshot.json`).to.be.at.least(floor);
}

/** Asserts that `tx` used the committed gas for `name` within 1 % (or records it when updating). */
export async function snapshotGas(name: string, tx: Promise<ContractTransactionResponse>): Promise<bigint> {
  const receipt = await (await tx).wait();
  const gas = Number(receipt!.gasUsed);
  measured[name] = gas;
  if (update) {
    const all = { ...load(), ...measured };
    const sorted = Object.fromEntries(Object.keys(all).sort().map((k) => [k, all[k]]));
    fs.writeFileSync(SNAPSHOT_FILE, JSON.stringify(sorted, null, 2) + "\n");
  } else {
    checkSnapshot(name, gas, load()[name]);
  }
  return receipt!.gasUsed;
}
