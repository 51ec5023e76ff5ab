/** Free TCP ports on loopback, picked by the kernel: for the local VM's forwards, its bucket, and tests. */
import * as net from "node:net";

/**
 * `n` distinct ports nobody listens on right now on 127.0.0.1. All `n` listeners are held open
 * together before any is closed, so the kernel cannot hand out the same port twice.
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      servers.push(s);
      await new Promise<void>((res, rej) => { s.once("error", rej); s.listen(0, "127.0.0.1", () => res()); });
      ports.push((s.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise((res) => s.close(() => res(undefined)))));
  }
}

/** One free port (see freePorts). */
export async function freePort(): Promise<number> {
  return (await freePorts(1))[0];
}
