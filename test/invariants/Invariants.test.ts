/**
 * The invariant suite (issue #8): the seven promises (README "Promises and the tests that prove them") as named invariants (invariants.ts), checked
 * after every step of seeded random action sequences (actions.ts, fast-check model-based commands) on the
 * in-process Hardhat network. Each sequence starts from the same fixture (loadFixture reverts to it) and every
 * block is mined at a pinned time, so a seed replays exactly.
 *
 * Budget: FC_RUNS sequences (default 200; 10 under coverage, whose instrumented contracts run ~5-10x slower) of up
 * to FC_STEPS steps (default 40) from seed FC_SEED (default fixed, so CI is deterministic). A failure prints the
 * seed, the replay path and the shrunk sequence of actions (each action's toString), then the violated
 * invariant and why. Longer hunts and replays:
 *   FC_SEED=424242 FC_RUNS=2000 npx hardhat test test/invariants/Invariants.test.ts
 *   FC_SEED=<seed> FC_PATH=<path> FC_REPLAY=<replayPath> npx hardhat test test/invariants/Invariants.test.ts
 * (the last replays just the shrunk failure: seed and path as printed, replayPath from the counterexample)
 * FC_STATS=1 prints how often each action ended in which outcome, and where the time went.
 */
import fc from "fast-check";
import { underCoverage } from "../helpers/coverage";
import { actionArbitrary, stats } from "./actions";
import { setTokenAddresses } from "./invariants";
import { freshRun, PROFILE, releaseChain } from "./world";

const RUNS = Number(process.env.FC_RUNS ?? (underCoverage() ? 10 : 200));
const STEPS = Number(process.env.FC_STEPS ?? 40);
const SEED = Number(process.env.FC_SEED ?? 20_261_122);
const PATH = process.env.FC_PATH;
const REPLAY = process.env.FC_REPLAY;

describe("Invariants: the seven promises over random action sequences", function () {
  after(async function () {
    await releaseChain();
    if (process.env.FC_STATS !== "1") return;
    const rows = [...stats.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    console.log(rows.map(([k, n]) => `${String(n).padStart(6)}  ${k}`).join("\n"));
    console.log(PROFILE);
  });

  it(`hold after every step of ${RUNS} sequences of up to ${STEPS} steps (seed ${SEED})`, async function () {
    // ~2-3 minutes on two cores; shrinking a failure re-runs sequences and may take several more.
    this.timeout(30 * 60_000);
    await fc.assert(
      fc.asyncProperty(fc.commands([actionArbitrary()], { maxCommands: STEPS, size: "max", replayPath: REPLAY }), async (cmds) => {
        const run = await freshRun();
        setTokenAddresses(run.real);
        await fc.asyncModelRun(() => run, cmds);
      }),
      { numRuns: RUNS, seed: SEED, ...(PATH ? { path: PATH, endOnFailure: true } : {}) },
    );
  });
});
