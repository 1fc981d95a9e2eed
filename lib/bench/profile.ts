/**
 * Gas profile of one mined transaction from `debug_traceTransaction` on the in-process network: gas per contract,
 * every cold storage slot, and gas per Solidity source line (through the compiler's source maps). The tool behind
 * "measure before you optimise": `npx hardhat run scripts/trace.ts`.
 */
import { artifacts, ethers } from "hardhat";

interface Step { pc: number; op: string; gas: number; gasCost: number; depth: number; stack?: string[] }

interface CodeMap {
  name: string;
  pcToLine: Map<number, string>;
  /** the source map's jump type at a JUMP: "i" into a function, "o" out of one */
  pcToJump: Map<number, string>;
  /** the function (or modifier) whose body holds the pc's source location, "Contract.fn" */
  pcToFunction: Map<number, string>;
}

const CALLS = new Set(["CALL", "STATICCALL", "DELEGATECALL", "CALLCODE"]);

/** pc → "file:line" of a deployed contract, from its build info's source map. */
async function codeMap(name: string, fqn: string): Promise<CodeMap> {
  const bi = await artifacts.getBuildInfo(fqn);
  const [file, contract] = fqn.split(":");
  const out = bi!.output.contracts[file][contract] as any;
  // Library link placeholders (__$…$__, 40 characters) read as a 20-byte address: only the pc stepping needs the bytes.
  const code: string = (out.evm.deployedBytecode.object as string).replace(/__\$[0-9a-fA-F]{34}\$__/g, "0".repeat(40));
  const srcMap: string[] = out.evm.deployedBytecode.sourceMap.split(";");
  const ids = new Map<number, string>();
  for (const [path, s] of Object.entries(bi!.output.sources)) ids.set((s as any).id, path);
  const lineStarts = new Map<string, number[]>();
  const lineOf = (path: string, offset: number): number => {
    if (!lineStarts.has(path)) {
      const text = bi!.input.sources[path]?.content ?? "";
      const starts = [0];
      for (let i = 0; i < text.length; i++) if (text[i] === "\n") starts.push(i + 1);
      lineStarts.set(path, starts);
    }
    const starts = lineStarts.get(path)!;
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= offset) lo = mid; else hi = mid - 1; }
    return lo + 1;
  };
  // Where each function and modifier of a source starts, to name the function that holds an offset.
  const defs = new Map<string, { at: number; name: string }[]>();
  const defsOf = (path: string) => {
    if (!defs.has(path)) {
      // Comments and strings blanked, offsets kept: "contract" in a comment is not a definition.
      const text = (bi!.input.sources[path]?.content ?? "").replace(/\/\/[^\n]*|\/\*[\s\S]*?\*\/|"(?:[^"\\\n]|\\.)*"/g, (m) => m.replace(/[^\n]/g, " "));
      const out: { at: number; name: string }[] = [];
      let owner = "";
      const re = /\b(contract|library|abstract contract|interface)\s+(\w+)|\b(function|modifier)\s+(\w+)/g;
      for (let m = re.exec(text); m; m = re.exec(text)) {
        if (m[2]) owner = m[2];
        else out.push({ at: m.index, name: `${owner}.${m[4]}` });
      }
      defs.set(path, out);
    }
    return defs.get(path)!;
  };
  const functionAt = (path: string, offset: number): string => {
    let name = "";
    for (const d of defsOf(path)) {
      if (d.at > offset) break;
      name = d.name;
    }
    return name || path.split("/").pop()!;
  };
  const pcToLine = new Map<number, string>();
  const pcToJump = new Map<number, string>();
  const pcToFunction = new Map<number, string>();
  let s = 0, f = -1, j = "-", pc = 0, idx = 0;
  const bytes = Buffer.from(code, "hex");
  while (pc < bytes.length && idx < srcMap.length) {
    const parts = srcMap[idx].split(":");
    if (parts[0] !== "" && parts[0] !== undefined) s = Number(parts[0]);
    if (parts[2] !== "" && parts[2] !== undefined) f = Number(parts[2]);
    if (parts[3] !== "" && parts[3] !== undefined) j = parts[3];
    const path = ids.get(f);
    pcToLine.set(pc, path ? `${path.replace(/^contracts\//, "")}:${lineOf(path, s)}` : `${name}:generated`);
    pcToJump.set(pc, j);
    pcToFunction.set(pc, path ? functionAt(path, s) : `${name}:generated`);
    const op = bytes[pc];
    pc += op >= 0x60 && op <= 0x7f ? op - 0x5e : 1;
    idx++;
  }
  return { name, pcToLine, pcToJump, pcToFunction };
}

export interface Profile {
  gasUsed: bigint;
  perContract: [string, number][];
  coldSlots: { contract: string; slot: string; line: string }[];
  lines: [string, number][];
  /** SLOADs per (contract, slot), most read first: a slot read many times is a memoisation candidate. */
  slotReads: [string, number][];
  /**
   * Gas per internal function, from the source maps' jump markers (a JUMP marked "i" enters the function at its
   * destination, one marked "o" leaves): `self` is what the function's own steps cost, `total` includes the functions
   * it calls and the external calls it makes. Inlined functions count as their caller (the optimizer leaves no jump);
   * the compiler's shared helpers (checked arithmetic, ABI and storage coding) show as the file ("RebalanceLogic.sol").
   */
  functions: { name: string; self: number; total: number }[];
  /** PROFILE_FN=name ("RebalanceLogic._apply"): the gas of that function's own steps per opcode and source line */
  focus: [string, number][];
}

/**
 * Profiles `hash`. `contracts` names the addresses to attribute ({label: [address, fully qualified artifact]});
 * code at other addresses (linked libraries) is matched to an artifact of `libraries` by code length.
 */
export async function profile(hash: string, contracts: Record<string, [string, string]>, libraries: string[]): Promise<Profile> {
  const rc = await ethers.provider.getTransactionReceipt(hash);
  const maps = new Map<string, CodeMap>();
  const labels = new Map<string, string>();
  for (const [label, [addr, fqn]] of Object.entries(contracts)) {
    labels.set(addr.toLowerCase(), label);
    if (fqn) maps.set(addr.toLowerCase(), await codeMap(label, fqn));
  }
  const libByLen = new Map<number, string>();
  for (const fqn of libraries) {
    const a = await artifacts.readArtifact(fqn);
    libByLen.set((a.deployedBytecode.length - 2) / 2, fqn);
  }
  const mapFor = async (addr: string): Promise<CodeMap | undefined> => {
    const key = addr.toLowerCase();
    if (maps.has(key)) return maps.get(key);
    const code = await ethers.provider.getCode(addr);
    const fqn = libByLen.get((code.length - 2) / 2);
    const m = fqn ? await codeMap(fqn.split(":")[1], fqn) : undefined;
    if (m) labels.set(key, m.name);
    maps.set(key, m as CodeMap);
    return m;
  };
  const trace: { structLogs: Step[] } = await ethers.provider.send("debug_traceTransaction", [hash, { disableMemory: true, disableStorage: true }]);
  const logs = trace.structLogs;
  const tx = await ethers.provider.getTransaction(hash);
  const storageAt: string[] = [tx!.to!.toLowerCase()];
  const codeAt: string[] = [tx!.to!.toLowerCase()];
  const perContract = new Map<string, number>();
  const perLine = new Map<string, number>();
  const coldSlots: { contract: string; slot: string; line: string }[] = [];
  const slotReads = new Map<string, number>();
  const fnSelf = new Map<string, number>();
  const fnTotal = new Map<string, number>();
  /** PROFILE_FN=name: that function's own steps by opcode and line */
  const focus = process.env.PROFILE_FN;
  const focusSteps = new Map<string, number>();
  /** the internal-function stack of each call depth */
  const frames: string[][] = [];
  for (let i = 0; i < logs.length; i++) {
    const st = logs[i];
    const d = st.depth - 1;
    if (!frames[d] || (i > 0 && logs[i - 1].depth < st.depth)) frames[d] = [];
    frames.length = d + 1;
    let cost = st.gasCost;
    if (CALLS.has(st.op)) {
      const stack = st.stack!;
      const to = "0x" + stack[stack.length - 2].replace(/^0x/, "").padStart(64, "0").slice(-40);
      const next = logs[i + 1];
      if (next && next.depth === st.depth + 1) {
        codeAt[d + 1] = to;
        storageAt[d + 1] = st.op === "DELEGATECALL" ? storageAt[d] : to;
        // The tracer's gasCost of a call includes the gas forwarded to the callee, which the callee's own
        // steps account for: the call's own cost (access, value, memory) is the difference.
        cost = Math.max(0, st.gasCost - next.gas);
      }
    }
    const code = codeAt[d];
    const map = await mapFor(code);
    const label = labels.get(storageAt[d]) ?? storageAt[d];
    perContract.set(label, (perContract.get(label) ?? 0) + cost);
    let line = map?.pcToLine.get(st.pc) ?? `${labels.get(code) ?? code}:?`;
    if (st.op === "SLOAD") {
      const key = `${label} 0x${st.stack![st.stack!.length - 1].replace(/^0x/, "")}`;
      slotReads.set(key, (slotReads.get(key) ?? 0) + 1);
    }
    if (st.op === "SLOAD" && st.gasCost >= 2100) {
      coldSlots.push({ contract: label, slot: "0x" + st.stack![st.stack!.length - 1].replace(/^0x/, ""), line });
    }
    if (process.env.PROFILE_OPS) line = `${labels.get(code) ?? code} ${st.op}`;
    perLine.set(line, (perLine.get(line) ?? 0) + cost);

    const here = frames[d];
    const top = here.length ? here[here.length - 1] : `${map?.name ?? labels.get(code) ?? code} (entry)`;
    fnSelf.set(top, (fnSelf.get(top) ?? 0) + cost);
    if (focus === top) {
      const k = `${st.op} ${map?.pcToLine.get(st.pc) ?? ""}`;
      focusSteps.set(k, (focusSteps.get(k) ?? 0) + cost);
    }
    const open = new Set<string>([top]);
    for (let k = 0; k <= d; k++) for (const n of frames[k] ?? []) open.add(n);
    for (const n of open) fnTotal.set(n, (fnTotal.get(n) ?? 0) + cost);
    if (st.op === "JUMP" && map) {
      const jump = map.pcToJump.get(st.pc);
      const next = logs[i + 1];
      if (jump === "i" && next && next.depth === st.depth) here.push(map.pcToFunction.get(next.pc) ?? `${map.name}:${next.pc}`);
      else if (jump === "o" && here.length) here.pop();
    }
  }
  const functions = [...fnTotal.entries()]
    .map(([name, total]) => ({ name, self: fnSelf.get(name) ?? 0, total }))
    .sort((a, b) => b.total - a.total);
  const sorted = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]);
  return {
    gasUsed: rc!.gasUsed,
    perContract: sorted(perContract),
    coldSlots,
    lines: sorted(perLine),
    slotReads: sorted(slotReads),
    functions,
    focus: sorted(focusSteps),
  };
}
