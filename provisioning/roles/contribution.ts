/**
 * What a role (or a part several roles share) adds to a server, and how a server's parts add
 * up. A server is exactly the sum of its parts: renderServer knows no role by name.
 */
import type { RenderedFile } from "../files";
import { BOOTSTRAP_PATH } from "../cloudInit";
import { BOOTSTRAP_STEP_DIR } from "../layout";
import { loadScript } from "../scripts";

export interface RoleContribution {
  /** Files the server gets (first boot and day-2 push alike, unless pushOnly). */
  files: RenderedFile[];
  /** Debian packages cloud-init installs before the files are unpacked. */
  packages: readonly string[];
  /**
   * First-boot steps, by the name of their script in provisioning/assets/server/. The number
   * in front orders them across roles (bootstrap runs them sorted): 10 data volume, 20 the
   * database on it, 30 the app's directories (uploads on the volume), 40 TLS links nginx's
   * config needs, 45 the certificate's sharing (stage scaled's issuer), 50 nginx, 80 daemons
   * take their new settings, 90 enable and start units.
   */
  steps: readonly string[];
  /** Units the last step enables and starts. */
  units: readonly string[];
  /**
   * Units the last step enables but does not start: they run a pushOnly file, which the day-2
   * push brings and whose onChange starts them. A reboot starts them like any enabled unit.
   */
  unitsStartedByPush?: readonly string[];
  /** bootstrap.env lines the steps (and tls-issue) read; no secrets. */
  settings: Record<string, string>;
}

/** The sum of a server's parts; steps sorted, packages and units sorted without duplicates. */
export function sumContributions(parts: RoleContribution[]): RoleContribution {
  const settings: Record<string, string> = {};
  for (const part of parts) {
    for (const [key, value] of Object.entries(part.settings)) {
      if (key in settings && settings[key] !== value) throw new Error(`roles disagree on bootstrap setting ${key}: ${JSON.stringify(settings[key])} and ${JSON.stringify(value)}`);
      settings[key] = value;
    }
  }
  const set = (pick: (part: RoleContribution) => readonly string[] | undefined) => [...new Set(parts.flatMap((p) => pick(p) ?? []))].sort();
  return {
    files: parts.flatMap((p) => p.files),
    packages: set((p) => p.packages),
    steps: set((p) => p.steps),
    units: set((p) => p.units),
    unitsStartedByPush: set((p) => p.unitsStartedByPush),
    settings,
  };
}

/** A first-boot step as the server gets it; a changed step re-runs bootstrap, which is idempotent. */
export function stepFile(name: string): RenderedFile {
  return { path: `${BOOTSTRAP_STEP_DIR}/${name}`, content: loadScript(`server/${name}`), mode: "0755", onChange: BOOTSTRAP_PATH };
}
