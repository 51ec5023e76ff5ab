/**
 * Pulumi hands a program its config with fully qualified keys (`saas-vps:region`,
 * `hcloud:token`); the config contract (config.ts) speaks short keys (`region`). These are the
 * only translations between the two, for the program and for the commands in cli/.
 */
import { PROJECT } from "./config";

const PREFIX = `${PROJECT}:`;

/** `saas-vps:region` → `region`; undefined for another namespace's key (`hcloud:token`). */
export function projectKeyOf(fullKey: string): string | undefined {
  return fullKey.startsWith(PREFIX) ? fullKey.slice(PREFIX.length) : undefined;
}

/** `region` → `saas-vps:region`; a key that already names a namespace is kept as it is. */
export function qualifyKey(key: string): string {
  return key.includes(":") ? key : `${PREFIX}${key}`;
}

/** This project's part of a fully qualified config map, with short keys. */
export function projectConfigOf(config: Record<string, string>): Record<string, string> {
  const raw: Record<string, string> = {};
  for (const [fullKey, value] of Object.entries(config)) {
    const key = projectKeyOf(fullKey);
    if (key !== undefined) raw[key] = value;
  }
  return raw;
}
