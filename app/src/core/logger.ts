// pino JSON logs on stdout (journald captures them under systemd). One logger per process;
// modules take child loggers. Secrets never reach the logger: redact the usual suspects anyway.
//
// Every line has `level`, `time`, `service` (web, worker, migrate), `release`, `message`, and,
// when it belongs to a request or to a job a request enqueued, `request_id`.
import { pino, type DestinationStream, type Logger } from "pino";
import type { LogLevel } from "./config.js";
import { currentLogContext } from "./log-context.js";

export type { Logger };

export type Service = "web" | "worker" | "migrate";

export function createLogger(
  level: LogLevel,
  bindings: { service: Service; release: string } & Record<string, unknown>,
  destination?: DestinationStream,
): Logger {
  const options = {
    level,
    base: { pid: process.pid, ...bindings },
    messageKey: "message",
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: ["password", "*.password", "token", "*.token", "headers.authorization"],
    formatters: { level: (label: string) => ({ level: label }) },
    mixin: currentLogContext,
  };
  return destination ? pino(options, destination) : pino(options);
}
