import { strict as assert } from "node:assert";
import { throughputByBalancerState } from "./throughput";

describe("throughputByBalancerState (the roll's figure: answered requests per second with one target out against all in)", function () {
  const targets = ["app", "app-2"];
  /** One answer every `everyMs` from `from` (inclusive) to `to` (exclusive). */
  const answers = (from: number, to: number, everyMs: number) => Array.from({ length: Math.ceil((to - from) / everyMs) }, (_, i) => from + i * everyMs);

  it("splits the run at each change: all in, one out, both out (in neither), and all in again", () => {
    const changes = [
      { t: 900, name: "app", state: "up" as const }, { t: 950, name: "app-2", state: "up" as const },
      { t: 11000, name: "app", state: "down" as const }, { t: 21000, name: "app-2", state: "down" as const },
      { t: 23000, name: "app", state: "up" as const }, { t: 25000, name: "app-2", state: "up" as const },
    ];
    // 4 per second while both are in, 2 per second while one is out.
    const okTimes = [...answers(1000, 11000, 250), ...answers(11000, 21000, 500), ...answers(21000, 23000, 100), ...answers(23000, 25000, 500), ...answers(25000, 31000, 250)];
    const r = throughputByBalancerState({ startedAt: 1000, stoppedAt: 31000, okTimes }, changes, targets);
    assert.deepEqual(r.allIn, { seconds: 16, requests: 64, perSecond: 4 });
    assert.deepEqual(r.oneOut, { seconds: 12, requests: 24, perSecond: 2 });
    assert.equal(r.ratio, 0.5);
  });

  it("leaves out the time before a target's first view, and has no ratio when a state never happened", () => {
    const changes = [{ t: 5000, name: "app", state: "up" as const }, { t: 6000, name: "app-2", state: "up" as const }];
    const r = throughputByBalancerState({ startedAt: 1000, stoppedAt: 11000, okTimes: answers(1000, 11000, 1000) }, changes, targets);
    assert.deepEqual(r.allIn, { seconds: 5, requests: 5, perSecond: 1 });
    assert.deepEqual(r.oneOut, { seconds: 0, requests: 0, perSecond: 0 });
    assert.equal(r.ratio, null);
  });

  it("counts an answer at the very end of the run, and refuses a load that stopped before it started", () => {
    const changes = [{ t: 0, name: "app", state: "up" as const }, { t: 0, name: "app-2", state: "down" as const }];
    const r = throughputByBalancerState({ startedAt: 1000, stoppedAt: 3000, okTimes: [1000, 2000, 3000] }, changes, targets);
    assert.deepEqual(r.oneOut, { seconds: 2, requests: 3, perSecond: 1.5 });
    assert.throws(() => throughputByBalancerState({ startedAt: 2, stoppedAt: 1, okTimes: [] }, [], targets), /the load stopped \(1\) before it started \(2\)/);
  });
});
