/** QEMU's machine protocol (QMP) over the VM's unix socket: how the runner powers the VM down. */
import * as net from "node:net";

/** Send QMP commands (after the capabilities handshake); resolves with their replies. */
export function qmp(socketPath: string, commands: string[]): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const sock = net.createConnection(socketPath);
    const replies: unknown[] = [];
    const queue = ["qmp_capabilities", ...commands];
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
          if (next) sock.write(JSON.stringify({ execute: next }) + "\n");
          else { clearTimeout(timer); sock.end(); resolve(replies.slice(1)); }
        }
      }
    });
  });
}
