/**
 * Compiles Solidity sources that are not the project's own (the benchmark's reference protocols) with a solc
 * version other than the project's, served by the same `TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD` override as
 * `hardhat compile` (hardhat.config.ts: solc-js from a pinned npm package, keyed by version; no download).
 *
 * Why not `hardhat compile`: those sources would then be compiled (and type-generated, and instrumented) by
 * every `npm test`, `npm run lint` and `npm run coverage`. Here they compile only when the benchmark (or its
 * test) asks, through Hardhat's own solc-js runner, and the output is cached under `<cache>/bench/`, keyed by
 * the compiler's long version and the whole standard-JSON input: a fresh clone compiles once.
 */
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { HardhatRuntimeEnvironment } from "hardhat/types";
import {
  TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD,
  TASK_COMPILE_SOLIDITY_RUN_SOLC,
  TASK_COMPILE_SOLIDITY_RUN_SOLCJS,
} from "hardhat/builtin-tasks/task-names";

/** Standard-JSON `settings` less `outputSelection` (the harness needs ABI and creation bytecode only). */
export interface SolcSettings {
  viaIR?: boolean;
  optimizer: { enabled: boolean; runs: number };
  evmVersion?: string;
  metadata?: { bytecodeHash: "none" | "ipfs" | "bzzr1" };
}

export interface CompiledContract {
  abi: unknown[];
  /** creation bytecode, 0x-prefixed; libraries must be unlinked-free (the caller's to check) */
  bytecode: string;
}

/** `"<source unit name>:<contract name>"` → ABI and bytecode. */
export type CompiledSet = Record<string, CompiledContract>;

export interface CompileResult {
  solcLongVersion: string;
  settings: SolcSettings;
  contracts: CompiledSet;
  /** true when the output came from the cache */
  cached: boolean;
}

interface SolcBuild {
  compilerPath: string;
  isSolcJs: boolean;
  version: string;
  longVersion: string;
}

interface SolcOutput {
  errors?: { severity: string; formattedMessage: string }[];
  contracts?: Record<string, Record<string, { abi: unknown[]; evm: { bytecode: { object: string } } }>>;
}

/** Every `.sol` file under `dir`, keyed as `<prefix>/<path relative to dir>` (the import names solc sees). */
export function readSources(dir: string, prefix: string): Record<string, { content: string }> {
  const sources: Record<string, { content: string }> = {};
  const walk = (d: string): void => {
    for (const entry of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) walk(p);
      else if (entry.name.endsWith(".sol")) {
        sources[`${prefix}/${path.relative(dir, p).split(path.sep).join("/")}`] = { content: fs.readFileSync(p, "utf8") };
      }
    }
  };
  walk(dir);
  return sources;
}

/**
 * Compiles `sources` (every import among them: no import callback) with solc `version` as served by the
 * project's compile override, or returns the cached output of the identical input.
 */
export async function compileWithServedSolc(
  hre: HardhatRuntimeEnvironment,
  name: string,
  version: string,
  sources: Record<string, { content: string }>,
  settings: SolcSettings,
  outputs?: string[],
): Promise<CompileResult> {
  const build: SolcBuild = await hre.run(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, { quiet: true, solcVersion: version });
  // Code is generated only for the contracts selected (`"<source unit>:<contract>"`, default all): with via-IR
  // most of the compile time.
  const outputSelection: Record<string, Record<string, string[]>> = {};
  for (const fq of outputs ?? ["*:*"]) {
    const i = fq.lastIndexOf(":");
    (outputSelection[fq.slice(0, i)] ??= {})[fq.slice(i + 1)] = ["abi", "evm.bytecode.object"];
  }
  const input = { language: "Solidity", sources, settings: { ...settings, outputSelection } };
  const key = crypto.createHash("sha256").update(build.longVersion).update(JSON.stringify(input)).digest("hex").slice(0, 16);
  const cacheFile = path.join(hre.config.paths.cache, "bench", `${name}-${version}-${key}.json`);
  if (fs.existsSync(cacheFile)) {
    const contracts = JSON.parse(fs.readFileSync(cacheFile, "utf8")) as CompiledSet;
    return { solcLongVersion: build.longVersion, settings, contracts, cached: true };
  }

  const output: SolcOutput = build.isSolcJs
    ? await hre.run(TASK_COMPILE_SOLIDITY_RUN_SOLCJS, { input, solcJsPath: build.compilerPath })
    : await hre.run(TASK_COMPILE_SOLIDITY_RUN_SOLC, { input, solcPath: build.compilerPath, solcVersion: version });
  const errors = (output.errors ?? []).filter((e) => e.severity === "error");
  if (errors.length > 0) throw new Error(`${name}: solc ${version} failed:\n${errors.map((e) => e.formattedMessage).join("\n")}`);

  const contracts: CompiledSet = {};
  for (const [file, byName] of Object.entries(output.contracts ?? {})) {
    for (const [contractName, c] of Object.entries(byName)) {
      contracts[`${file}:${contractName}`] = { abi: c.abi, bytecode: `0x${c.evm.bytecode.object}` };
    }
  }
  fs.mkdirSync(path.dirname(cacheFile), { recursive: true });
  fs.writeFileSync(cacheFile, JSON.stringify(contracts));
  return { solcLongVersion: build.longVersion, settings, contracts, cached: false };
}

/** One contract of a compiled set, with a clear error if it is missing or needs linking. */
export function pick(set: CompiledSet, fqName: string): CompiledContract {
  const c = set[fqName];
  if (c === undefined) throw new Error(`${fqName} is not in the compiled set`);
  if (c.bytecode.includes("__$")) throw new Error(`${fqName} needs library linking, which the harness does not do`);
  if (c.bytecode === "0x") throw new Error(`${fqName} is abstract or an interface`);
  return c;
}
