/**
 * CPU time of server processes, read from /proc around each measured run: unlike requests/s it
 * hardly moves when other work shares the machine, so it is the steadier figure of a cost.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";

export function childPids(pid: number): number[] {
  const out = execFileSync("ps", ["-o", "pid=", "--ppid", String(pid)], { encoding: "utf8" });
  return out.split("\n").map((l) => Number(l.trim())).filter((n) => n > 0);
}

/** utime + stime of each process that still exists, in seconds (clock ticks of 1/100 s on Linux). */
export function cpuByPid(pids: number[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const pid of pids) {
    let stat: string;
    try {
      stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8");
    } catch {
      continue; // exited (a PostgreSQL backend whose connection closed)
    }
    // Fields after the command name (which may hold spaces) start at field 3; utime/stime are 14/15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    out.set(pid, (Number(fields[11]) + Number(fields[12])) / 100);
  }
  return out;
}

/** A group of server processes whose CPU time is sampled around each run. */
export interface CpuGroup {
  name: string;
  pids(): number[];
}

export type CpuSample = Map<number, number>[];

export function sampleCpu(groups: CpuGroup[]): CpuSample {
  return groups.map((g) => cpuByPid(g.pids()));
}

/** CPU seconds each group used between two samples; a process born in between counts from 0. */
export function cpuUsed(before: CpuSample, after: CpuSample): number[] {
  return after.map((end, i) => [...end].reduce((n, [pid, t]) => n + t - (before[i].get(pid) ?? 0), 0));
}

/** The postmaster's pid and its children (the backends), for a CpuGroup. */
export function postgresPids(dataDir: string): number[] {
  const postmaster = Number(fs.readFileSync(`${dataDir}/postmaster.pid`, "utf8").split("\n")[0]);
  return [postmaster, ...childPids(postmaster)];
}
