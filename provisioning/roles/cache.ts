/**
 * The cache role (stage scaled): Valkey on a server of its own, for the app's shared rate limits
 * and cache (provisioning/valkey.ts renders its settings). The first-boot step 20-valkey makes the
 * TLS certificate, binds Valkey to the private address it finds and restarts it onto our settings
 * (the package started it with its own at install).
 */
import {
  renderValkeyFiles,
  VALKEY_BIND_CONF_PATH,
  VALKEY_GROUP,
  VALKEY_TLS_CERT_PATH,
  VALKEY_TLS_KEY_PATH,
  VALKEY_UNIT,
  type ValkeyInput,
} from "../valkey";
import type { RoleContribution } from "./contribution";
import { nonlocalBindFile } from "./db";

export type CacheInput = ValkeyInput;

export function renderCache(input: CacheInput): RoleContribution[] {
  return [
    {
      files: [...renderValkeyFiles(input), nonlocalBindFile({ name: "valkey", title: "Valkey" })],
      // valkey-tools: valkey-cli for checks on the server; openssl makes the TLS certificate.
      packages: ["valkey-server", "valkey-tools", "openssl"],
      steps: ["20-valkey"],
      units: [VALKEY_UNIT],
      settings: {
        VALKEY_BIND_CONF: VALKEY_BIND_CONF_PATH,
        VALKEY_TLS_CERT: VALKEY_TLS_CERT_PATH,
        VALKEY_TLS_KEY: VALKEY_TLS_KEY_PATH,
        VALKEY_GROUP,
        VALKEY_UNIT,
      },
    },
  ];
}
