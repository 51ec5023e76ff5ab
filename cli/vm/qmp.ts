/** QEMU's machine protocol (QMP) over the VM's unix socket: how the runner powers the VM down. */
import * as net from "node:net";

/** A QMP command: its name, or its name with arguments. */
export type QmpCommand = string | { execute: string; arguments: Record<string, unknown> };

/** Send QMP commands (after the capabilities handshake); resolves with their replies. */
export function qmp(socketPath: string, commands: QmpCommand[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const replies: unknown[] = [];
    const queue: QmpCommand[] = ["qmp_capabilities", ...commands];
    let buf = "";
    const timer = setTimeout(() => { sock.destroy(); reject(new Error("QMP timeout")); }, 10000);
    sock.on("error", (e) => { clearTimeout(timer); reject(e); });
    sock.on("data", (d) => {
      buf += d;
      let i: number;
      while ((i = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        if (!line) continue;
        const msg = JSON.parse(line);
        if (msg.QMP || "return" in msg || "error" in msg) {
          if (!msg.QMP) replies.push(msg);
          const next = queue.shift();
          if (next) sock.write(JSON.stringify(typeof next === "string" ? { execute: next } : next) + "\n");
          else { clearTimeout(timer); sock.end(); resolve(replies.slice(1)); }
        }
      }
    });
  });
}

/**
 * Forwards a host loopback port to a guest port on the running VM (QEMU's `hostfwd_add`), the
 * way the boot forwards SSH and HTTP: the guest sees the connection come from the host address.
 */
export async function addHostForward(socketPath: string, hostPort: number, guestPort: number): Promise<void> {
  const [reply] = await qmp(socketPath, [{ execute: "human-monitor-command", arguments: { "command-line": `hostfwd_add tcp:127.0.0.1:${hostPort}-:${guestPort}` } }]);
  const text = (reply as { return?: string }).return ?? JSON.stringify(reply);
  if (text.trim() !== "") throw new Error(`hostfwd_add ${hostPort}->${guestPort}: ${text}`);
}
