import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { expect } from "chai";

import { ConfigError, loadConfig, parseDecimal } from "../../keeper/config";

const EXAMPLE = path.resolve(__dirname, "../../keeper/keeper.example.json");
const KEY = "0x" + "11".repeat(32);

function tmpConfig(obj: unknown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "keeper-config-"));
  const file = path.join(dir, "keeper.json");
  fs.writeFileSync(file, JSON.stringify(obj));
  return file;
}

const err = (f: () => unknown) => {
  try {
    f();
  } catch (e) {
    expect(e).to.be.instanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("no error");
};

describe("keeper config", () => {
  it("loads the documented example with exact bigint amounts", () => {
    const c = loadConfig(EXAMPLE, {});
    expect(c.network).to.equal("localhost");
    expect(c.rpcUrls).to.deep.equal(["http://127.0.0.1:8545"]);
    expect(c.maxFeePerGas).to.equal(100n * 10n ** 9n);
    expect(c.priorityFee).to.equal(10n ** 9n);
    expect(c.minProfitUsd).to.equal(10n ** 17n);
    expect(c.shard).to.deep.equal({ index: 0, count: 1 });
    expect(c.privateKey).to.equal(undefined);
    expect(c.gas.liquidate).to.equal(900_000);
    // no FlashLiquidator in the example: owing accounts are left to others
    expect([c.flashLiquidator, c.flashPool, c.flashMinProfitUsd, c.gas.flashLiquidate]).to.deep.equal([undefined, undefined, 10n ** 18n, 450_000]);
  });

  it("takes a FlashLiquidator and its pool together (file or KEEPER_FLASH_*), never one without the other", () => {
    const base = { network: "localhost", rpcUrls: ["http://x:1"], chainId: 31337 };
    const A = "0x00000000000000000000000000000000000000f1";
    const P = "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640";
    const c = loadConfig(tmpConfig(base), { KEEPER_FLASH_LIQUIDATOR: A, KEEPER_FLASH_POOL: P, KEEPER_FLASH_MIN_PROFIT_USD: "2.5" });
    expect([c.flashLiquidator, c.flashPool, c.flashMinProfitUsd]).to.deep.equal([A, P, 25n * 10n ** 17n]);
    expect(err(() => loadConfig(tmpConfig({ ...base, flashLiquidator: A }), {}))).to.equal(
      "config error: flashPool must be set together with flashLiquidator (the Uniswap V3 pool of the collateral and USDC), or neither — fix it in keeper.json",
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, flashLiquidator: "0x12", flashPool: P }), {}))).to.equal(
      "config error: flashLiquidator must be a 0x-prefixed 20-byte hex address — fix it in keeper.json",
    );
  });

  it("applies KEEPER_* overrides; the private key only from the environment", () => {
    const c = loadConfig(EXAMPLE, {
      KEEPER_RPC_URLS: "http://a:1, https://b:2",
      KEEPER_BATCH_SIZE: "3",
      KEEPER_MAX_FEE_PER_GAS_GWEI: "1.5",
      KEEPER_SHARD: "1/2",
      KEEPER_PRIVATE_KEY: KEY,
    });
    expect(c.rpcUrls).to.deep.equal(["http://a:1", "https://b:2"]);
    expect(c.batchSize).to.equal(3);
    expect(c.maxFeePerGas).to.equal(1_500_000_000n);
    expect(c.shard).to.deep.equal({ index: 1, count: 2 });
    expect(c.privateKey).to.equal(KEY);
  });

  it("names the key and where to fix it, in one line", () => {
    const base = { network: "localhost", rpcUrls: ["http://x:1"], chainId: 31337 };
    expect(err(() => loadConfig(tmpConfig({ ...base, rpcUrls: ["ws://x"] }), {}))).to.equal(
      "config error: rpcUrls[0] must be an http(s) URL — fix it in keeper.json",
    );
    expect(err(() => loadConfig(tmpConfig(base), { KEEPER_RPC_URLS: "localhost:8545" }))).to.equal(
      "config error: rpcUrls[0] must be an http(s) URL — fix it in KEEPER_RPC_URLS",
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, privateKey: KEY }), {}))).to.equal(
      "config error: privateKey must not be in the file — remove it from keeper.json and set KEEPER_PRIVATE_KEY in the environment",
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, minProfitUsd: 0.1 }), {}))).to.equal(
      'config error: minProfitUsd must be a non-negative USD amount as a decimal string such as "0.5" (at most 18 decimals) — fix it in keeper.json',
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, chainId: undefined }), {}))).to.equal(
      "config error: chainId is missing: it must be a chain id (an integer) >= 1 — fix it in keeper.json",
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, bumpPercent: 5 }), {}))).to.equal(
      "config error: bumpPercent must be a percentage (an integer) >= 10 — fix it in keeper.json",
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, shard: "2/2" }), {}))).to.equal(
      'config error: shard must be "i/N" with 0 <= i < N (e.g. "0/2") — fix it in keeper.json',
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, shard: "0/2" }), {}, { shard: "3/2" }))).to.equal(
      'config error: shard must be "i/N" with 0 <= i < N (e.g. "0/2") — fix it in the --shard flag',
    );
    expect(err(() => loadConfig(tmpConfig({ ...base, typo: 1 }), {}))).to.equal(
      "config error: unknown key typo — remove it from keeper.json (see keeper/keeper.example.json)",
    );
    expect(err(() => loadConfig(tmpConfig({ rpcUrls: ["http://x:1"], chainId: 1 }), {}))).to.equal(
      'config error: network is missing: set "network" (a deployment record name) or "engine" (an address) — fix it in keeper.json',
    );
    expect(err(() => loadConfig(tmpConfig(base), { KEEPER_PRIVATE_KEY: "0x12" }))).to.equal(
      "config error: KEEPER_PRIVATE_KEY must be a 32-byte hex private key — fix it in the environment",
    );
    expect(err(() => loadConfig("/nonexistent/keeper.json", {}))).to.equal(
      "config error: /nonexistent/keeper.json does not exist — pass an existing file to --config (see keeper/keeper.example.json)",
    );
  });

  it("parses decimals exactly", () => {
    expect(parseDecimal("0.1", 18)).to.equal(10n ** 17n);
    expect(parseDecimal("12", 9)).to.equal(12n * 10n ** 9n);
    expect(parseDecimal("0.000000001", 9)).to.equal(1n);
    expect(() => parseDecimal("0.0000000001", 9)).to.throw("more than 9 decimals");
  });
});
