import { expect } from "chai";
import fs from "node:fs";
import path from "node:path";

import { README_BEGIN, README_END, formatMarkdown, replaceReadmeBlock, validateResults } from "../../lib/bench/results";

const root = path.join(__dirname, "..", "..");

describe("README gas figures", () => {
  it("are exactly the tables bench/results.json renders (`npm run bench` then `npm run bench:readme`)", () => {
    const results = validateResults(JSON.parse(fs.readFileSync(path.join(root, "bench", "results.json"), "utf8")));
    const readme = fs.readFileSync(path.join(root, "README.md"), "utf8");
    const block = readme.slice(readme.indexOf(README_BEGIN) + README_BEGIN.length, readme.indexOf(README_END));
    expect(block).to.equal("\n" + formatMarkdown(results) + "\n");
    expect(replaceReadmeBlock(readme, results)).to.equal(readme);
  });

  it("refuses a README without the markers, naming them", () => {
    const results = validateResults(JSON.parse(fs.readFileSync(path.join(root, "bench", "results.json"), "utf8")));
    expect(() => replaceReadmeBlock("# no markers\n", results)).to.throw(`README.md lacks the benchmark markers ${README_BEGIN}`);
  });
});
