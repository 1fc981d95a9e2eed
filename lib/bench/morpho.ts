/**
 * Morpho Blue 1.0.0 `liquidate`, the reference for Ballast's liquidation and rebalance gas. Compiled from the npm
 * package `@morpho-org/morpho-blue` (its src/, mocks included) with solc 0.8.19 served by the project's compile
 * override, with the settings of Morpho's own foundry.toml (via-IR, 999,999 optimizer runs, paris, no metadata
 * hash), and deployed with the package's own mocks (ERC20Mock, IrmMock, OracleMock).
 *
 * Two markets on one Morpho: one priced by OracleMock, one by ChainlinkMorphoOracle (contracts/bench) over the
 * project's MockAggregator — the same kind of Chainlink-style feed Ballast reads. In each market two identical
 * borrowers become liquidatable when the price falls 10 %; one liquidator (first touch: its first liquidation,
 * its first collateral) liquidates the first, then after another price update (steady) the second. Every price
 * change lands in the block before the measured liquidation, as for Ballast's fresh round.
 */
import path from "node:path";
import hre, { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-network-helpers";
import type { HardhatEthersSigner } from "@nomicfoundation/hardhat-ethers/signers";
import { Contract, ContractFactory, Interface, type ContractTransactionResponse, type TransactionReceipt } from "ethers";

import { ChainlinkMorphoOracle__factory, MockAggregator__factory } from "../../typechain-types";
import type { MockAggregator } from "../../typechain-types";
import { compileWithServedSolc, pick, readSources, type CompileResult, type SolcSettings } from "./solc";
import { measure, type Send } from "./measure";
import { ROW, type Figure, type Row } from "./results";

export const MORPHO_SOLC_VERSION = "0.8.19";
/** Morpho Blue's foundry.toml (the profile its deployment was built with). */
export const MORPHO_SETTINGS: SolcSettings = {
  viaIR: true,
  optimizer: { enabled: true, runs: 999_999 },
  evmVersion: "paris",
  metadata: { bytecodeHash: "none" },
};

const SRC = "@morpho-org/morpho-blue/src";
const WAD = 10n ** 18n;
/** Loan token as USDC (6 decimals), collateral as WETH (18): Morpho's price is loan units per collateral unit × 1e36. */
const LOAN_DECIMALS = 6n;
const COLLATERAL_DECIMALS = 18n;
const LLTV = (86n * WAD) / 100n;

/** What the benchmark deploys or decodes: code is generated for these only. */
export const MORPHO_CONTRACTS = [
  `${SRC}/Morpho.sol:Morpho`,
  `${SRC}/mocks/ERC20Mock.sol:ERC20Mock`,
  `${SRC}/mocks/IrmMock.sol:IrmMock`,
  `${SRC}/mocks/OracleMock.sol:OracleMock`,
  `${SRC}/libraries/EventsLib.sol:EventsLib`,
];

/** Compiles (or loads from cache) the package's src/ (every file given to solc; code for MORPHO_CONTRACTS). */
export async function compileMorpho(): Promise<CompileResult> {
  const root = path.dirname(require.resolve("@morpho-org/morpho-blue/package.json"));
  const sources = readSources(path.join(root, "src"), SRC);
  return compileWithServedSolc(hre, "morpho-blue", MORPHO_SOLC_VERSION, sources, MORPHO_SETTINGS, MORPHO_CONTRACTS);
}

interface MarketParams {
  loanToken: string;
  collateralToken: string;
  oracle: string;
  irm: string;
  lltv: bigint;
}

interface MorphoWorld {
  morpho: Contract;
  loan: Contract;
  collateral: Contract;
  oracleMock: Contract;
  feed: MockAggregator;
  markets: { mock: MarketParams; chainlink: MarketParams };
  borrowers: { mock: HardhatEthersSigner[]; chainlink: HardhatEthersSigner[] };
  liquidator: HardhatEthersSigner;
}

/** USD per collateral unit (whole dollars) → Morpho's 36-decimal scaled price. */
const morphoPrice = (usd: bigint): bigint => usd * 10n ** (36n + LOAN_DECIMALS - COLLATERAL_DECIMALS);

let build: CompileResult | undefined;

async function deploy(fq: string, signer: HardhatEthersSigner, ...args: unknown[]): Promise<Contract> {
  const c = pick(build!.contracts, fq);
  const factory = new ContractFactory(c.abi as never, c.bytecode, signer);
  const contract = await factory.deploy(...args);
  await contract.waitForDeployment();
  return contract as Contract;
}

async function send(tx: Promise<ContractTransactionResponse>): Promise<TransactionReceipt> {
  const receipt = await (await tx).wait();
  return receipt!;
}

async function morphoWorld(): Promise<MorphoWorld> {
  const [owner, supplier, b1, b2, b3, b4, liquidator] = (await ethers.getSigners()).slice(0, 7);
  const morpho = await deploy(`${SRC}/Morpho.sol:Morpho`, owner, owner.address);
  const loan = await deploy(`${SRC}/mocks/ERC20Mock.sol:ERC20Mock`, owner);
  const collateral = await deploy(`${SRC}/mocks/ERC20Mock.sol:ERC20Mock`, owner);
  const irm = await deploy(`${SRC}/mocks/IrmMock.sol:IrmMock`, owner);
  const oracleMock = await deploy(`${SRC}/mocks/OracleMock.sol:OracleMock`, owner);
  await send(oracleMock.setPrice(morphoPrice(2_000n)));
  const feed = await new MockAggregator__factory(owner).deploy(8);
  await send(feed.setAnswer(2_000n * 10n ** 8n));
  const adapter = await new ChainlinkMorphoOracle__factory(owner).deploy(feed, Number(COLLATERAL_DECIMALS), Number(LOAN_DECIMALS));
  if ((await adapter.price()) !== morphoPrice(2_000n)) throw new Error("ChainlinkMorphoOracle scale is wrong");

  await send(morpho.enableIrm(irm));
  await send(morpho.enableLltv(LLTV));
  const base = { loanToken: await loan.getAddress(), collateralToken: await collateral.getAddress(), irm: await irm.getAddress(), lltv: LLTV };
  const markets = {
    mock: { ...base, oracle: await oracleMock.getAddress() },
    chainlink: { ...base, oracle: await adapter.getAddress() },
  };
  const morphoAddr = await morpho.getAddress();
  const usdc = (n: bigint) => n * 10n ** LOAN_DECIMALS;
  const eth = (n: bigint) => n * 10n ** COLLATERAL_DECIMALS;

  await send((loan.connect(supplier) as Contract).setBalance(supplier.address, usdc(2_000_000n)));
  await send((loan.connect(supplier) as Contract).approve(morphoAddr, ethers.MaxUint256));
  const borrowers = { mock: [b1, b2], chainlink: [b3, b4] };
  for (const kind of ["mock", "chainlink"] as const) {
    const m = markets[kind];
    await send(morpho.createMarket(m));
    await send((morpho.connect(supplier) as Contract).supply(m, usdc(1_000_000n), 0, supplier.address, "0x"));
    // 10 ETH of collateral at 2,000 against 16,000 USDC borrowed (80 % LTV under an 86 % LLTV).
    for (const b of borrowers[kind]) {
      await send((collateral.connect(b) as Contract).setBalance(b.address, eth(10n)));
      await send((collateral.connect(b) as Contract).approve(morphoAddr, ethers.MaxUint256));
      await send((morpho.connect(b) as Contract).supplyCollateral(m, eth(10n), b.address, "0x"));
      await send((morpho.connect(b) as Contract).borrow(m, usdc(16_000n), 0, b.address, b.address));
    }
  }
  await send((loan.connect(liquidator) as Contract).setBalance(liquidator.address, usdc(1_000_000n)));
  await send((loan.connect(liquidator) as Contract).approve(morphoAddr, ethers.MaxUint256));
  return { morpho, loan, collateral, oracleMock, feed, markets, borrowers, liquidator };
}

/** Sets the market's price: OracleMock.setPrice, or a new round on the feed behind ChainlinkMorphoOracle. */
async function setPrice(w: MorphoWorld, kind: "mock" | "chainlink", usd: bigint): Promise<void> {
  if (kind === "mock") await send(w.oracleMock.setPrice(morphoPrice(usd)));
  else await send(w.feed.setAnswer(usd * 10n ** 8n));
}

/** Morpho `liquidate` seizing 2 of the borrower's 10 ETH (partial: no bad debt), by the one liquidator. */
export async function benchMorphoLiquidate(compiled: CompileResult, kind: "mock" | "chainlink"): Promise<Row> {
  build = compiled;
  const w = await loadFixture(morphoWorld);
  const market = w.markets[kind];
  const seized = 2n * 10n ** COLLATERAL_DECIMALS;
  const liquidate = async (borrower: HardhatEthersSigner, usd: bigint): Promise<Figure> => {
    await setPrice(w, kind, usd);
    const call: Send = (o) => (w.morpho.connect(w.liquidator) as Contract).liquidate(market, borrower.address, seized, 0, "0x", o);
    const m = await measure(call);
    // Morpho emits through its EventsLib library; solc 0.8.19 leaves library events out of Morpho's own ABI.
    const events = new Interface(build!.contracts[`${SRC}/libraries/EventsLib.sol:EventsLib`].abi as never);
    const names = m.receipt.logs
      .filter((l) => l.address === (w.morpho.target as string))
      .map((l) => events.parseLog(l)?.name);
    if (!names.includes("Liquidate") || !names.includes("AccrueInterest")) {
      throw new Error(`Morpho liquidate (${kind}) did not liquidate with interest accrual: ${names.join(",")}`);
    }
    return { gas: m.gas, method: "receipt" };
  };
  const [first, second] = w.borrowers[kind];
  const firstTouch = await liquidate(first, 1_800n);
  const steady = await liquidate(second, 1_799n);
  const oracle =
    kind === "mock"
      ? "the package's OracleMock (setPrice before each)"
      : "ChainlinkMorphoOracle over the project's MockAggregator (a new round before each)";
  return {
    id: kind === "mock" ? ROW.morphoMock : ROW.morphoChainlink,
    protocol: "morpho-blue",
    label: kind === "mock" ? "Morpho Blue liquidate (mock oracle)" : "Morpho Blue liquidate (same feed as Ballast)",
    description:
      `Morpho Blue 1.0.0, ${oracle}, IrmMock, ERC20Mock tokens, LLTV 86 %; borrower with 10 ETH collateral and 16,000 USDC debt, ` +
      `price 2,000 → 1,800; liquidate seizing 2 ETH (interest accrued in the call); first touch = the liquidator's first ` +
      `liquidation, steady = its second (another identical borrower, price 1,799)`,
    steady,
    firstTouch,
  };
}
