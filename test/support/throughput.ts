/**
 * A load's answered requests per second, split by how many of the balancer's targets were in
 * rotation meanwhile: the figure "throughput with one of two servers drained against steady" of a
 * release rolled across servers. Pure: the load's report and the balancer's state changes in.
 */
import type { StateChange } from "./haproxy";

export interface ThroughputWindow {
  /** Seconds of the load spent in this state. */
  seconds: number;
  /** Requests answered (not failed) in it, by when their answer came. */
  requests: number;
  /** requests / seconds, one decimal (0 when no time was spent in it). */
  perSecond: number;
}

export interface ThroughputByState {
  /** Every target in rotation. */
  allIn: ThroughputWindow;
  /** Exactly one target out of rotation. */
  oneOut: ThroughputWindow;
  /** oneOut.perSecond / allIn.perSecond, two decimals; null when either state never happened. */
  ratio: number | null;
}

const round = (x: number, places: number) => Math.round(x * 10 ** places) / 10 ** places;

/**
 * Splits the load's run (startedAt to stoppedAt, ms since the epoch) at each change of the
 * balancer's view of `targets`, and sums each piece into "all in" or "one out". A piece before a
 * target's first view, or with two or more out, counts in neither.
 */
export function throughputByBalancerState(
  load: { startedAt: number; stoppedAt: number; okTimes: number[] },
  changes: StateChange[],
  targets: string[],
): ThroughputByState {
  if (load.stoppedAt < load.startedAt) throw new Error(`the load stopped (${load.stoppedAt}) before it started (${load.startedAt})`);
  const sorted = [...changes].sort((a, b) => a.t - b.t);
  const state = new Map<string, "up" | "down">();
  const cuts = [load.startedAt, ...sorted.filter((c) => c.t > load.startedAt && c.t < load.stoppedAt).map((c) => c.t), load.stoppedAt];
  const sums = { allIn: { ms: 0, requests: 0 }, oneOut: { ms: 0, requests: 0 } };
  let next = 0;
  for (let i = 0; i + 1 < cuts.length; i++) {
    const [from, to] = [cuts[i]!, cuts[i + 1]!];
    // The state from `from` on: every change at or before it applied.
    while (next < sorted.length && sorted[next]!.t <= from) {
      state.set(sorted[next]!.name, sorted[next]!.state);
      next++;
    }
    if (targets.some((t) => !state.has(t))) continue;
    const out = targets.filter((t) => state.get(t) !== "up").length;
    const sum = out === 0 ? sums.allIn : out === 1 ? sums.oneOut : undefined;
    if (!sum) continue;
    sum.ms += to - from;
    // The last piece takes the answers at its very end too.
    sum.requests += load.okTimes.filter((t) => t >= from && (t < to || (i + 2 === cuts.length && t === to))).length;
  }
  const window = (s: { ms: number; requests: number }): ThroughputWindow =>
    ({ seconds: round(s.ms / 1000, 1), requests: s.requests, perSecond: s.ms > 0 ? round(s.requests / (s.ms / 1000), 1) : 0 });
  const allIn = window(sums.allIn);
  const oneOut = window(sums.oneOut);
  return { allIn, oneOut, ratio: sums.allIn.ms > 0 && sums.oneOut.ms > 0 && sums.allIn.requests > 0 ? round((sums.oneOut.requests / sums.oneOut.ms) / (sums.allIn.requests / sums.allIn.ms), 2) : null };
}
