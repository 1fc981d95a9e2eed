/** The engine's ABI as one ethers Interface (IMarginEngine + IRebalancer + IVault, one address): encode calls, parse events, name errors. */
import { Interface, type InterfaceAbi } from "ethers";
import { FlashLiquidator__factory, IMarginEngine__factory, IRebalancer__factory, IVault__factory } from "../typechain-types";

let cached: Interface | undefined;

export function engineInterface(): Interface {
  if (cached) return cached;
  const seen = new Set<string>();
  const fragments: unknown[] = [];
  for (const abi of [IMarginEngine__factory.abi, IRebalancer__factory.abi, IVault__factory.abi] as unknown as unknown[][]) {
    for (const f of abi) {
      const frag = f as { type: string; name?: string; inputs?: { type: string }[] };
      const sig = `${frag.type}:${frag.name}(${(frag.inputs ?? []).map((i) => i.type).join(",")})`;
      if (seen.has(sig)) continue;
      seen.add(sig);
      fragments.push(f);
    }
  }
  cached = new Interface(fragments as InterfaceAbi);
  return cached;
}

let flashCached: Interface | undefined;

/** The FlashLiquidator's ABI (periphery: its own address). */
export function flashInterface(): Interface {
  return (flashCached ??= new Interface(FlashLiquidator__factory.abi as unknown as InterfaceAbi));
}

/** Reverts that mean "someone else got there first" or "nothing to do": logged, never retried as failures. */
export const BENIGN = new Set([
  "NothingToRebalance",
  "NotOptedIn",
  "NotLiquidatable",
  "RescueAvailable",
  "OrderNotFound",
  "OrderNotReady",
  "Liquidatable",
  // a collateral sale someone else made first (the FlashLiquidator's names, and the engine's)
  "NothingToRepay",
  "NoCollateral",
  "NothingToBuy",
]);

/** Name of the engine's (or the FlashLiquidator's) error in revert `data` ("Error(reason)" for a string revert, the
 *  selector when unknown). */
export function errorName(data: string | null | undefined): string {
  if (!data || data === "0x") return "revert without data";
  for (const iface of [engineInterface(), flashInterface()]) {
    try {
      const e = iface.parseError(data);
      if (e) return e.name === "Error" ? `Error(${String(e.args[0])})` : e.name;
    } catch {
      /* unknown to this interface */
    }
  }
  return data.slice(0, 10);
}

/** The revert data of an ethers CALL_EXCEPTION (or of anything that carries `data`). */
export function revertData(e: unknown): string | undefined {
  const x = e as { data?: unknown; info?: { error?: { data?: unknown } }; error?: { data?: unknown } };
  for (const d of [x?.data, x?.info?.error?.data, x?.error?.data]) if (typeof d === "string" && d.startsWith("0x")) return d;
  return undefined;
}
