import { expect } from "chai";

import { checkSnapshot } from "../helpers/gasSnapshot";

describe("gas snapshot check", () => {
  it("lets through up to 1 % either way of the committed figure", () => {
    expect(() => checkSnapshot("action", 101_000, 100_000)).to.not.throw();
    expect(() => checkSnapshot("action", 99_000, 100_000)).to.not.throw();
    expect(() => checkSnapshot("action", 100_000, 100_000)).to.not.throw();
  });

  it("fails an action that grows by more than 1 %, and one that shrinks by more (the snapshot must stay current)", () => {
    expect(() => checkSnapshot("action", 101_001, 100_000)).to.throw('gas of "action" grew more than 1 % (100000 → 101001)');
    expect(() => checkSnapshot("action", 98_999, 100_000)).to.throw('gas of "action" fell more than 1 % (100000 → 98999)');
  });

  it("fails an action with no committed figure, naming the update command", () => {
    expect(() => checkSnapshot("new action", 50_000, undefined)).to.throw('no gas snapshot for "new action": run UPDATE_GAS_SNAPSHOT=true npm test');
  });
});
