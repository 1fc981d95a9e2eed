/*
 * solidity-coverage (`npm run coverage`). Read by the coverage task only; `npm test` never loads this file.
 *
 * Figures are for contracts/ without the test doubles in contracts/test/. Tests whose point is a gas number
 * skip themselves under coverage (test/helpers/coverage.ts says why); everything else runs as in `npm test`.
 */

// The plugin sends every transaction that names no fee as a legacy transaction at a fixed gas price of
// 1 wei, on a chain whose base fee starts at 0. The Rebalancer's keeper fee reads `block.basefee`, so its
// tests pin the next block's base fee (hardhat_setNextBlockBaseFeePerGas): a 1 wei transaction is refused
// by that block, and by every block after it until the base fee has decayed (~170 blocks), which failed
// whole suites that ran later. Under coverage a transaction that names no fee therefore pays the base fee
// (EIP-1559, no tip, a cap far above any base fee a test pins), as on the normal test network. Transactions
// that name their fees, and every call, are untouched.
const MAX_FEE_PER_GAS = "0x" + (10n ** 13n).toString(16); // 10,000 gwei; accounts hold 10,000 ETH each

function payBaseFee(provider) {
  const seen = new Set();
  const patched = [];
  for (let p = provider; p && !seen.has(p); ) {
    seen.add(p);
    if (p.constructor && p.constructor.name === "FixedGasPriceProvider") {
      const inner = p._wrappedProvider;
      p.request = async (args) => {
        const tx = args.method === "eth_sendTransaction" && Array.isArray(args.params) ? args.params[0] : undefined;
        if (tx && tx.gasPrice === undefined && tx.maxFeePerGas === undefined && tx.maxPriorityFeePerGas === undefined) {
          tx.maxFeePerGas = MAX_FEE_PER_GAS;
          tx.maxPriorityFeePerGas = "0x0";
        }
        return inner.request(args);
      };
      patched.push(p);
    }
    p = p._wrappedProvider ?? p._provider ?? p.provider;
  }
  if (patched.length !== 1) throw new Error(`.solcover.js: expected one FixedGasPriceProvider, found ${patched.length}`);
}

module.exports = {
  // contracts/test: mocks and test doubles; contracts/bench: the gas benchmark's adapter (lib/bench, never in coverage).
  skipFiles: ["test/", "bench/"],
  istanbulReporter: ["html", "lcov", "text", "json-summary"],
  mocha: {
    timeout: 1_800_000, // instrumented code runs ~5-10x slower than in `npm test` (600 s there)
    rootHooks: {
      async beforeAll() {
        const hre = require("hardhat");
        await hre.network.provider.request({ method: "eth_chainId", params: [] }); // initialise a lazy provider
        payBaseFee(hre.network.provider);
      },
    },
  },
};
