/**
 * `npm run demo:readme`: rewrites the demo figures of README.md (between its demo markers) from
 * reports/ftx-2022.json, so every figure of the README's demo section is one `npm run demo` wrote.
 */
import fs from "node:fs";
import path from "node:path";

import { replaceDemoBlock } from "../sim/readme";
import { BACKTEST_SCHEMA, type BacktestReport } from "../sim/types";

const root = path.join(__dirname, "..");
const reportPath = path.join(root, "reports", "ftx-2022.json");
const readmePath = path.join(root, "README.md");

try {
  if (!fs.existsSync(reportPath)) throw new Error("reports/ftx-2022.json does not exist: run `npm run demo` first");
  const report = JSON.parse(fs.readFileSync(reportPath, "utf8")) as BacktestReport;
  if (report.schema !== BACKTEST_SCHEMA) throw new Error(`reports/ftx-2022.json is not a ${BACKTEST_SCHEMA} report`);
  fs.writeFileSync(readmePath, replaceDemoBlock(fs.readFileSync(readmePath, "utf8"), report));
  console.log("README.md demo figures rewritten from reports/ftx-2022.json");
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
}
