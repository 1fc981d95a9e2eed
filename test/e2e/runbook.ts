/**
 * What test/e2e/Runbook.test.ts needs to run docs/RUNBOOK.md as written: the marked blocks of the file, its
 * expected-output matcher, and subprocesses (a script that runs to its end, a background process with its output in a
 * file, each in its own process group so it can be stopped with everything it started).
 */

/**
 * The blocks of a runbook marked by a line `<!-- e2e:NAME -->` (alone on its line) right before a fenced block, by
 * NAME: the block's text with the fence's indentation removed. Command blocks are ```bash, expected outputs ```text
 * named `NAME:out`.
 */
export function parseRunbook(text: string): Map<string, { lang: string; body: string }> {
  const lines = text.split("\n");
  const out = new Map<string, { lang: string; body: string }>();
  for (let i = 0; i < lines.length; i++) {
    const m = /^\s*<!-- e2e:([\w:-]+) -->\s*$/.exec(lines[i]);
    if (!m) continue;
    let j = i + 1;
    while (j < lines.length && lines[j].trim() === "") j++;
    const fence = /^(\s*)```(\w+)\s*$/.exec(lines[j] ?? "");
    if (!fence) throw new Error(`RUNBOOK: the marker e2e:${m[1]} (line ${i + 1}) is not followed by a fenced block`);
    const indent = fence[1];
    const body: string[] = [];
    for (j++; j < lines.length && lines[j].trim() !== "```"; j++) {
      body.push(lines[j].startsWith(indent) ? lines[j].slice(indent.length) : lines[j].trimStart());
    }
    if (j >= lines.length) throw new Error(`RUNBOOK: the block of e2e:${m[1]} is not closed`);
    if (out.has(m[1])) throw new Error(`RUNBOOK: e2e:${m[1]} is marked twice`);
    out.set(m[1], { lang: fence[2], body: body.join("\n") });
    i = j;
  }
  return out;
}

/** An expected-output line as a regex: `…` matches any text, everything else literally; both sides trimmed. */
function lineRegex(line: string): RegExp {
  const parts = line.trim().split("…").map((p) => p.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`^${parts.join(".*")}$`);
}

/**
 * The expected lines (those that are not just `…`) that `output` does not show in this order, each matching a whole
 * (trimmed) line of it. Empty when all are there.
 */
export function missingLines(output: string, expected: string): string[] {
  const got = output.split("\n").map((l) => l.trim());
  const missing: string[] = [];
  let from = 0;
  for (const line of expected.split("\n")) {
    if (line.trim() === "" || line.trim() === "…") continue;
    const re = lineRegex(line);
    const k = got.findIndex((g, idx) => idx >= from && re.test(g));
    if (k < 0) missing.push(line.trim());
    else from = k + 1;
  }
  return missing;
}

// The subprocess helpers live in lib/processes.ts (the scan benchmark starts a node with them too).
export { exited, freePort, killGroup, runScript, startBackground, stop, waitFor, type Ran } from "../../lib/processes";
