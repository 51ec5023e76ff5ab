/**
 * OnCalendar expressions and the comparison of our parser (config/onCalendar.ts) with a real
 * `systemd-analyze calendar`. The comparison takes the runner as a callback so the same check
 * runs against the host's systemd and against the server's (Debian 13) inside the test VM.
 */
import { checkOnCalendar, type CalendarVerdict } from "../../config/onCalendar";
import { TIME_ZONES } from "../../config/timeZones";

/** Picked by hand: the forms people write, systemd.time(7)'s examples, and near misses. */
export const HAND_PICKED: readonly string[] = [
  // shorthands, any case, with a zone
  "minutely", "hourly", "daily", "weekly", "monthly", "quarterly", "yearly", "annually", "anually",
  "semiannually", "semi-annually", "biannually", "bi-annually", "DAILY", "Weekly", "daily UTC", "weekly Europe/Berlin",
  "today", "now", "nightly", "  daily", "daily ", "",
  // our defaults and common schedules
  "*-*-* 03:00:00 UTC", "Sun *-*-* 04:30:00 UTC", "*-*-* 02:30:00 UTC", "Mon..Fri *-*-* 02:15:00 Europe/Berlin",
  "*:0/15", "*:*", "*-*-*", "Mon..Fri", "Sat,Sun 10:00", "Mon-Fri 03:00", "Mon,Fri 03:00", "Mon, 03:00",
  "monday 03:00", "Monday..Friday 03:00", "Fri..Mon 03:00", "Mo 03:00", "Mondays 03:00", "Mon.. 03:00", "Mon.Fri 03:00",
  "Mon..Wed,Fri 03:00", "Mon..Wed..Fri 03:00", "Mon-Wed-Fri 03:00", "Mon,,Tue 03:00", "Mon   *-*-*   03:00",
  "03:00", "3:0", "03:00:00", "03:00:00.5", "03:00:00.", "03:00:00.1234567", "*:*:0/0.5", "*:*:1..1", "*:*:1..2",
  "*-*-* 00/2:00", "*-*-* 0/2:00", "*-*-* *:0/15:00", "*-*-* 8..18:00", "*-*-* 18..8:00", "*-*-* 03..03:00",
  "*-*-* 0..23/6:00", "*-*-* 20/6:00", "*-*-* 0/24:00", "*-*-* *:0/60", "*-*-* *:0/59", "*-*-* *:50/15",
  // out of range, the failures that motivated this check
  "*-*-* 25:00:00", "*-*-* 24:00", "*-*-* 23:59:60", "*-*-* 23:59:59", "03:61", "*-*-32 03:00", "*-*-0 03:00",
  "*-13-01 03:00", "*-00-01 03:00", "*-*-* -1:00",
  // dates that never occur, end-of-month days, repetitions
  "*-02-30 03:00", "*-02-29 03:00", "*-04-31 03:00", "*-02,04-30 03:00", "*-02,03-30 03:00", "Mon *-02-29 03:00",
  "*-*~01 03:00", "*-02~03 03:00", "*-*~28 03:00", "*-*~29 03:00", "*-*~1/7 03:00", "*-*~7/2 03:00", "*-*-1/7 03:00",
  "*-*-25/10 03:00", "*-1/3-1 03:00", "*-*-1,15 03:00", "*-*-1..7 03:00", "Mon *-*-1..7 03:00", "*-*~03-01 03:00",
  "12-25 03:00", "02-30 03:00", "*-*",
  // years and single moments
  "2030-*-* 03:00", "2027-01-01 00:00", "2001-01-01 00:00", "1969-01-01", "2200-01-01", "2199-12-31", "26-*-* 03:00",
  "99-01-01", "*/2-*-* 03:00", "@1700000000", "@4102444800",
  // time zones
  "*-*-* 03:00 utc", "*-*-* 03:00 Utc", "*-*-* 03:00  UTC", "03:00UTC", "UTC", "*-*-* 03:00 Etc/UTC", "*-*-* 03:00 GMT",
  "*-*-* 03:00 EST", "*-*-* 03:00 US/Eastern", "*-*-* 03:00 Europe/Kiev", "*-*-* 03:00 Europe/Kyiv",
  "*-*-* 03:00 Asia/Calcutta", "*-*-* 03:00 Asia/Kolkata", "*-*-* 03:00 Europe/berlin", "*-*-* 03:00 Foo/Bar",
  "*-*-* 03:00 Europe/Berlin/", "*-*-* 03:00 /Europe/Berlin", "*-*-* 03:00 Europe//Berlin", "*-*-* 03:00 posix/Europe/Berlin",
  "*-*-* 03:00 right/UTC", "*-*-* 03:00 Factory", "*-*-* 03:00 zone.tab", "*-*-* 03:00 Europe/Berlin UTC",
  "Mon Fri", "Mon UTC", "03:00 Europe/Berlin",
  // junk
  "*", "0/15", "*/15", "*:*:*:*", "03:00:00:00", "3", "Mon 03", "*-*-* 03:00;", "*-*-* 03:00 # nightly",
  "99999999999:00", "*-*-* 2147483647:00", "*:*:4294:00",
];

/** mulberry32: a small seeded generator, so the corpus is the same on every run. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WEEKDAY_PARTS = ["Mon", "Tue", "wed", "Thursday", "Fri", "Sat", "Sun", "Mo", "Sunday"];
const ZONES = ["", "", "", " UTC", " utc", " Europe/Berlin", " America/New_York", " Asia/Kolkata", " Foo/Bar", " Europe/berlin", " GMT", " US/Eastern", " Etc/UTC"];

/** Random expressions built from every part of the grammar, in and out of range. */
export function generatedExpressions(count: number, seed = 20261202): string[] {
  const random = seeded(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1));
  // A value mostly in range, now and then just outside it.
  const value = (min: number, max: number, width: number) => String(int(min - 1, max + 1)).padStart(random() < 0.5 ? width : 1, "0");
  const component = (min: number, max: number, width: number): string => {
    const r = random();
    if (r < 0.45) return value(min, max, width);
    if (r < 0.6) return `${value(min, max, width)}..${value(min, max, width)}`;
    if (r < 0.75) return `${value(min, max, width)}/${int(0, max - min + 1)}`;
    if (r < 0.85) return `${value(min, max, width)}..${value(min, max, width)}/${int(1, max)}`;
    return `${value(min, max, width)},${value(min, max, width)}`;
  };
  const field = (min: number, max: number, width: number) => (random() < 0.3 ? "*" : component(min, max, width));
  const weekdays = () => {
    const r = random();
    if (r < 0.5) return "";
    if (r < 0.7) return `${pick(WEEKDAY_PARTS)} `;
    if (r < 0.85) return `${pick(WEEKDAY_PARTS)}${pick(["..", "-", ","])}${pick(WEEKDAY_PARTS)} `;
    return `${pick(WEEKDAY_PARTS)},${pick(WEEKDAY_PARTS)}..${pick(WEEKDAY_PARTS)} `;
  };
  const date = () => {
    const r = random();
    const day = () => (random() < 0.8 ? `-${field(1, 31, 2)}` : `~${field(1, 28, 2)}`);
    if (r < 0.25) return "";
    if (r < 0.85) return `*-${field(1, 12, 2)}${day()} `;
    if (r < 0.93) return `${field(1, 12, 2)}${day()} `;
    return `${random() < 0.5 ? "*" : String(int(2025, 2031))}-${field(1, 12, 2)}${day()} `;
  };
  const seconds = () => {
    const r = random();
    if (r < 0.5) return "";
    if (r < 0.8) return `:${field(0, 59, 2)}`;
    return `:${value(0, 59, 2)}.${int(0, 999)}`;
  };
  const time = () => `${field(0, 23, 2)}:${field(0, 59, 2)}${seconds()}`;
  const out: string[] = [];
  while (out.length < count) {
    const r = random();
    if (r < 0.05) out.push(`${pick(["daily", "Hourly", "WEEKLY", "monthly", "quarterly"])}${pick(ZONES)}`);
    else out.push(`${weekdays()}${date()}${time()}${pick(ZONES)}`.trim());
  }
  return out;
}

/** Every zone the parser accepts, so each is checked against the systemd it will meet. */
export function timeZoneExpressions(): string[] {
  return [...TIME_ZONES].map((zone) => `*-*-* 03:00:00 ${zone}`);
}

/** The whole corpus: hand-picked, generated and one per time zone, without duplicates. */
export function calendarCorpus(): string[] {
  return [...new Set([...HAND_PICKED, ...generatedExpressions(400), ...timeZoneExpressions()])];
}

/** Runs `systemd-analyze calendar -- <expressions...>` somewhere and returns what it printed. */
export type RunSystemdAnalyze = (expressions: readonly string[]) => { stdout: string; stderr: string };

export interface SystemdVerdict {
  accepted: boolean;
  /** Accepted, but systemd finds no next elapse: the timer would never fire. */
  never: boolean;
  /**
   * Accepted, but systemd failed to compute the next elapse from now. systemd 252 does this
   * ("Resource deadlock avoided") for some schedules in a non-UTC zone whose next elapse is
   * months away; it depends on today's date, so it is counted, not judged.
   */
  elapseFailed: boolean;
}

/**
 * What systemd says of each expression. systemd-analyze prints one block per accepted
 * expression on stdout (in order, blank-line separated), one "Failed to parse calendar
 * specification '<expression>'" line per refused one on stderr (and "Failed to determine next
 * elapse for '<expression>'" when it cannot compute one), and goes on with the rest.
 */
export function systemdVerdicts(expressions: readonly string[], run: RunSystemdAnalyze): Map<string, SystemdVerdict> {
  const { stdout, stderr } = run(expressions);
  const refused = (e: string) => stderr.includes(`Failed to parse calendar specification '${e}'`);
  const elapseFailed = (e: string) => stderr.includes(`Failed to determine next elapse for '${e}'`);
  const printed = expressions.filter((e) => !refused(e) && !elapseFailed(e));
  const blocks = stdout.split(/\n\s*\n/).filter((b) => /Next elapse:/.test(b));
  if (blocks.length !== printed.length) {
    throw new Error(`systemd-analyze printed ${blocks.length} results for ${printed.length} accepted expressions; stderr: ${stderr.slice(0, 500)}`);
  }
  const verdicts = new Map<string, SystemdVerdict>(
    expressions.map((e) => [e, { accepted: !refused(e), never: false, elapseFailed: !refused(e) && elapseFailed(e) }]),
  );
  printed.forEach((e, i) => verdicts.set(e, { accepted: true, never: /Next elapse: never/.test(blocks[i]), elapseFailed: false }));
  return verdicts;
}

export interface Comparison {
  /** Expressions where our parser and systemd disagree in a way that is not allowed, with why. */
  disagreements: string[];
  /** How many of each: both accept, both refuse, and each deliberate refusal of ours. */
  counts: Record<string, number>;
}

/**
 * Our parser must never accept what systemd refuses or never fires; it may refuse what systemd
 * accepts only for a deliberate reason (year, never, zone, length), never as a "syntax" error.
 */
export function compareWithSystemd(
  expressions: readonly string[],
  run: RunSystemdAnalyze,
  check: (value: string) => CalendarVerdict = checkOnCalendar,
): Comparison {
  const systemd = systemdVerdicts(expressions, run);
  const disagreements: string[] = [];
  const counts: Record<string, number> = {};
  const count = (key: string) => void (counts[key] = (counts[key] ?? 0) + 1);
  for (const expression of expressions) {
    const ours = check(expression);
    const theirs = systemd.get(expression)!;
    const shown = JSON.stringify(expression);
    if (theirs.elapseFailed) count("systemd accepts, failed to compute the next elapse today");
    if (ours.ok) {
      count("both accept");
      if (!theirs.accepted) disagreements.push(`${shown}: we accept it, systemd refuses it`);
      else if (theirs.never) disagreements.push(`${shown}: we accept it, systemd says it never elapses`);
    } else if (ours.kind === "syntax") {
      count("both refuse");
      if (theirs.accepted) disagreements.push(`${shown}: we call it invalid (${ours.reason}), systemd accepts it`);
    } else {
      count(`${ours.kind}: systemd ${theirs.accepted ? (theirs.never ? "accepts, never elapses" : "accepts") : "refuses"}`);
      if (ours.kind === "never" && theirs.accepted && !theirs.never) disagreements.push(`${shown}: we say it never occurs, systemd schedules it`);
    }
  }
  return { disagreements, counts };
}
