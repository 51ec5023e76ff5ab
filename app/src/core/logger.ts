// pino JSON logs on stdout (journald captures them under systemd). One logger per process;
// modules take child loggers. Secrets never reach the logger: redact the usual suspects anyway.
import { pino, type Logger } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

export function createLogger(level: LogLevel, bindings: Record<string, unknown> = {}): Logger {
  return pino({
    level,
    base: { pid: process.pid, ...bindings },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: ["password", "*.password", "token", "*.token", "headers.authorization"],
    formatters: { level: (label) => ({ level: label }) },
  });
}
