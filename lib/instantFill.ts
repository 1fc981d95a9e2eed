/**
 * The InstantFillEngine (contracts/test/InstantFillEngine.sol): the MarginEngine plus a one-transaction fill at the
 * current oracle price. Never deployed by deploy/ (an instant fill is the latency arbitrage that two-step orders
 * stop, README "Orders"). The unit tests and the risk-model replay (lib/riskReplay.ts) use it to put positions on
 * at a known price, where an order's fill round would only add a round to every path.
 */
import type { Signer } from "ethers";

import { deployLocalSystem, type EngineFactoryMaker, type LocalSystem } from "../deploy/system";
import { IInstantFillEngine__factory, InstantFillEngine__factory } from "../typechain-types";
import type { IInstantFillEngine } from "../typechain-types";

export const instantFillEngine: EngineFactoryMaker = (libraries, signer) => new InstantFillEngine__factory(libraries, signer);

/** A local system whose engine is the InstantFillEngine, typed with its `modifyPosition` (instant fill). */
export interface InstantFillSystem extends Omit<LocalSystem, "engine"> {
  engine: IInstantFillEngine;
}

/** `deployLocalSystem` with the InstantFillEngine. */
export async function deployInstantFillSystem(
  deployer: Signer,
  prices?: Parameters<typeof deployLocalSystem>[1],
): Promise<InstantFillSystem> {
  const sys = await deployLocalSystem(deployer, prices, instantFillEngine);
  return { ...sys, engine: IInstantFillEngine__factory.connect(await sys.engine.getAddress(), deployer) };
}
