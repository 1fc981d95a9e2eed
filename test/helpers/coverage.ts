/**
 * Coverage runs (`npm run coverage`, solidity-coverage). Instrumented contracts execute extra opcodes at
 * every statement and branch and are compiled without the optimizer, so gas figures under coverage say
 * nothing about the real contracts. Tests whose point is a gas number skip themselves there, with the reason;
 * every other test runs unchanged. `it.skip`/`describe.skip` are not used: a skip is decided at run time.
 */
import hre from "hardhat";
import type { Context } from "mocha";

/** True under `hardhat coverage` (the plugin marks the runtime environment) or with SOLIDITY_COVERAGE=true. */
export function underCoverage(): boolean {
  return (hre as unknown as { __SOLIDITY_COVERAGE_RUNNING?: boolean }).__SOLIDITY_COVERAGE_RUNNING === true ||
    process.env.SOLIDITY_COVERAGE === "true";
}

/**
 * Skips the current test (inside `it`) or the whole suite (inside `before`) under coverage, saying why.
 * Call it as `skipUnderCoverage(this, "...")` from a `function () {}` body, never an arrow function.
 */
export function skipUnderCoverage(ctx: Context, reason: string): void {
  if (!underCoverage()) return;
  const inBeforeAll = ctx.test?.title.startsWith('"before all" hook') === true;
  const title = (inBeforeAll ? ctx.test?.parent?.fullTitle() : (ctx.currentTest ?? ctx.test)?.fullTitle()) ?? "";
  console.log(`      skipped under coverage: ${title} — ${reason}`);
  ctx.skip();
}
