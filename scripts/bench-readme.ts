/**
 * `npm run bench:readme`: rewrites the benchmark tables of README.md (between its bench markers) from
 * bench/results.json, so every gas figure in the README is one `npm run bench` wrote.
 */
import fs from "node:fs";
import path from "node:path";

import { replaceReadmeBlock, validateResults } from "../lib/bench/results";

const root = path.join(__dirname, "..");
const resultsPath = path.join(root, "bench", "results.json");
const readmePath = path.join(root, "README.md");

try {
  if (!fs.existsSync(resultsPath)) throw new Error("bench/results.json does not exist: run `npm run bench` first");
  const results = validateResults(JSON.parse(fs.readFileSync(resultsPath, "utf8")));
  fs.writeFileSync(readmePath, replaceReadmeBlock(fs.readFileSync(readmePath, "utf8"), results));
  console.log(`README.md benchmark tables rewritten from bench/results.json (${results.generatedAt})`);
} catch (e) {
  console.error(e instanceof Error ? e.message : String(e));
  process.exitCode = 1;
}
