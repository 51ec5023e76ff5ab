// Outgoing email. With SMTP_URL set, mail goes out over SMTP (nodemailer); without it, each
// message's envelope (from, to, subject) is logged instead of sent, which is what a fresh local
// setup wants. Never the body: it may carry a verification, reset or invitation token, and logs
// travel further than mailboxes (journald, log shippers, support tickets).
import nodemailer from "nodemailer";
import type { Logger } from "../core/logger.js";

export interface Email {
  to: string;
  subject: string;
  text: string;
}

export interface Mailer {
  send(email: Email): Promise<void>;
  close(): void;
}

export function createMailer(smtpUrl: string | undefined, from: string, log: Logger): Mailer {
  if (!smtpUrl) {
    return {
      send: async (email) => log.info({ mail: { from, to: email.to, subject: email.subject } }, "SMTP_URL not set; email logged (without its body), not sent"),
      close: () => {},
    };
  }
  const transport = nodemailer.createTransport(smtpUrl, {
    connectionTimeout: 10000,
    greetingTimeout: 10000,
    socketTimeout: 30000,
  } as object);
  return {
    send: async (email) => {
      await transport.sendMail({ from, to: email.to, subject: email.subject, text: email.text });
    },
    close: () => transport.close(),
  };
}
