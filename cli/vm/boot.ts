/** One call for callers (`npm run vm`, tests, the benchmark): image, QEMU, SSH, cloud-init finished. */
import * as fs from "node:fs";
import { DEFAULT_PACKAGES, type ImageInfo, ensureImage, packagesFromUserData } from "./image";
import { stderrLog } from "./log";
import { type StartVmOptions, type Vm, startVm } from "./vm";
import { type CloudInitResult, waitForCloudInit, waitForSsh } from "./wait";

export interface BootResult {
  vm: Vm;
  image: ImageInfo;
  /** Seconds from VM start to the first successful SSH login. */
  sshSeconds: number;
  cloudInit: CloudInitResult;
}

/**
 * Image (cached) → seed/overlay/data disk → QEMU → SSH → cloud-init finished. The image's
 * package list is the user-data's `packages:` (DEFAULT_PACKAGES when it has none). Does not
 * throw when cloud-init ends in error: check `cloudInit.status`. On any other failure the VM
 * is left running for inspection (stopVm(runDir) ends it).
 */
export async function bootVm(opts: Omit<StartVmOptions, "image"> & {
  rebuildImage?: boolean;
  /** How long to wait for SSH after QEMU starts (default: waitForSsh's 10 min). */
  sshTimeoutMs?: number;
  /** How long to wait for cloud-init once SSH is up (default: waitForCloudInit's 20 min). */
  cloudInitTimeoutMs?: number;
}): Promise<BootResult> {
  const log = opts.log ?? stderrLog;
  const userData = fs.readFileSync(opts.userDataFile, "utf8");
  const packages = packagesFromUserData(userData) ?? DEFAULT_PACKAGES;
  const t0 = Date.now();
  const image = await ensureImage({ packages, rebuild: opts.rebuildImage, log });
  log(`[vm] image ${image.key} ${image.built ? `built in ${((Date.now() - t0) / 1000).toFixed(0)} s` : "from cache"}`);
  const vm = await startVm({ ...opts, image });
  const sshSeconds = await waitForSsh(vm, { log, timeoutMs: opts.sshTimeoutMs });
  const cloudInit = await waitForCloudInit(vm, { log, timeoutMs: opts.cloudInitTimeoutMs });
  log(`[vm ${cloudInit.seconds.toFixed(1).padStart(6)} s] cloud-init finished: ${cloudInit.extendedStatus}` +
      (cloudInit.errors.length ? ` (${cloudInit.errors.length} errors)` : ""));
  return { vm, image, sshSeconds, cloudInit };
}
