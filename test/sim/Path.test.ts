import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";

import {
  loadOhlc,
  loadOhlcCsv,
  loadPriceCsv,
  ohlcPath,
  PriceDataError,
  type OhlcBar,
  type PricePoint,
} from "../../lib/prices";
import * as riskReplay from "../../lib/riskReplay";
import { buildPath, chainlinkSampling, closesPath, ohlcBarsPath, type PathPoint } from "../../sim/path";

const NOV2022 = "eth_usdt_bybitperp_1h_2022-11-05_2022-11-15.csv";
const MAR2020 = "eth_usdt_binance_1h_2020-03-09_2020-03-17.csv";
const FULL = "eth_usdt_binance_1h_full_2017-08-17_2021-06-10.csv";
const ETH_OHLC = "ohlc/andrewsiah_Binance_ETHUSDT_1h_crash_windows.csv";
const MAR2020_FROM = 1583712000;
const MAR2020_TO = 1584403200;

/** The error `fn` throws (fails when it throws none). */
function errorOf(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected an error, none was thrown");
}

/** Asserts that `fn` throws a PriceDataError with exactly `message` (one line). */
function expectDataError(fn: () => unknown, message: string) {
  const e = errorOf(fn);
  expect(e).to.be.instanceOf(PriceDataError);
  expect(e.name).to.equal("PriceDataError");
  expect(e.message).to.equal(message);
  expect(e.message).to.not.include("\n");
}

/** Asserts that `fn` throws an Error with exactly `message`. */
function expectError(fn: () => unknown, message: string) {
  const e = errorOf(fn);
  expect(e).to.be.instanceOf(Error);
  expect(e.message).to.equal(message);
}

/** T = 2020-03-09 00:00 UTC, a multiple of 3600 (so of the 60 s sampling grid too). */
const T = 1583712000;
/** 8-decimal price of a whole number of dollars. */
const usd = (n: number) => BigInt(n) * 10n ** 8n;
const pt = (time: number, price: bigint, kind: PathPoint["kind"] = "close"): PathPoint => ({ time, price, kind });
const sample = (time: number, price: bigint): PathPoint => ({ time, price, kind: "sample" });

describe("sim/path: price data and backtest paths", () => {
  let dir: string;
  /** Writes `content` to a fresh temp CSV and returns its absolute path. */
  let csv: (name: string, content: string) => string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "ballast-path-"));
    csv = (name, content) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, content);
      return file;
    };
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe("loadPriceCsv (lib/prices.ts)", () => {
    it("loads a data/ file by name, an absolute path, and a path relative to the current directory", () => {
      const rows = loadPriceCsv(NOV2022, 8);
      expect(rows.length).to.equal(240);
      expect(rows[0]).to.deep.equal({ timestamp: 1667606400, price: 165720000000n });
      expect(rows[239]).to.deep.equal({ timestamp: 1668466800, price: 124255000000n });

      const file = csv("ok.csv", "timestamp,price\n1667606400,1657.2\n1667610000,1652.8\n");
      const expected: PricePoint[] = [
        { timestamp: 1667606400, price: 165720000000n },
        { timestamp: 1667610000, price: 165280000000n },
      ];
      expect(loadPriceCsv(file, 8)).to.deep.equal(expected);
      const relative = path.relative(process.cwd(), file);
      expect(path.isAbsolute(relative)).to.equal(false);
      expect(loadPriceCsv(relative, 8)).to.deep.equal(expected);
      // 18 decimals (WAD), extra digits truncated at 2 decimals
      expect(loadPriceCsv(file, 18)[0].price).to.equal(1657_200000000000000000n);
      expect(loadPriceCsv(csv("trunc.csv", "timestamp,price\n1,1.239\n"), 2)[0].price).to.equal(123n);
    });

    it("skips blank lines but counts them in row numbers; accepts CRLF and a byte-order mark", () => {
      const crlf = csv("crlf.csv", "\uFEFFtimestamp,price\r\n1667606400,1657.2\r\n\r\n1667610000,1652.8\r\n");
      expect(loadPriceCsv(crlf, 8)).to.deep.equal([
        { timestamp: 1667606400, price: 165720000000n },
        { timestamp: 1667610000, price: 165280000000n },
      ]);
      const gap = csv("blank.csv", "timestamp,price\n\n1667610000,1\n\n1667610000,2\n");
      expectDataError(
        () => loadPriceCsv(gap),
        `${gap}, row 5: timestamp 1667610000 is not after the previous row's 1667610000`,
      );
    });

    it("missing file", () => {
      expectDataError(
        () => loadPriceCsv("no/such/prices.csv"),
        "no/such/prices.csv: no such file — give a path to a timestamp,price CSV",
      );
      const abs = path.join(dir, "absent.csv");
      expectDataError(() => loadPriceCsv(abs), `${abs}: no such file — give a path to a timestamp,price CSV`);
    });

    it("bad header: says what was expected and what was found", () => {
      const f = csv("header.csv", "time,price\n1667606400,1657.2\n");
      expectDataError(() => loadPriceCsv(f), `${f}, row 1: expected the header "timestamp,price", found "time,price"`);
      const g = csv("header2.csv", "1667606400,1657.2\n1667610000,1652.8\n");
      expectDataError(
        () => loadPriceCsv(g),
        `${g}, row 1: expected the header "timestamp,price", found "1667606400,1657.2"`,
      );
    });

    it("a row without exactly 2 fields", () => {
      const three = csv("three.csv", "timestamp,price\n1667606400,1657.2\n1667610000,1652.8,7\n");
      expectDataError(
        () => loadPriceCsv(three),
        `${three}, row 3: expected 2 fields (timestamp,price), found 3: "1667610000,1652.8,7"`,
      );
      const one = csv("one.csv", "timestamp,price\n1667606400\n");
      expectDataError(
        () => loadPriceCsv(one),
        `${one}, row 2: expected 2 fields (timestamp,price), found 1: "1667606400"`,
      );
    });

    it("a timestamp that is not a positive integer (and one in milliseconds)", () => {
      const cases: [string, string][] = [
        ["abc", `timestamp "abc" is not a positive integer (unix seconds)`],
        ["0", `timestamp "0" is not a positive integer (unix seconds)`],
        ["-3600", `timestamp "-3600" is not a positive integer (unix seconds)`],
        ["1667606400.5", `timestamp "1667606400.5" is not a positive integer (unix seconds)`],
        ["", `timestamp "" is not a positive integer (unix seconds)`],
        [
          "1667606400000",
          "timestamp 1667606400000 looks like milliseconds: the column is unix seconds (divide by 1000)",
        ],
      ];
      cases.forEach(([ts, problem], i) => {
        const f = csv(`ts${i}.csv`, `timestamp,price\n1600000000,1\n${ts},1657.2\n`);
        expectDataError(() => loadPriceCsv(f), `${f}, row 3: ${problem}`);
      });
    });

    it("non-increasing timestamps", () => {
      const same = csv("same.csv", "timestamp,price\n1667606400,1657.2\n1667610000,1652.8\n1667610000,1650\n");
      expectDataError(
        () => loadPriceCsv(same),
        `${same}, row 4: timestamp 1667610000 is not after the previous row's 1667610000`,
      );
      const back = csv("back.csv", "timestamp,price\n1667610000,1657.2\n1667606400,1652.8\n");
      expectDataError(
        () => loadPriceCsv(back),
        `${back}, row 3: timestamp 1667606400 is not after the previous row's 1667610000`,
      );
    });

    it("a price that is not a plain decimal", () => {
      for (const [i, price] of ["1.5e3", "abc", "", "+5", "$5", "1.", ".5", "1 657"].entries()) {
        const f = csv(`price${i}.csv`, `timestamp,price\n1667606400,${price}\n`);
        expectDataError(
          () => loadPriceCsv(f),
          `${f}, row 2: price ${JSON.stringify(
            price.trim(),
          )} is not a plain decimal number (digits with an optional "." part, e.g. 1657.2)`,
        );
      }
    });

    it("a price <= 0 (or 0 at the requested decimals)", () => {
      for (const [i, price] of ["0", "0.00", "-3", "-0.5"].entries()) {
        const f = csv(`zero${i}.csv`, `timestamp,price\n1667606400,1\n1667610000,${price}\n`);
        expectDataError(() => loadPriceCsv(f), `${f}, row 3: price ${price} is not positive (prices must be > 0)`);
      }
      const tiny = csv("tiny.csv", "timestamp,price\n1667606400,0.000000001\n");
      expectDataError(
        () => loadPriceCsv(tiny, 8),
        `${tiny}, row 2: price 0.000000001 is 0 at 8 decimals (prices must be > 0)`,
      );
      expect(loadPriceCsv(tiny, 9)[0].price).to.equal(1n);
    });

    it("an empty file, a file of blank lines, and a header without rows", () => {
      const empty = csv("empty.csv", "");
      expectDataError(
        () => loadPriceCsv(empty),
        `${empty}, row 1: empty file: expected the header "timestamp,price" and at least one row`,
      );
      const blank = csv("blank-only.csv", "\n\n  \n");
      expectDataError(
        () => loadPriceCsv(blank),
        `${blank}, row 1: empty file: expected the header "timestamp,price" and at least one row`,
      );
      const headerOnly = csv("header-only.csv", "timestamp,price\n");
      expectDataError(
        () => loadPriceCsv(headerOnly),
        `${headerOnly}, row 2: no rows after the header "timestamp,price"`,
      );
    });

    it("every timestamp,price file of data/ passes the checks", () => {
      const files = fs
        .readdirSync(path.join(__dirname, "..", "..", "data"))
        .filter((f) => f.endsWith(".csv") && !f.includes("_rounds_"));
      expect(files.length).to.equal(11);
      for (const f of files) expect(loadPriceCsv(f, 8).length, f).to.be.greaterThan(0);
    });
  });

  describe("loadOhlcCsv and loadOhlc (lib/prices.ts)", () => {
    const OHLC_LAYOUTS = "timestamp,open,high,low,close (or unix,open,high,low,close as in data/ohlc/)";

    it("reads the generic layout, sorted by time (columns in any order, any case, extra columns ignored)", () => {
      const f = csv(
        "generic.csv",
        "Close,timestamp,open,HIGH,low,volume\n95,1583715600,100,105,90,7\n203.14,1583712000,199.43,207.47,197.71,8\n",
      );
      expect(loadOhlcCsv(f)).to.deep.equal([
        { timestamp: 1583712000, open: 19943000000n, high: 20747000000n, low: 19771000000n, close: 20314000000n },
        { timestamp: 1583715600, open: usd(100), high: usd(105), low: usd(90), close: usd(95) },
      ]);
    });

    it('reads the data/ohlc source layout: unix in seconds ("1583712000.0") or milliseconds, converted to seconds', () => {
      const f = csv(
        "source.csv",
        "unix,date,symbol,open,high,low,close,Volume ETH\n" +
          "1583715600000,2020-03-09 01:00:00,ETH/USDT,203.14000000,206.54000000,200.51000000,204.49000000,1\n" +
          "1583712000.0,2020-03-09 12-AM,ETH/USDT,199.43,207.47,197.71,203.14,2\n",
      );
      expect(loadOhlcCsv(f)).to.deep.equal([
        { timestamp: 1583712000, open: 19943000000n, high: 20747000000n, low: 19771000000n, close: 20314000000n },
        { timestamp: 1583715600, open: 20314000000n, high: 20654000000n, low: 20051000000n, close: 20449000000n },
      ]);
    });

    it("reads the real files whole (385 bars each, first and last exact)", () => {
      const bars = loadOhlcCsv(ETH_OHLC);
      expect(bars.length).to.equal(385);
      expect(bars[0]).to.deep.equal({
        timestamp: 1583712000,
        open: 19943000000n,
        high: 20747000000n,
        low: 19771000000n,
        close: 20314000000n,
      });
      // the 2021-06-10 row, first in the file (milliseconds), sorts last
      expect(bars[384]).to.deep.equal({
        timestamp: 1623283200,
        open: 261020000000n,
        high: 262200000000n,
        low: 259540000000n,
        close: 262087000000n,
      });
      expect(loadOhlcCsv("ohlc/andrewsiah_Binance_BTCUSDT_1h_crash_windows.csv").length).to.equal(385);
    });

    it("loadOhlc keeps its behaviour: the hourly window [from, to), sorted; lib/riskReplay re-exports the same functions", () => {
      const bars = loadOhlc(ETH_OHLC, MAR2020_FROM, MAR2020_TO);
      expect(bars.length).to.equal(192);
      expect(bars[0].timestamp).to.equal(MAR2020_FROM);
      expect(bars[191].timestamp).to.equal(MAR2020_TO - 3600);
      // Black Thursday's wick: 86.00 on 2020-03-13 02:00 UTC (data/SOURCES.md)
      expect(bars.find((b) => b.timestamp === 1584064800)).to.deep.equal({
        timestamp: 1584064800,
        open: 9662000000n,
        high: 12020000000n,
        low: 8600000000n,
        close: 11112000000n,
      });
      expect(loadOhlc(ETH_OHLC, 1600000000, 1600003600)).to.deep.equal([]);
      expect(riskReplay.loadOhlc).to.equal(loadOhlc);
      expect(riskReplay.ohlcPath).to.equal(ohlcPath);
    });

    it("loadOhlc: a gap in the window names the row", () => {
      const f = csv(
        "gap.csv",
        "timestamp,open,high,low,close\n1583712000,1,1,1,1\n1583715600,1,1,1,1\n1583722800,1,1,1,1\n",
      );
      expectDataError(
        () => loadOhlc(f, 0, 2000000000),
        `${f}, row 4: gap before 1583722800: the bar comes 7200 s after the previous one (row 3), not 3600`,
      );
      expect(loadOhlc(f, 0, 1583720000).length).to.equal(2);
    });

    it("missing file", () => {
      expectDataError(
        () => loadOhlcCsv("no/such/ohlc.csv"),
        `no/such/ohlc.csv: no such file — give a path to an OHLC CSV with the columns ${OHLC_LAYOUTS}`,
      );
    });

    it("missing columns", () => {
      const noClose = csv("noclose.csv", "timestamp,open,high,low\n1583712000,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(noClose),
        `${noClose}, row 1: missing column "close": expected ${OHLC_LAYOUTS}, found "timestamp,open,high,low"`,
      );
      const noTime = csv("notime.csv", "time,open,high,low,close\n1583712000,1,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(noTime),
        `${noTime}, row 1: missing column "timestamp": expected ${OHLC_LAYOUTS}, found "time,open,high,low,close"`,
      );
      const source = csv("source-missing.csv", "unix,date,symbol,open,close\n1583712000,d,s,1,1\n");
      expectDataError(
        () => loadOhlcCsv(source),
        `${source}, row 1: missing columns "high", "low": expected ${OHLC_LAYOUTS}, found "unix,date,symbol,open,close"`,
      );
      const fields = csv("fields.csv", "timestamp,open,high,low,close\n1583712000,1,1,1,1\n1583715600,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(fields),
        `${fields}, row 3: expected 5 fields as in the header, found 4: "1583715600,1,1,1"`,
      );
    });

    it("times: not a positive integer, milliseconds that are not a whole second", () => {
      const generic = csv("ots.csv", "timestamp,open,high,low,close\n1583712000.0,1,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(generic),
        `${generic}, row 2: timestamp "1583712000.0" is not a positive integer (unix seconds)`,
      );
      const ms = csv("oms.csv", "timestamp,open,high,low,close\n1583712000000,1,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(ms),
        `${ms}, row 2: timestamp 1583712000000 looks like milliseconds: the column is unix seconds (divide by 1000)`,
      );
      const unix = csv("ounix.csv", "unix,open,high,low,close\n1583712000.5,1,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(unix),
        `${unix}, row 2: unix "1583712000.5" is not a positive integer (unix seconds or milliseconds)`,
      );
      const part = csv("opart.csv", "unix,open,high,low,close\n1583712000500,1,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(part),
        `${part}, row 2: unix 1583712000500 (milliseconds) is not a whole second`,
      );
    });

    it("non-positive and non-decimal prices", () => {
      const zero = csv("ozero.csv", "timestamp,open,high,low,close\n1583712000,1,2,0,1\n");
      expectDataError(() => loadOhlcCsv(zero), `${zero}, row 2: low 0 is not positive (prices must be > 0)`);
      const neg = csv("oneg.csv", "timestamp,open,high,low,close\n1583712000,1,2,1,1\n1583715600,-1,2,1,1\n");
      expectDataError(() => loadOhlcCsv(neg), `${neg}, row 3: open -1 is not positive (prices must be > 0)`);
      const word = csv("oword.csv", "timestamp,open,high,low,close\n1583712000,1,n/a,1,1\n");
      expectDataError(
        () => loadOhlcCsv(word),
        `${word}, row 2: high "n/a" is not a plain decimal number (digits with an optional "." part, e.g. 1657.2)`,
      );
    });

    it("a bar whose high is below max(open, close) or whose low is above min(open, close)", () => {
      const cases: [string, string][] = [
        ["100,99,90,95", "high 99 is below the open 100"],
        ["95,99,90,100", "high 99 is below the close 100"],
        ["100,110,101,105", "low 101 is above the open 100"],
        ["105,110,101,100", "low 101 is above the close 100"],
      ];
      cases.forEach(([ohlc, problem], i) => {
        const f = csv(`range${i}.csv`, `timestamp,open,high,low,close\n1583708400,1,1,1,1\n1583712000,${ohlc}\n`);
        expectDataError(() => loadOhlcCsv(f), `${f}, row 3: ${problem}`);
      });
    });

    it("two bars at one time (after sorting), also across seconds and milliseconds", () => {
      const dup = csv(
        "odup.csv",
        "timestamp,open,high,low,close\n1583715600,1,1,1,1\n1583712000,1,1,1,1\n\n1583715600,2,2,2,2\n",
      );
      expectDataError(
        () => loadOhlcCsv(dup),
        `${dup}, row 5: a second bar at 1583715600 (unix seconds): row 2 has the same time`,
      );
      const mixed = csv("omixed.csv", "unix,open,high,low,close\n1583712000000,1,1,1,1\n1583712000.0,1,1,1,1\n");
      expectDataError(
        () => loadOhlcCsv(mixed),
        `${mixed}, row 3: a second bar at 1583712000 (unix seconds): row 2 has the same time`,
      );
    });

    it("an empty file and a header without bars", () => {
      const empty = csv("oempty.csv", "");
      expectDataError(
        () => loadOhlcCsv(empty),
        `${empty}, row 1: empty file: expected a header with the columns ${OHLC_LAYOUTS}`,
      );
      const headerOnly = csv("oheader.csv", "timestamp,open,high,low,close\n");
      expectDataError(() => loadOhlcCsv(headerOnly), `${headerOnly}, row 2: no bars after the header`);
    });
  });

  describe("closesPath", () => {
    it("one point per row of the real Nov 2022 file", () => {
      const points = closesPath(loadPriceCsv(NOV2022, 8));
      expect(points.length).to.equal(240);
      expect(points[0]).to.deep.equal(pt(1667606400, 165720000000n));
      expect(points[1]).to.deep.equal(pt(1667610000, 165280000000n));
      expect(points[239]).to.deep.equal(pt(1668466800, 124255000000n));
      expect(points.every((p) => p.kind === "close")).to.equal(true);
    });

    it("refuses an empty or unordered series and non-positive prices", () => {
      expectError(() => closesPath([]), "closesPath: the path is empty");
      expectError(
        () =>
          closesPath([
            { timestamp: T, price: 1n },
            { timestamp: T, price: 1n },
          ]),
        `closesPath: point 1 has time ${T}, not after point 0's ${T}`,
      );
      expectError(() => closesPath([{ timestamp: T, price: 0n }]), "closesPath: point 0 has price 0, not a bigint > 0");
    });
  });

  describe("ohlcBarsPath", () => {
    const down: OhlcBar = { timestamp: T, open: usd(100), high: usd(105), low: usd(90), close: usd(95) };
    const up: OhlcBar = { timestamp: T + 3600, open: usd(95), high: usd(110), low: usd(94), close: usd(108) };

    it("a down bar goes open → low → high → close, an up bar open → high → low → close, at ¼ intervals", () => {
      expect(ohlcBarsPath([down, up])).to.deep.equal([
        pt(T, usd(100), "open"),
        pt(T + 900, usd(90), "low"),
        pt(T + 1800, usd(105), "high"),
        pt(T + 2700, usd(95), "close"),
        // the last bar takes the previous interval (3600)
        pt(T + 3600, usd(95), "open"),
        pt(T + 4500, usd(110), "high"),
        pt(T + 5400, usd(94), "low"),
        pt(T + 6300, usd(108), "close"),
      ]);
    });

    it("a flat bar (close = open) counts as up; a single bar uses 3600 s", () => {
      const flat: OhlcBar = { timestamp: T, open: usd(100), high: usd(101), low: usd(99), close: usd(100) };
      expect(ohlcBarsPath([flat])).to.deep.equal([
        pt(T, usd(100), "open"),
        pt(T + 900, usd(101), "high"),
        pt(T + 1800, usd(99), "low"),
        pt(T + 2700, usd(100), "close"),
      ]);
    });

    it("each bar's interval is the next bar's time minus its own, quarters rounded down", () => {
      const bar = (timestamp: number): OhlcBar => ({
        timestamp,
        open: usd(2),
        high: usd(3),
        low: usd(1),
        close: usd(2),
      });
      const times = ohlcBarsPath([bar(T), bar(T + 10), bar(T + 10 + 7200)]).map((p) => p.time - T);
      // interval 10: 0, 2 (10/4 = 2.5), 5, 7 (30/4 = 7.5); interval 7200 for the second bar and (previous) the last
      expect(times).to.deep.equal([0, 2, 5, 7, 10, 1810, 3610, 5410, 7210, 9010, 10810, 12610]);
    });

    it("is the risk model's ohlcPath in absolute time (one implementation)", () => {
      const bars = loadOhlc(ETH_OHLC, MAR2020_FROM, MAR2020_TO);
      const steps = ohlcPath(bars);
      const points = ohlcBarsPath(bars);
      expect(points.length).to.equal(768);
      expect(points.map((p) => ({ offset: p.time - MAR2020_FROM, price: p.price, kind: p.kind }))).to.deep.equal(
        steps.map((s) => ({ offset: s.offset, price: s.price, kind: s.kind })),
      );
      expect(steps[767]).to.deep.equal({ offset: 191 * 3600 + 2700, price: 11102000000n, bar: 191, kind: "close" });
    });

    it("refuses no bars, bars out of order or closer than 4 s, and bars whose range does not contain open and close", () => {
      expectError(() => ohlcBarsPath([]), "ohlcPath: no bars");
      expectError(
        () => ohlcBarsPath([up, down]),
        `ohlcPath: bar 1 (time ${T}) is not at least 4 s after bar 0 (time ${
          T + 3600
        }): bars must be in time order, each interval holds four steps`,
      );
      expectError(
        () => ohlcBarsPath([down, { ...up, timestamp: T + 3 }]),
        `ohlcPath: bar 1 (time ${
          T + 3
        }) is not at least 4 s after bar 0 (time ${T}): bars must be in time order, each interval holds four steps`,
      );
      expectError(
        () => ohlcBarsPath([{ ...down, high: usd(99) }]),
        "ohlcPath: bar 0: high 9900000000 and low 9000000000 do not contain open 10000000000 and close 9500000000",
      );
      expectError(() => ohlcBarsPath([{ ...down, low: 0n }]), "ohlcPath: bar 0 has a price <= 0");
    });
  });

  describe("chainlinkSampling", () => {
    it("a 2 % rise over one hour at 50 bps: the ticks computed by hand", () => {
      // p(k minutes) = 100 + trunc(2e8 × 60k / 3600) / 1e8 = 100 + trunc(1e8 × k / 30) / 1e8
      // from 100:          need p − 100 ≥ 0.5                → k = 15: 100.5 exactly
      // from 100.5:        need (p − 100.5) × 1e4 ≥ 50 × 100.5 (p ≥ 101.0025) → k = 30 gives 101 (no), k = 31: 101.03333333
      // from 101.03333333: need p ≥ 101.53850000 (50 × 10103333333 = 505166666650 ≤ diff × 1e4)
      //                    k = 46: 101.53333333 (no), k = 47: 101.56666666
      // from 101.56666666: need p ≥ 102.0745 > 102: no more deviation rounds; 3600 − 2820 < heartbeat
      const path = [pt(T, usd(100)), pt(T + 3600, usd(102))];
      expect(chainlinkSampling(path, { deviationBps: 50, heartbeat: 3600 })).to.deep.equal([
        sample(T, 10000000000n),
        sample(T + 15 * 60, 10050000000n),
        sample(T + 31 * 60, 10103333333n),
        sample(T + 47 * 60, 10156666666n),
      ]);
    });

    it("the same drop: 100 → 98 over one hour at 50 bps", () => {
      // p(k) = 100 − trunc(1e8 × k / 30) / 1e8; from 100: k = 15 → 99.5; from 99.5 need p ≤ 99.0025: k = 30 → 99;
      // from 99 need p ≤ 98.505: k = 45 → 98.5; from 98.5 need p ≤ 98.0075: k = 60, the point itself → 98
      const path = [pt(T, usd(100)), pt(T + 3600, usd(98))];
      expect(chainlinkSampling(path, { deviationBps: 50, heartbeat: 3600 })).to.deep.equal([
        sample(T, usd(100)),
        sample(T + 900, 9950000000n),
        sample(T + 1800, usd(99)),
        sample(T + 2700, 9850000000n),
        sample(T + 3600, usd(98)),
      ]);
    });

    it("heartbeat rounds on a flat path, at the first tick at or after last + heartbeat", () => {
      const flat = [pt(T, usd(100)), pt(T + 10800, usd(100))];
      expect(chainlinkSampling(flat, { deviationBps: 50, heartbeat: 3600 })).to.deep.equal([
        sample(T, usd(100)),
        sample(T + 3600, usd(100)),
        sample(T + 7200, usd(100)),
        sample(T + 10800, usd(100)),
      ]);
      // heartbeat 3630 on a 60 s grid: 3660, then 3660 + 3630 = 7290 → 7320; 7320 + 3630 > 10800
      expect(chainlinkSampling(flat, { deviationBps: 50, heartbeat: 3630 })).to.deep.equal([
        sample(T, usd(100)),
        sample(T + 3660, usd(100)),
        sample(T + 7320, usd(100)),
      ]);
      // resolution 900: ticks every 15 minutes
      expect(
        chainlinkSampling(flat, { deviationBps: 50, heartbeat: 3630, resolution: 900 }).map((r) => r.time - T),
      ).to.deep.equal([0, 4500, 9000]);
      // a path shorter than the heartbeat that never moves: only the first point
      expect(
        chainlinkSampling([pt(T, usd(1)), pt(T + 60, usd(1))], { deviationBps: 50, heartbeat: 3600 }),
      ).to.deep.equal([sample(T, usd(1))]);
    });

    it("input points are ticks too, off the grid: a wick is published", () => {
      const spike = [pt(T, usd(100), "open"), pt(T + 30, usd(90), "low"), pt(T + 60, usd(100), "close")];
      expect(chainlinkSampling(spike, { deviationBps: 50, heartbeat: 3600 })).to.deep.equal([
        sample(T, usd(100)),
        sample(T + 30, usd(90)),
        sample(T + 60, usd(100)),
      ]);
      // a first point off the grid: the next ticks are the grid's (T + 60, T + 120), then the last point
      const offGrid = [pt(T + 7, usd(100)), pt(T + 127, usd(100))];
      expect(chainlinkSampling(offGrid, { deviationBps: 50, heartbeat: 1 }).map((r) => r.time - T)).to.deep.equal([
        7, 60, 120, 127,
      ]);
    });

    it("interpolation truncates toward zero (bigint division), both directions", () => {
      // heartbeat 60 publishes every tick; 1 unit over 180 s: trunc(−1/3) = trunc(−2/3) = 0
      const down = [pt(T, 100000000n), pt(T + 180, 99999999n)];
      expect(chainlinkSampling(down, { deviationBps: 10000, heartbeat: 60 })).to.deep.equal([
        sample(T, 100000000n),
        sample(T + 60, 100000000n),
        sample(T + 120, 100000000n),
        sample(T + 180, 99999999n),
      ]);
      // 2 units over 180 s: trunc(2/3) = 0, trunc(4/3) = 1
      const up = [pt(T, 100000000n), pt(T + 180, 100000002n)];
      expect(chainlinkSampling(up, { deviationBps: 10000, heartbeat: 60 }).map((r) => r.price)).to.deep.equal([
        100000000n,
        100000000n,
        100000001n,
        100000002n,
      ]);
    });

    it("refuses bad options and bad paths", () => {
      const path = [pt(T, usd(1))];
      expectError(
        () => chainlinkSampling(path, { deviationBps: 0, heartbeat: 3600 }),
        "deviationBps must be a positive integer (basis points), got 0",
      );
      expectError(
        () => chainlinkSampling(path, { deviationBps: 0.5, heartbeat: 3600 }),
        "deviationBps must be a positive integer (basis points), got 0.5",
      );
      expectError(
        () => chainlinkSampling(path, { deviationBps: "50" as unknown as number, heartbeat: 3600 }),
        'deviationBps must be a positive integer (basis points), got "50"',
      );
      expectError(
        () => chainlinkSampling(path, { deviationBps: 50, heartbeat: -1 }),
        "heartbeat must be a positive integer (seconds), got -1",
      );
      expectError(
        () => chainlinkSampling(path, { deviationBps: 50, heartbeat: 3600, resolution: 0 }),
        "resolution must be a positive integer (seconds), got 0",
      );
      expectError(
        () => chainlinkSampling([], { deviationBps: 50, heartbeat: 3600 }),
        "chainlinkSampling: the path is empty",
      );
      expectError(
        () => chainlinkSampling([pt(T, usd(1)), pt(T - 1, usd(1))], { deviationBps: 50, heartbeat: 3600 }),
        `chainlinkSampling: point 1 has time ${T - 1}, not after point 0's ${T}`,
      );
    });

    it("Mar 2020 OHLC (Binance ETH): 2404 rounds at 50 bps / 1 h, every bar's low within the threshold of a round", () => {
      const bars = loadOhlc(ETH_OHLC, MAR2020_FROM, MAR2020_TO);
      const points = ohlcBarsPath(bars);
      const rounds = chainlinkSampling(points, { deviationBps: 50, heartbeat: 3600 });
      // 2404 checked against an independent second-by-second replay of the same rules (Python, exact integers)
      expect(rounds.length).to.equal(2404);
      expect(rounds[0]).to.deep.equal(sample(MAR2020_FROM, 19943000000n));
      expect(rounds[1]).to.deep.equal(sample(MAR2020_FROM + 120, 20050200000n));
      expect(rounds[2403]).to.deep.equal(sample(MAR2020_TO - 900, 11102000000n));
      // Black Thursday's 86.00 wick (bar 2020-03-13 02:00, an up bar: its low at +½ h) is a round of its own
      expect(rounds.filter((r) => r.price === 8600000000n)).to.deep.equal([sample(1584064800 + 1800, 8600000000n)]);
      // every low: the last round at or before it is within 50 bps of it (else the low itself would be a round)
      const lows = points.filter((p) => p.kind === "low");
      expect(lows.length).to.equal(192);
      let j = 0;
      for (const low of lows) {
        while (j + 1 < rounds.length && rounds[j + 1].time <= low.time) j++;
        const r = rounds[j];
        const move = low.price > r.price ? low.price - r.price : r.price - low.price;
        expect(
          move * 10_000n < 50n * r.price || (r.time === low.time && r.price === low.price),
          `low at ${low.time}`,
        ).to.equal(true);
      }
      for (let i = 1; i < rounds.length; i++) expect(rounds[i].time - rounds[i - 1].time).to.be.within(1, 3600);
    });
  });

  describe("buildPath", () => {
    it("closes of a data file, with their row count", () => {
      const { points, rows } = buildPath({ data: NOV2022, sampling: "close" });
      expect(rows).to.equal(240);
      expect(points).to.deep.equal(closesPath(loadPriceCsv(NOV2022, 8)));
    });

    it("with --ohlc: the bars within the data's time range; chainlink sampling on top (defaults 50 bps, 3600 s)", () => {
      const ohlc = buildPath({ data: MAR2020, ohlc: ETH_OHLC, sampling: "close" });
      expect(ohlc.rows).to.equal(192);
      expect(ohlc.points).to.deep.equal(ohlcBarsPath(loadOhlc(ETH_OHLC, MAR2020_FROM, MAR2020_TO)));
      expect(ohlc.points[0]).to.deep.equal(pt(MAR2020_FROM, 19943000000n, "open"));
      expect(ohlc.points[767]).to.deep.equal(pt(MAR2020_TO - 900, 11102000000n, "close"));

      const sampled = buildPath({ data: MAR2020, ohlc: ETH_OHLC, sampling: "chainlink" });
      expect(sampled.rows).to.equal(192);
      expect(sampled.points).to.deep.equal(chainlinkSampling(ohlc.points, { deviationBps: 50, heartbeat: 3600 }));
      expect(sampled.points.length).to.equal(2404);
      const wide = buildPath({
        data: MAR2020,
        ohlc: ETH_OHLC,
        sampling: "chainlink",
        deviationBps: 200,
        heartbeat: 7200,
      });
      expect(wide.points).to.deep.equal(chainlinkSampling(ohlc.points, { deviationBps: 200, heartbeat: 7200 }));
      // 546 and the last round checked against the same independent replay (Python, exact integers)
      expect(wide.points.length).to.equal(546);
      expect(wide.points[545]).to.deep.equal(sample(1584402240, 11075533333n));
    });

    it("closes sampled: the Nov 2022 closes through a 1 % / 1 h feed", () => {
      const { points, rows } = buildPath({ data: NOV2022, sampling: "chainlink", deviationBps: 100 });
      expect(rows).to.equal(240);
      expect(points).to.deep.equal(
        chainlinkSampling(closesPath(loadPriceCsv(NOV2022, 8)), { deviationBps: 100, heartbeat: 3600 }),
      );
      // 298 and the rounds below checked against an independent second-by-second replay (Python, exact integers)
      expect(points.length).to.equal(298);
      expect(points[0]).to.deep.equal(sample(1667606400, 165720000000n));
      expect(points[1]).to.deep.equal(sample(1667610000, 165280000000n));
      // the last close (1242.55 at 1668466800) is within 1 % of this round and less than 1 h after it
      expect(points[297]).to.deep.equal(sample(1668465180, 123199750000n));
    });

    it("no OHLC bar within the data's time range names both files", () => {
      expectDataError(
        () => buildPath({ data: NOV2022, ohlc: ETH_OHLC, sampling: "close" }),
        `${ETH_OHLC}: no OHLC bar falls within the time range of ${NOV2022} (1667606400 to 1668466800); the OHLC file covers 1583712000 to 1623283200`,
      );
    });

    it("a gap between the OHLC bars within the range names the row", () => {
      expectDataError(
        () => buildPath({ data: FULL, ohlc: ETH_OHLC, sampling: "close" }),
        `${ETH_OHLC}, row 195: the bar at 1621123200 comes 36723600 s after the previous one (row 194) while the bars before are 3600 s apart: the OHLC replay of ${FULL} needs evenly spaced bars`,
      );
    });

    it("refuses bad options", () => {
      expectError(
        () => buildPath({ data: NOV2022, sampling: "hourly" as "close" }),
        'sampling must be "close" or "chainlink", got "hourly"',
      );
      expectError(
        () => buildPath({ data: NOV2022, sampling: "chainlink", deviationBps: 0.5 }),
        "deviationBps must be a positive integer (basis points), got 0.5",
      );
      expectError(
        () => buildPath({ data: NOV2022, sampling: "chainlink", heartbeat: 0 }),
        "heartbeat must be a positive integer (seconds), got 0",
      );
      expectError(
        () => buildPath({ data: "", sampling: "close" }),
        "buildPath: data must be the path of a timestamp,price CSV",
      );
      expectDataError(
        () => buildPath({ data: "missing.csv", sampling: "close" }),
        "missing.csv: no such file — give a path to a timestamp,price CSV",
      );
    });
  });
});
