import path from "node:path";
import { subtask } from "hardhat/config";
import { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } from "hardhat/builtin-tasks/task-names";
import type { HardhatUserConfig } from "hardhat/config";
import "@nomicfoundation/hardhat-toolbox";

const SOLC_VERSION = "0.8.28";

// No compiler downloads on these machines: serve solc-js from the pinned npm `solc` package.
subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args: { solcVersion: string }, _hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) return runSuper();
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const solc = require("solc");
  return {
    compilerPath: path.join(path.dirname(require.resolve("solc/package.json")), "soljson.js"),
    isSolcJs: true,
    version: SOLC_VERSION,
    longVersion: solc.version(),
  };
});

const config: HardhatUserConfig = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 200 },
      evmVersion: "cancun",
    },
  },
  networks: {
    hardhat: {
      // Demo and tests run many accounts through real contracts; keep the block gas limit generous.
      blockGasLimit: 60_000_000,
    },
  },
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
