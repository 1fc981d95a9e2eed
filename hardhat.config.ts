import path from "node:path";
import dotenv from "dotenv";
import { subtask } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig } from "hardhat/config";
import "@nomicfoundation/hardhat-toolbox";
import "./tasks";

// Every variable is documented in .env.example; nothing here needs one to compile, test or run the demo.
dotenv.config({ quiet: true } as dotenv.DotenvConfigOptions);

const SOLC_VERSION = "0.8.28";

/** A live network: its RPC URL from the environment (an empty URL fails with a one-line message when used) and
 *  the deployer's key, when set. */
const live = (urlVar: string, chainId: number) => ({
  url: process.env[urlVar] ?? "",
  chainId,
  accounts: process.env.DEPLOYER_PRIVATE_KEY ? [process.env.DEPLOYER_PRIVATE_KEY] : [],
});

/**
 * No compiler downloads on these machines: each solc version is served as solc-js from a pinned npm package,
 * keyed by version. 0.8.28 (`solc`) compiles the project's contracts; 0.8.19 (`solc-0.8.19`, an npm alias of
 * solc@0.8.19) compiles only the gas benchmark's reference protocol, Morpho Blue (lib/bench/solc.ts asks this
 * same subtask for it; it is never part of `hardhat compile`).
 */
const SOLC_PACKAGES: Record<string, string> = { [SOLC_VERSION]: "solc", "0.8.19": "solc-0.8.19" };

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  const pkg = SOLC_PACKAGES[args.solcVersion];
  if (pkg === undefined) return runSuper();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const solc = require(pkg);
  const longVersion: string = solc.version();
  if (!longVersion.startsWith(`${args.solcVersion}+`)) {
    throw new Error(`npm package ${pkg} serves solc ${longVersion}, not ${args.solcVersion}`);
  }
  return {
    compilerPath: path.join(path.dirname(require.resolve(`${pkg}/package.json`)), "soljson.js"),
    isSolcJs: true,
    version: args.solcVersion,
    longVersion,
  };
});

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 10_000 },
      // viaIR for every build but coverage: the IR pipeline saves ~8 % gas on the hot paths, but instrumented IR code
      // without the optimizer runs ~50x slower (and with the plugin's `irMinimum` it outgrows the deploy gas
      // limit), so `npm run coverage` (COVERAGE=true) measures the same sources through the legacy pipeline.
      viaIR: process.env.COVERAGE !== "true",
      evmVersion: "cancun",
    },
  },
  networks: {
    hardhat: {
      // Demo and tests run many accounts through real contracts; keep the block gas limit generous.
      blockGasLimit: 60_000_000,
      // Only for a `hardhat node` child process (the forked-mainnet suite, `fork:replica`; README "Forked-mainnet
      // tests"): BALLAST_NODE_CHAIN_ID=1 makes the node answer as mainnet (the replica upstream, and a node forking
      // mainnet or the replica), BALLAST_NODE_INITIAL_DATE dates its genesis (the replica's clock, inside the
      // Chainlink data's range). Never set them for `npm test`: every other test runs on chain 31337 at today's date.
      chainId: process.env.BALLAST_NODE_CHAIN_ID ? Number(process.env.BALLAST_NODE_CHAIN_ID) : 31337,
      ...(process.env.BALLAST_NODE_INITIAL_DATE ? { initialDate: process.env.BALLAST_NODE_INITIAL_DATE } : {}),
    },
    // `npx hardhat node` (its default accounts); BALLAST_LOCALHOST_URL points at another port.
    localhost: { url: process.env.BALLAST_LOCALHOST_URL || "http://127.0.0.1:8545", chainId: 31337 },
    sepolia: live("SEPOLIA_RPC_URL", 11_155_111),
    mainnet: live("MAINNET_RPC_URL", 1),
    arbitrum: live("ARBITRUM_RPC_URL", 42_161),
    base: live("BASE_RPC_URL", 8_453),
  },
  // One Etherscan (v2) key verifies on every chain above.
  etherscan: { apiKey: process.env.ETHERSCAN_API_KEY ?? "" },
  sourcify: { enabled: false },
  typechain: { outDir: "typechain-types", target: "ethers-v6" },
  gasReporter: {
    enabled: process.env.REPORT_GAS === "true",
    outputFile: process.env.REPORT_GAS_FILE,
    noColors: true,
    offline: true,
  },
  mocha: { timeout: 600_000 },
};

export default config;
