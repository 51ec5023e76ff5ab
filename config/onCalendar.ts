/**
 * systemd OnCalendar= expressions (systemd.time(7)), parsed the way systemd parses them.
 *
 * A timer whose OnCalendar= systemd refuses is never armed, so a backup would silently never
 * run: this parser follows systemd's own (src/shared/calendarspec.c: weekdays, date, time,
 * time zone; the same range checks) so that the stack config refuses what the server would.
 * test/config/onCalendar.test.ts compares it with the real `systemd-analyze calendar` on a
 * corpus of several hundred expressions.
 *
 * On top of systemd's grammar it deliberately refuses, each with its own reason:
 * - "year": an explicit year or an `@<epoch>` time. A recurring job that stops after a year
 *   stops silently; `*` is the only year a schedule needs.
 * - "never": dates that do not exist (`*-02-30`, `*-04-31`). systemd accepts them and the
 *   timer never fires.
 * - "zone": a time zone outside TIME_ZONES (legacy names such as US/Eastern or GMT, which
 *   Debian 13 keeps in the optional tzdata-legacy package), or a name that is not a zone.
 * - "length": more than MAX_LENGTH characters (systemd caps a list at 240 entries; no
 *   schedule needs a tenth of that).
 * The local time zone's abbreviation (systemd's `tzname` rule) is only "UTC" on our servers,
 * which the " UTC" suffix rule covers.
 */
import { TIME_ZONES } from "./timeZones";
import { closest } from "./validators";

export type CalendarRejection = "syntax" | "year" | "never" | "zone" | "length";

export type CalendarVerdict = { ok: true } | { ok: false; kind: CalendarRejection; reason: string };

export const MAX_LENGTH = 200;

/** systemd's shorthands (matched case-insensitively), "anually" and the bi- forms included. */
const SHORTHANDS = new Set([
  "minutely",
  "hourly",
  "daily",
  "weekly",
  "monthly",
  "quarterly",
  "annually",
  "yearly",
  "anually",
  "biannually",
  "bi-annually",
  "semiannually",
  "semi-annually",
]);

/** Longest names first: "Monday" must be tried before "Mon" (systemd's order). */
const WEEKDAYS: ReadonlyArray<[string, number]> = [
  ["monday", 0], ["mon", 0], ["tuesday", 1], ["tue", 1], ["wednesday", 2], ["wed", 2], ["thursday", 3],
  ["thu", 3], ["friday", 4], ["fri", 4], ["saturday", 5], ["sat", 5], ["sunday", 6], ["sun", 6],
];

const USEC = 1_000_000;
const INT_MAX = 2 ** 31 - 1;
const MAX_CHAIN = 240;
/** Days per month; February counts its leap day (it occurs in leap years). */
const MONTH_DAYS = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** One list entry: start[..stop][/repeat]; stop -1 means "no range". */
interface Component {
  start: number;
  stop: number;
  repeat: number;
}
/** undefined is `*`. */
type Chain = Component[] | undefined;

interface Spec {
  year: Chain;
  month: Chain;
  day: Chain;
  endOfMonth: boolean;
  hour: Chain;
  minute: Chain;
  second: Chain;
}

class Rejected extends Error {
  constructor(
    readonly kind: CalendarRejection,
    readonly reason: string,
  ) {
    super(reason);
  }
}

const syntax = (reason: string) => new Rejected("syntax", reason);
const isDigit = (c: string | undefined) => c !== undefined && c >= "0" && c <= "9";

/** Accepts what systemd accepts, minus the deliberate refusals listed at the top. */
export function checkOnCalendar(value: string): CalendarVerdict {
  try {
    if (value.length > MAX_LENGTH) throw new Rejected("length", `longer than ${MAX_LENGTH} characters`);
    // It goes on one line of a unit file.
    if (/[\u0000-\u001f\u007f]/.test(value)) throw syntax("contains a line break or another control character");
    checkParsed(value);
    return { ok: true };
  } catch (err) {
    if (err instanceof Rejected) return { ok: false, kind: err.kind, reason: err.reason };
    throw err;
  }
}

function checkParsed(value: string): void {
  const { rest, zone } = splitZone(value);
  try {
    checkSpec(rest);
  } catch (err) {
    // systemd treats an unknown last word as part of the time, and fails there; say which
    // word it was when everything before it is a good schedule.
    const lastSpace = value.lastIndexOf(" ");
    const word = value.slice(lastSpace + 1);
    if (zone === undefined && err instanceof Rejected && err.kind === "syntax" && lastSpace > 0 && /^[A-Za-z][A-Za-z0-9_+/-]*$/.test(word)) {
      let restIsGood = true;
      try {
        checkSpec(value.slice(0, lastSpace));
      } catch (restErr) {
        restIsGood = !(restErr instanceof Rejected) || restErr.kind !== "syntax";
      }
      if (restIsGood) {
        const suggestion = closest(word, [...TIME_ZONES]);
        throw new Rejected("zone", `time zone ${JSON.stringify(word)} is not a tz database zone such as UTC or Europe/Berlin${suggestion ? ` (did you mean ${suggestion}?)` : ""}`);
      }
    }
    throw err;
  }
}

/** systemd: a trailing " UTC" (any case), else a last word that names a zone, is the zone. */
function splitZone(value: string): { rest: string; zone?: string } {
  if (/ utc$/i.test(value)) return { rest: value.slice(0, -4), zone: "UTC" };
  const lastSpace = value.lastIndexOf(" ");
  const word = value.slice(lastSpace + 1);
  if (lastSpace >= 0 && TIME_ZONES.has(word)) return { rest: value.slice(0, lastSpace), zone: word };
  return { rest: value };
}

function checkSpec(text: string): void {
  if (text === "") throw syntax("no time given");
  if (SHORTHANDS.has(text.toLowerCase())) return;
  const cursor = { text, at: 0 };
  parseWeekdays(cursor);
  const spec = parseDate(cursor);
  parseTime(cursor, spec);
  if (cursor.at !== text.length) throw syntax(`unexpected ${JSON.stringify(text.slice(cursor.at))}`);
  fixYear(spec.year);
  for (const field of ["year", "month", "day", "hour", "minute", "second"] as const) spec[field] = normalize(spec[field]);
  checkRange(spec.year, "year", 1970, 2199, false);
  checkRange(spec.month, "month", 1, 12, false);
  checkRange(spec.day, "day", 1, 31, spec.endOfMonth);
  checkRange(spec.hour, "hour", 0, 23, false);
  checkRange(spec.minute, "minute", 0, 59, false);
  checkRange(spec.second, "second", 0, 60 * USEC - 1, false);
  if (spec.year !== undefined) throw new Rejected("year", "names a year; a recurring schedule uses * so that it never runs out");
  if (!spec.endOfMonth && !someDayExists(spec.month, spec.day)) throw new Rejected("never", "never occurs: no month it names has that day");
}

interface Cursor {
  text: string;
  at: number;
}

const peek = (c: Cursor, ahead = 0): string | undefined => c.text[c.at + ahead];
const skipSpaces = (c: Cursor) => {
  while (peek(c) === " ") c.at++;
};

/** systemd's parse_weekdays: names, "," lists, ".." (or legacy "-") ranges, then spaces. */
function parseWeekdays(c: Cursor): void {
  let rangeStart = -1;
  let first = true;
  for (;;) {
    const rest = c.text.slice(c.at).toLowerCase();
    const match = WEEKDAYS.find(([name]) => rest.startsWith(name));
    if (!match) {
      if (first) return;
      throw syntax("a weekday list ends in a separator");
    }
    const [name, nr] = match;
    if (![undefined, "-", ".", ",", " "].includes(peek(c, name.length))) throw syntax(`${JSON.stringify(c.text.slice(c.at, c.at + name.length + 1))} is not a weekday`);
    if (rangeStart >= 0 && rangeStart > nr) throw syntax("a weekday range runs backwards");
    c.at += name.length;
    if (peek(c) === undefined) return;
    if (peek(c) === " ") return skipSpaces(c);
    if (peek(c) === ".") {
      if (rangeStart >= 0 || peek(c, 1) !== ".") throw syntax("a weekday range needs exactly one \"..\"");
      rangeStart = nr;
      c.at += 2;
    } else if (peek(c) === "-") {
      if (rangeStart >= 0) throw syntax("a weekday range needs exactly one \"-\"");
      rangeStart = nr;
      c.at += 1;
    } else if (peek(c) === ",") {
      rangeStart = -1;
      c.at += 1;
    }
    if (peek(c) === undefined || peek(c) === " ") {
      skipSpaces(c);
      if (rangeStart >= 0) throw syntax("a weekday range has no end");
      return;
    }
    first = false;
  }
}

/** systemd's parse_date: [year-]month-day (or ~day, counted from the month's end). */
function parseDate(c: Cursor): Spec {
  const spec: Spec = { year: undefined, month: undefined, day: undefined, endOfMonth: false, hour: undefined, minute: undefined, second: undefined };
  if (peek(c) === undefined) return spec;
  if (peek(c) === "@") throw new Rejected("year", "is a single moment (@<epoch>), not a recurring schedule");
  const t: Cursor = { ...c };
  const first = parseChain(t, false);
  // No "-" or "~" after the first part: it was the hour, not a date.
  if (peek(t) === undefined || peek(t) === ":") return spec;
  const separator = () => {
    if (peek(t) === "~") spec.endOfMonth = true;
    else if (peek(t) !== "-") throw syntax(`expected "-" in the date, got ${JSON.stringify(peek(t))}`);
    t.at++;
  };
  separator();
  const second = parseChain(t, false);
  if (peek(t) === undefined || peek(t) === " ") {
    skipSpaces(t);
    c.at = t.at;
    return { ...spec, month: first, day: second };
  }
  if (spec.endOfMonth) throw syntax('"~" may only come before the day');
  separator();
  const third = parseChain(t, false);
  if (peek(t) !== undefined && peek(t) !== " ") throw syntax(`unexpected ${JSON.stringify(peek(t))} after the date`);
  skipSpaces(t);
  c.at = t.at;
  return { ...spec, year: first, month: second, day: third };
}

/** systemd's parse_calendar_time: hour:minute[:second]; none at all means 00:00:00. */
function parseTime(c: Cursor, spec: Spec): void {
  if (peek(c) === undefined) {
    spec.hour = [{ start: 0, stop: -1, repeat: 0 }];
    spec.minute = [{ start: 0, stop: -1, repeat: 0 }];
    return;
  }
  spec.hour = parseChain(c, false);
  if (peek(c) !== ":") throw syntax("a time is hour:minute[:second]");
  c.at++;
  spec.minute = parseChain(c, false);
  if (peek(c) === undefined) return;
  if (peek(c) !== ":") throw syntax(`unexpected ${JSON.stringify(c.text.slice(c.at))} after the minutes`);
  c.at++;
  spec.second = parseChain(c, true);
}

/** `*`, or a "," list of components. Seconds (usec) are in microseconds, `*` meaning every second. */
function parseChain(c: Cursor, usec: boolean): Chain {
  if (peek(c) === "*") {
    c.at++;
    return usec ? [{ start: 0, stop: -1, repeat: USEC }] : undefined;
  }
  const chain: Component[] = [];
  for (;;) {
    if (chain.length > MAX_CHAIN) throw syntax("a list has too many entries");
    const start = parseDecimal(c, usec);
    let stop = -1;
    let repeat = 0;
    if (peek(c) === "." && peek(c, 1) === ".") {
      c.at += 2;
      stop = parseDecimal(c, usec);
      repeat = usec ? USEC : 1;
    }
    if (peek(c) === "/") {
      c.at++;
      repeat = parseDecimal(c, usec);
      if (repeat === 0) throw syntax("a repetition of 0");
    } else {
      if (start > INT_MAX - repeat) throw syntax("a number is too large");
      // A seconds range steps by whole seconds, so it must span at least one.
      if (usec && stop >= 0 && start + repeat > stop) throw syntax("a seconds range shorter than a second");
    }
    if (![undefined, " ", ",", "-", "~", ":"].includes(peek(c))) throw syntax(`unexpected ${JSON.stringify(peek(c))} after a number`);
    chain.push({ start, stop, repeat });
    if (peek(c) !== ",") return chain;
    c.at++;
  }
}

/** A decimal number; for seconds also a fraction (rounded to microseconds as systemd does). */
function parseDecimal(c: Cursor, usec: boolean): number {
  if (!isDigit(peek(c))) throw syntax(`expected a number at ${JSON.stringify(c.text.slice(c.at))}`);
  const begin = c.at;
  while (isDigit(peek(c))) c.at++;
  let value = Number(c.text.slice(begin, c.at));
  if (usec) {
    value *= USEC;
    if (peek(c) === "." && peek(c, 1) !== ".") {
      c.at++;
      let fraction = 0;
      let digits = 0;
      while (digits < 6 && isDigit(peek(c))) {
        fraction = fraction * 10 + Number(peek(c));
        c.at++;
        digits++;
      }
      if (digits === 0) throw syntax("a decimal point without digits");
      fraction *= 10 ** (6 - digits);
      const next = peek(c);
      if (next !== undefined && next >= "5" && next <= "9") fraction++;
      while (isDigit(peek(c))) c.at++;
      value += fraction;
    }
  }
  if (value > INT_MAX) throw syntax("a number is too large");
  return value;
}

/** systemd's fix_year: 12 means 2012, 89 means 1989. */
function fixYear(chain: Chain): void {
  for (const part of chain ?? []) {
    for (const field of ["start", "stop"] as const) {
      if (part[field] >= 0 && part[field] < 70) part[field] += 2000;
      else if (part[field] >= 70 && part[field] < 100) part[field] += 1900;
    }
  }
}

/**
 * systemd's normalize_chain, the part that changes validity: a range ends on its last step;
 * a repetition that cannot fire twice, or a range from n to n, is the single value n.
 */
function normalize(chain: Chain): Chain {
  if (chain === undefined) return undefined;
  for (const part of chain) {
    if (part.stop > part.start && part.repeat > 0) part.stop -= (part.stop - part.start) % part.repeat;
    if ((part.stop > part.start && part.repeat > 0 && part.start + part.repeat > part.stop) || part.start === part.stop) {
      part.repeat = 0;
      part.stop = -1;
    }
  }
  // Sorted, duplicates dropped: the order matters to checkRange's end-of-month rule.
  const sorted = [...chain].sort((x, y) => x.start - y.start || x.stop - y.stop || x.repeat - y.repeat);
  return sorted.filter((p, i) => i === 0 || p.start !== sorted[i - 1].start || p.stop !== sorted[i - 1].stop || p.repeat !== sorted[i - 1].repeat);
}

/**
 * systemd's chain_valid. For end-of-month days systemd lowers the last allowed day by 3 for
 * each entry of the sorted list, not once, so "~2,3" passes and "~1,28" does not; we follow.
 */
function checkRange(chain: Chain, what: string, from: number, to: number, endOfMonth: boolean): void {
  const shown = (n: number) => (what === "second" ? n / USEC : n);
  const format = (p: Component) => `${shown(p.start)}${p.stop >= 0 ? `..${shown(p.stop)}` : ""}${p.repeat > 0 && p.stop < 0 ? `/${shown(p.repeat)}` : ""}`;
  let last = to;
  for (const part of chain ?? []) {
    const { start, stop, repeat } = part;
    if (endOfMonth) last -= 3;
    const bad = () => syntax(`${what} ${format(part)} is outside ${shown(from)}-${shown(last)} or repeats past it`);
    if (start < from || start > last) throw bad();
    if (repeat > last - from) throw bad();
    if (stop >= 0) {
      if (stop < from || stop > last || start + repeat > stop) throw bad();
    } else if (endOfMonth ? start - repeat < from : start + repeat > last) throw bad();
  }
}

function expand(chain: Chain, from: number, to: number): number[] {
  if (chain === undefined) return Array.from({ length: to - from + 1 }, (_, i) => from + i);
  const values: number[] = [];
  for (const { start, stop, repeat } of chain) {
    const end = stop >= 0 ? stop : repeat > 0 ? to : start;
    for (let v = start; v <= end; v += Math.max(repeat, 1)) values.push(v);
  }
  return values;
}

/** With every year allowed, a month/day pair occurs (on every weekday, too) if the month has the day. */
function someDayExists(month: Chain, day: Chain): boolean {
  const days = expand(day, 1, 31);
  return expand(month, 1, 12).some((m) => days.some((d) => d <= MONTH_DAYS[m - 1]));
}
