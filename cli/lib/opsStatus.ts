/**
 * `npm run ops -- status`: the lines cli/ops/status.sh prints on a server (LEVEL<TAB>CHECK<TAB>
 * DETAIL), read and laid out for a person. Pure, so tests feed it what the script printed.
 */
export const STATUS_LEVELS = ["OK", "WARN", "FAIL"] as const;
export type StatusLevel = (typeof STATUS_LEVELS)[number];

export interface StatusLine {
  level: StatusLevel;
  check: string;
  detail: string;
}

/**
 * The script's lines. Anything else it printed (a shell error, a login banner) is not dropped:
 * it becomes a FAIL line, so a broken run can never look green.
 */
export function parseStatusLines(output: string): StatusLine[] {
  return output.split("\n").filter((l) => l.trim() !== "").map((line) => {
    const [level, check, ...detail] = line.split("\t");
    if ((STATUS_LEVELS as readonly string[]).includes(level) && check && detail.length > 0) {
      return { level: level as StatusLevel, check, detail: detail.join(" ") };
    }
    return { level: "FAIL", check: "status script", detail: `unexpected output: ${line}` };
  });
}

/** The verdict of one server's run: the script's lines, plus a FAIL when it could not run or ended oddly. */
export function serverStatus(output: { code: number; stdout: string; stderr: string }): StatusLine[] {
  const lines = parseStatusLines(output.stdout);
  const failed = lines.some((l) => l.level === "FAIL");
  const stderr = output.stderr.trim().split("\n").filter(Boolean).slice(-3).join(" | ");
  // ssh's own failure is 255; the script's is 1 with a FAIL line. Anything else is a run that did not finish.
  if (output.code === 255) return [...lines, { level: "FAIL", check: "ssh", detail: stderr || "ssh failed (exit 255)" }];
  if (lines.length === 0 || (output.code !== 0 && !failed) || (output.code === 0 && failed)) {
    return [...lines, { level: "FAIL", check: "status script", detail: `exit ${output.code}${stderr ? `: ${stderr}` : ""}` }];
  }
  return lines;
}

/** The table for one server: a heading, then one aligned line per check. */
export function formatStatus(server: string, lines: StatusLine[]): string {
  const width = Math.min(40, Math.max(0, ...lines.map((l) => l.check.length)));
  const counts = STATUS_LEVELS.map((level) => `${lines.filter((l) => l.level === level).length} ${level}`).join(", ");
  return [
    `${server}: ${counts}`,
    ...lines.map((l) => `  ${l.level.padEnd(4)}  ${l.check.padEnd(width)}  ${l.detail}`),
  ].join("\n") + "\n";
}
