import { expect } from "chai";

import { UnitsError, formatUnits, parseInteger, parsePositive, parseUnits, parseWad } from "../../lib/units";

describe("lib/units", () => {
  describe("parseUnits", () => {
    it("parses exactly at the token's decimals", () => {
      expect(parseUnits("1.5", 18)).to.equal(1_500_000_000_000_000_000n);
      expect(parseUnits("250", 6)).to.equal(250_000_000n);
      expect(parseUnits("0.000001", 6)).to.equal(1n);
      expect(parseUnits("0.00000001", 8)).to.equal(1n);
      expect(parseUnits("123456789.123456789012345678", 18)).to.equal(123456789123456789012345678n);
      expect(parseUnits("12.", 6)).to.equal(12_000_000n);
      expect(parseUnits(".5", 6)).to.equal(500_000n);
      expect(parseUnits("+3", 2)).to.equal(300n);
      expect(parseUnits("007", 0)).to.equal(7n);
      expect(parseUnits("0", 6)).to.equal(0n);
    });

    it("accepts trailing zeros beyond the decimals: they change nothing", () => {
      expect(parseUnits("1.500000000", 6)).to.equal(1_500_000n);
      expect(parseUnits("2.0", 0)).to.equal(2n);
    });

    it("refuses more decimals than the unit has", () => {
      expect(() => parseUnits("1.2345678", 6, { what: "--amount" })).to.throw(
        UnitsError,
        '--amount "1.2345678" has 7 decimals, at most 6 allowed: round it to 6 decimals',
      );
      expect(() => parseUnits("0.000000001", 8)).to.throw(UnitsError, "has 9 decimals, at most 8 allowed");
      expect(() => parseUnits("1.5", 0)).to.throw(UnitsError, "has 1 decimals, at most 0 allowed");
    });

    it("refuses negatives unless allowed", () => {
      expect(() => parseUnits("-1", 6, { what: "--amount" })).to.throw(UnitsError, '--amount "-1" is negative: give a positive number');
      expect(parseUnits("-1.25", 6, { allowNegative: true })).to.equal(-1_250_000n);
      expect(parseUnits("-0", 6)).to.equal(0n);
    });

    it("refuses zero when asked to", () => {
      expect(() => parsePositive("0.000", 6, "--size")).to.throw(UnitsError, '--size "0.000" is zero: give a positive number');
      expect(parsePositive("0.1", 6)).to.equal(100_000n);
    });

    for (const garbage of ["", ".", "-", "abc", "1e18", "1,000", "0x10", " 1", "1 ", "1.2.3", "1_000", "Infinity", "NaN", "--1", "١"]) {
      it(`refuses ${JSON.stringify(garbage)}`, () => {
        expect(() => parseUnits(garbage, 18, { what: "--price" })).to.throw(
          UnitsError,
          `--price "${garbage}" is not a decimal number: write it like 1.5 or 250`,
        );
      });
    }

    it("parses WAD ratios", () => {
      expect(parseWad("1.6")).to.equal(1_600_000_000_000_000_000n);
      expect(parseWad("2")).to.equal(2n * 10n ** 18n);
      expect(parseWad("0.000000000000000001")).to.equal(1n);
    });
  });

  describe("formatUnits", () => {
    it("formats exactly, without trailing zeros", () => {
      expect(formatUnits(1_500_000n, 6)).to.equal("1.5");
      expect(formatUnits(7n * 10n ** 18n, 18)).to.equal("7");
      expect(formatUnits(1n, 18)).to.equal("0.000000000000000001");
      expect(formatUnits(-5n, 2)).to.equal("-0.05");
      expect(formatUnits(0n, 6)).to.equal("0");
      expect(formatUnits(42n, 0)).to.equal("42");
      expect(formatUnits(123456789123456789012345678n, 18)).to.equal("123456789.123456789012345678");
    });

    it("round-trips with parseUnits", () => {
      for (const [v, d] of [[1n, 6], [-123456789n, 8], [10n ** 30n + 7n, 18], [999_999n, 6], [5n, 0]] as const) {
        expect(parseUnits(formatUnits(v, d), d, { allowNegative: true })).to.equal(v);
      }
    });
  });

  describe("parseInteger", () => {
    it("parses whole numbers within bounds", () => {
      expect(parseInteger("0", "--cooldown")).to.equal(0n);
      expect(parseInteger("3600", "--deadline-seconds", 86_400n)).to.equal(3600n);
    });
    it("refuses decimals, signs, garbage and values above the bound", () => {
      expect(() => parseInteger("1.5", "--account")).to.throw(UnitsError, '--account "1.5" is not a whole number: write it like 0 or 3600');
      expect(() => parseInteger("-1", "--account")).to.throw(UnitsError, '--account "-1" is not a whole number');
      expect(() => parseInteger("", "--id")).to.throw(UnitsError, '--id "" is not a whole number');
      expect(() => parseInteger("86401", "--deadline-seconds", 86_400n)).to.throw(UnitsError, "--deadline-seconds 86401 is too large: at most 86400");
    });
  });
});
