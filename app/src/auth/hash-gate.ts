// A cap on concurrent password hashes. Each scrypt hash holds 16 MiB and one of libuv's 4
// threadpool threads (shared with file I/O and DNS) for tens of milliseconds, so a burst of logins
// could otherwise starve uploads and exhaust memory. A few callers wait their turn (normal bursts
// see no error); past that the caller gets 503 with Retry-After at once, so a flood costs
// neither memory nor a growing queue of latency for everyone else. Per process: each web
// instance has its own threads and memory to protect.
import { ServiceUnavailableError } from "../core/errors.js";

export class HashGate {
  private active = 0;
  private readonly waiting: Array<() => void> = [];
  /** Hashes started since the process began (tests read it: the scrypt cost was paid). */
  started = 0;
  /** Most hashes ever running at once. */
  peak = 0;

  constructor(
    readonly concurrency: number,
    readonly maxWaiting: number,
  ) {}

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.active < this.concurrency) this.active++;
    else if (this.waiting.length < this.maxWaiting) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else throw new ServiceUnavailableError("too many sign-ins at once: try again in a second", 1);
    this.started++;
    this.peak = Math.max(this.peak, this.active);
    try {
      return await work();
    } finally {
      // Hand the slot straight to the next waiter, or free it.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Two at a time per process (two of libuv's four threads), eight more may wait. */
export const passwordHashGate = new HashGate(2, 8);
