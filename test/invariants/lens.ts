/**
 * One `eth_call` for many reads: a "deployless" Lens whose constructor calls every (target, calldata) pair and
 * returns the results, so a whole-system snapshot costs one round trip instead of fifty. Compiled once per
 * process from the source below with the pinned `solc` package (no download, ~1 s).
 *
 * The Lens runs as a contract creation from LENS_CALLER (an address that never sends a transaction), so it always
 * sits at LENS_ADDRESS. Account owners make that address an operator in the invariant fixture: the second kind
 * of batch (`simulate`) then tries what an owner could do (release, withdraw, close) on a throw-away copy of the
 * state, which is how INV_EXIT is checked after every step. No contract ever exists at LENS_ADDRESS on chain.
 */
import { AbiCoder, getCreateAddress, type Provider } from "ethers";

const SOURCE = `// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;
contract Lens {
    constructor(address[] memory targets, bytes[] memory data) {
        bool[] memory ok = new bool[](targets.length);
        bytes[] memory out = new bytes[](targets.length);
        for (uint256 i; i < targets.length; ++i) {
            (ok[i], out[i]) = targets[i].call(data[i]);
        }
        bytes memory ret = abi.encode(ok, out);
        assembly { return(add(ret, 32), mload(ret)) }
    }
}`;

/** Sender of every Lens call; it never sends a transaction, so its nonce stays 0. */
export const LENS_CALLER = "0x00000000000000000000000000000000000B1a57";
/** Where the Lens runs (creation by LENS_CALLER at nonce 0). */
export const LENS_ADDRESS = getCreateAddress({ from: LENS_CALLER, nonce: 0 });

let bytecode: string | undefined;

function lensBytecode(): string {
  if (bytecode !== undefined) return bytecode;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const solc = require("solc");
  const input = {
    language: "Solidity",
    sources: { "Lens.sol": { content: SOURCE } },
    settings: {
      optimizer: { enabled: true, runs: 1 },
      evmVersion: "cancun",
      outputSelection: { "*": { "*": ["evm.bytecode.object"] } },
    },
  };
  const out = JSON.parse(solc.compile(JSON.stringify(input)));
  const errors = (out.errors ?? []).filter((e: { severity: string }) => e.severity === "error");
  if (errors.length) throw new Error(`Lens does not compile: ${JSON.stringify(errors)}`);
  bytecode = "0x" + out.contracts["Lens.sol"].Lens.evm.bytecode.object;
  return bytecode;
}

export interface RawCall {
  target: string;
  data: string;
}

export interface RawResult {
  ok: boolean;
  data: string;
}

const coder = AbiCoder.defaultAbiCoder();

/** Runs every call in order inside one eth_call at `blockTag`; state changes of earlier calls are seen by later ones. */
export async function lensCall(provider: Provider, calls: RawCall[], blockTag: "latest" | "pending"): Promise<RawResult[]> {
  if (calls.length === 0) return [];
  const args = coder.encode(
    ["address[]", "bytes[]"],
    [calls.map((c) => c.target), calls.map((c) => c.data)],
  );
  const ret = await provider.call({ from: LENS_CALLER, data: lensBytecode() + args.slice(2), blockTag });
  const [ok, out] = coder.decode(["bool[]", "bytes[]"], ret);
  return (ok as boolean[]).map((o, i) => ({ ok: o, data: out[i] as string }));
}
