/**
 * `npm run demo`: Ballast's main job on the in-process Hardhat network (no RPC, no keys). Replays the FTX collapse
 * (Bybit ETH perpetual, hourly, 5–14 Nov 2022, data/) through the real contracts with the keeper of keeper/ acting
 * after every price, on 40 accounts: 2x–5.5x, long and short, each a control without policy beside three policies
 * with a reserve. Prints the group table and the findings (where protection cost wealth), and writes
 * reports/ftx-2022.json and reports/ftx-2022.html (self-contained, opens offline).
 */
import { network } from "hardhat";

import { parseWadText, usd } from "../lib/format";
import { backtestCommand, DEFAULT_DATA, DEFAULT_SCENARIO, summaryTable } from "../sim/run";

async function main() {
  if (network.name !== "hardhat") throw new Error(`the demo runs on the in-process network; got --network ${network.name}`);
  console.log("Ballast demo — the FTX collapse (Bybit ETHUSDT perpetual, 1 h closes, 5–14 Nov 2022) on the in-process network");
  const { report, files } = await backtestCommand(
    { data: DEFAULT_DATA, scenario: DEFAULT_SCENARIO },
    "npm run demo",
    "Ballast demo: the FTX collapse, ETH perpetual, Nov 2022",
  );
  const t = report.totals;
  console.log("");
  console.log(summaryTable(report));
  console.log("");
  for (const f of report.findings) console.log(`- ${f}`);
  console.log("");
  console.log(
    `${t.accounts} accounts, ${report.steps.time.length} prices, ${t.liquidations} liquidations, ${t.rebalances} rebalances, ` +
      `keeper fees ${usd(parseWadText(t.keeperFeesUsd))} USD, bad debt ${usd(parseWadText(t.badDebtUsd))} USD, ${t.wallSeconds} s`,
  );
  for (const a of report.assumptions) console.log(`  assumption: ${a}`);
  console.log(`Report: ${files.html}`);
  console.log(`        ${files.json}`);
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
