// A real SMTP server (npm smtp-server) on loopback, with knobs to make delivery fail or stall.
import { SMTPServer, type SMTPServerAddress } from "smtp-server";
import type { AddressInfo } from "node:net";

export interface ReceivedMail {
  to: string[];
  raw: string;
}

export interface TestSmtp {
  url: string;
  received: ReceivedMail[];
  /** Recipients matching this are refused with 451 (temporary) the first time only. */
  flaky: RegExp;
  /** Recipients matching this are always refused with 550 (permanent). */
  doomed: RegExp;
  /** Milliseconds to hold DATA before answering (simulates a slow relay). */
  dataDelayMs: number;
  /** Called when a message's DATA starts arriving. */
  onDataStart?: (to: string[]) => void;
  close(): Promise<void>;
}

export async function startSmtp(): Promise<TestSmtp> {
  const seen = new Set<string>();
  const state: TestSmtp = {
    url: "",
    received: [],
    flaky: /^flaky-/,
    doomed: /^doomed-/,
    dataDelayMs: 0,
    close: async () => {},
  };
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ["STARTTLS", "AUTH"],
    logger: false,
    onRcptTo(address: SMTPServerAddress, _session, cb) {
      const to = address.address;
      if (state.doomed.test(to)) return cb(Object.assign(new Error("mailbox unavailable"), { responseCode: 550 }));
      if (state.flaky.test(to) && !seen.has(to)) {
        seen.add(to);
        return cb(Object.assign(new Error("try again later"), { responseCode: 451 }));
      }
      cb();
    },
    onData(stream, session, cb) {
      const to = session.envelope.rcptTo.map((r) => r.address);
      state.onDataStart?.(to);
      const chunks: Buffer[] = [];
      stream.on("data", (c: Buffer) => chunks.push(c));
      stream.on("end", () => {
        setTimeout(() => {
          state.received.push({ to, raw: Buffer.concat(chunks).toString("utf8") });
          cb();
        }, state.dataDelayMs);
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.server.address() as AddressInfo;
  state.url = `smtp://127.0.0.1:${port}`;
  state.close = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return state;
}
