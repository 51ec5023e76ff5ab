/**
 * User-data size of every server of every stack file (Pulumi.<stack>.yaml), against Hetzner's
 * 32 KiB cap and the renderer's budget of half of it (provisioning/cloudInit.ts): the figure that
 * says how much room each server's first boot has left as stages add roles.
 *
 *   npx tsx bench/userDataSizes.ts        (npm run -s bench:user-data)
 *
 * Each stack is rendered as `npm run render` renders one (cli/lib/renderStack.ts: the real program
 * under Pulumi mocks, placeholder secrets), without writing its files; `npm run render -- --stack
 * <name> --out <dir>` prints the same size for one stack along with the files. A stack that does
 * not render is reported with its error and makes the exit status 1; the others are still printed.
 */
import { USER_DATA_BUDGET_BYTES, USER_DATA_LIMIT_BYTES, userDataSize } from "../provisioning/cloudInit";
import { readStackFile, renderStack } from "../cli/lib/renderStack";
import { listStacks, stackFilePath } from "../cli/lib/stacks";

interface Row {
  stack: string;
  server: string;
  bytes: number;
}

const pct = (bytes: number, of: number) => `${((bytes / of) * 100).toFixed(1)}%`;

async function main(): Promise<number> {
  const rows: Row[] = [];
  const failures: string[] = [];
  for (const stack of listStacks()) {
    try {
      const render = await renderStack(stack, readStackFile(stackFilePath(stack)));
      for (const server of render.servers) rows.push({ stack, server: server.name, bytes: userDataSize(server.userData) });
    } catch (e) {
      failures.push(`${stack}: does not render: ${(e as Error).message.split("\n").join("\n  ")}`);
    }
  }
  const head = ["stack", "server", "user-data bytes", `of Hetzner's ${USER_DATA_LIMIT_BYTES}`, `of the budget ${USER_DATA_BUDGET_BYTES}`, "bytes left in the budget"];
  const cells = rows.map((r) => [r.stack, r.server, String(r.bytes), pct(r.bytes, USER_DATA_LIMIT_BYTES), pct(r.bytes, USER_DATA_BUDGET_BYTES), String(USER_DATA_BUDGET_BYTES - r.bytes)]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => console.log(c.map((x, i) => (i < 2 ? x.padEnd(widths[i]) : x.padStart(widths[i]))).join("  "));
  line(head);
  cells.forEach(line);
  for (const f of failures) console.log(`\n${f}`);
  return failures.length ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
