/**
 * Builds (or finds cached) every VM image `npm test`'s @vm suites will boot, before they run: `.ci/run`
 * starts it in the background while the rest of the suite runs, since images for a clean machine
 * take minutes each and the VM tests come last. Each test still calls ensureImage itself (a build
 * in progress holds the image lock, so a test waits for it rather than building twice); this only
 * moves the builds earlier. Prints one line per image.
 *
 *   npx tsx test/vm/prebuildImages.ts
 */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { DEFAULT_PACKAGES, ensureImage, packagesFromUserData } from "../../cli/vm/image";
import { renderStackServersForVm } from "../../cli/vm/stack";
import { vmTestRenders } from "./settings";

/** Any well-formed key: the package lists do not depend on it. */
const PLACEHOLDER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPrebuildPrebuildPrebuildPrebuildPrebuild00 prebuild";

async function main(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "saas-vps-prebuild-"));
  try {
    const lists = new Map<string, string[]>();
    for (const [i, r] of vmTestRenders().entries()) {
      const render = await renderStackServersForVm({ stack: r.stack, publicKey: PLACEHOLDER_KEY, outDir: path.join(tmp, String(i)), settings: r.settings });
      for (const s of render.servers.filter((x) => !r.servers || r.servers.includes(x.server))) {
        const packages = packagesFromUserData(s.userData) ?? DEFAULT_PACKAGES;
        lists.set([...packages].sort().join(" "), packages);
      }
    }
    console.log(`prebuild: ${lists.size} VM images for the @vm tests`);
    for (const packages of lists.values()) {
      const t0 = Date.now();
      const image = await ensureImage({ packages, log: () => {} });
      console.log(`prebuild: image ${image.key} ${image.built ? `built in ${Math.round((Date.now() - t0) / 1000)} s` : "cached"}: ${packages.join(" ")}`);
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  console.error(`prebuild: ${e.message}`);
  process.exit(1);
});
