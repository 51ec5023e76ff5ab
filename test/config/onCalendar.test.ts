/**
 * The OnCalendar parser against the host's real systemd: the corpus of test/support/
 * calendarCorpus.ts, the OnCalendar= of every rendered timer, and the time zone list.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { checkOnCalendar } from "../../config/onCalendar";
import { TIME_ZONES, TZDATA_VERSION } from "../../config/timeZones";
import { calendarCorpus, compareWithSystemd, systemdVerdicts, type RunSystemdAnalyze } from "../support/calendarCorpus";
import { renderAllCases } from "../support/renderCases";
import { run } from "../support/tools";

/** The host's systemd-analyze; TZ=UTC because systemd also takes the local zone's abbreviation. */
const hostSystemd: RunSystemdAnalyze = (expressions) => run("systemd-analyze", ["calendar", "--", ...expressions], { env: { ...process.env, TZ: "UTC" } });

describe("OnCalendar parser agrees with systemd-analyze calendar", function () {
  this.timeout(120_000);

  it("refuses the expressions systemd refuses that the old shape check let through", () => {
    for (const bad of ["*-*-* 25:00:00", "*-*-32 03:00:00", "03:61", "*-*-* 03:00 Foo/Bar", "*-*-* 03:00 Europe/berlin"]) {
      assert.equal(checkOnCalendar(bad).ok, false, bad);
    }
    assert.deepEqual(checkOnCalendar("*-*-* 25:00:00"), { ok: false, kind: "syntax", reason: "hour 25 is outside 0-23 or repeats past it" });
    assert.deepEqual(checkOnCalendar("*-*-* 03:00 Foo/Bar"), { ok: false, kind: "zone", reason: 'time zone "Foo/Bar" is not a tz database zone such as UTC or Europe/Berlin' });
  });

  it("accepts exactly what the host's systemd accepts, apart from the documented refusals", () => {
    const corpus = calendarCorpus();
    assert.ok(corpus.length > 700, `corpus has only ${corpus.length} expressions`);
    const { disagreements, counts } = compareWithSystemd(corpus, hostSystemd);
    console.log(`      ${corpus.length} expressions: ${JSON.stringify(counts)}`);
    assert.deepEqual(disagreements, []);
    // Each deliberate refusal is exercised on something systemd itself would take.
    for (const kind of ["year: systemd accepts", "never: systemd accepts, never elapses", "zone: systemd accepts"]) {
      assert.ok((counts[kind] ?? 0) > 0, `the corpus has no case of "${kind}"`);
    }
    assert.ok(counts["both accept"] > 300 && counts["both refuse"] > 100, JSON.stringify(counts));
  });

  it("the comparison fails for a parser that accepts too much or refuses too much", () => {
    const sample = ["*-*-* 25:00:00", "*-*-* 03:00:00", "*-02-30 03:00"];
    const acceptAll = compareWithSystemd(sample, hostSystemd, () => ({ ok: true }));
    assert.deepEqual(acceptAll.disagreements, [
      '"*-*-* 25:00:00": we accept it, systemd refuses it',
      '"*-02-30 03:00": we accept it, systemd says it never elapses',
    ]);
    const refuseAll = compareWithSystemd(sample, hostSystemd, () => ({ ok: false, kind: "syntax", reason: "no" }));
    assert.deepEqual(refuseAll.disagreements, ['"*-*-* 03:00:00": we call it invalid (no), systemd accepts it', '"*-02-30 03:00": we call it invalid (no), systemd accepts it']);
  });

  it("every OnCalendar= of every rendered timer is accepted by systemd and fires", async () => {
    const values = new Map<string, string>();
    for (const c of await renderAllCases()) {
      for (const [path, content] of c.files) {
        if (!path.endsWith(".timer")) continue;
        for (const [, value] of content.matchAll(/^OnCalendar=(.*)$/gm)) values.set(value, `${c.name}:${path}`);
      }
    }
    assert.ok(values.size >= 2, `found only ${values.size} OnCalendar= values`);
    const verdicts = systemdVerdicts([...values.keys()], hostSystemd);
    for (const [value, where] of values) {
      assert.deepEqual(verdicts.get(value), { accepted: true, never: false, elapseFailed: false }, `${where}: OnCalendar=${value}`);
      assert.deepEqual(checkOnCalendar(value), { ok: true }, `${where}: OnCalendar=${value}`);
    }
  });

  it(`lists the zones of the host's tzdata when it is ${TZDATA_VERSION}`, function () {
    const zi = "/usr/share/zoneinfo/tzdata.zi";
    const hostVersion = existsSync(zi) ? /^# version (\S+)/.exec(readFileSync(zi, "utf8"))?.[1] : undefined;
    if (hostVersion !== TZDATA_VERSION) {
      console.log(`      SKIPPED: host tzdata is ${hostVersion ?? "absent"}, config/timeZones.ts lists ${TZDATA_VERSION}; the systemd comparison above still checks every listed zone`);
      this.skip();
    }
    const tab = (name: string) =>
      readFileSync(`/usr/share/zoneinfo/${name}`, "utf8")
        .split("\n")
        .filter((line) => line && !line.startsWith("#"))
        .map((line) => line.split("\t")[2]);
    const host = new Set([...tab("zone.tab"), ...tab("zone1970.tab"), "UTC"]);
    assert.deepEqual([...TIME_ZONES].sort(), [...host].sort());
  });
});
