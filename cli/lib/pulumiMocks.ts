/**
 * Pulumi mocks that record every resource with its inputs, for `npm run render` and the tests.
 * Pulumi's mocks echo nothing back by themselves (a resource's outputs are only what newResource
 * returns), so we return the inputs plus the computed
 * outputs the program reads (IPs, ids, fingerprints, generated passwords, keys).
 */
import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import * as pulumi from "@pulumi/pulumi";
import { hostAddress } from "../../config/validators";

export interface RecordedResource {
  type: string;
  name: string;
  /** Inputs as they reached the provider; secret values arrive wrapped (see unwrapSecrets). */
  inputs: Record<string, any>;
  /** The provider id the mock gave it. */
  id: string;
  /** What the mock answered: the inputs plus the computed outputs (assigned addresses). */
  state: Record<string, any>;
  /** Whether the resource was registered with `protect: true` (the mock API does not expose it: see note). */
}

const SECRET_SIG = pulumi.runtime.specialSecretSig;
const SIG_KEY = pulumi.runtime.specialSigKey;

/** True when a value arrived at the mock as a Pulumi secret. */
export function isWrappedSecret(value: unknown): boolean {
  return typeof value === "object" && value !== null && (value as Record<string, unknown>)[SIG_KEY] === SECRET_SIG;
}

/** Replaces wrapped secrets by their plain values, deeply. */
export function unwrapSecrets(value: any): any {
  if (isWrappedSecret(value)) return unwrapSecrets(value.value);
  if (Array.isArray(value)) return value.map(unwrapSecrets);
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, unwrapSecrets(v)]));
  return value;
}

/** A stable fake value per resource, shaped like the real one (alphanumeric, long enough). */
function fake(name: string, length = 32): string {
  return ("FAKE" + createHash("sha256").update(name).digest("hex")).slice(0, length);
}

/** Provider ids are numbers on Hetzner and for droplets; stable per name so runs compare equal. */
function fakeNumericId(name: string): string {
  return String(1000 + (createHash("sha256").update(name).digest().readUInt32BE(0) % 9_000_000));
}

function fakeIpv4(name: string): string {
  const n = createHash("sha256").update(name).digest()[0];
  return `192.0.2.${(n % 200) + 10}`; // TEST-NET-1: never a real host
}

/**
 * A real ED25519 key pair derived from a name (so renders compare equal between runs), in the
 * OpenSSH formats tls.PrivateKey answers with: `privateKeyOpenssh` (openssh-key-v1, unencrypted)
 * and `publicKeyOpenssh` ("ssh-ed25519 <base64>\n"). Real, so that sshd in the local VM loads it
 * and a client can pin it; derived from a public name, so never a secret.
 * Format: https://github.com/openssh/openssh-portable/blob/master/PROTOCOL.key
 */
export function fakeEd25519Key(name: string): { privateKeyOpenssh: string; publicKeyOpenssh: string } {
  const seed = createHash("sha256").update(`host key ${name}`).digest();
  // PKCS#8 wrapping of a raw ED25519 seed (RFC 8410): node derives the public half.
  const key = createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" });
  const pub = createPublicKey(key).export({ format: "der", type: "spki" }).subarray(-32);
  const str = (b: Buffer | string) => {
    const data = Buffer.from(b);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    return Buffer.concat([len, data]);
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  const publicBlob = Buffer.concat([str("ssh-ed25519"), str(pub)]);
  const check = seed.readUInt32BE(0);
  let secret = Buffer.concat([u32(check), u32(check), publicBlob, str(Buffer.concat([seed, pub])), str("")]);
  const padding = Buffer.from(Array.from({ length: (8 - (secret.length % 8)) % 8 }, (_, i) => i + 1));
  secret = Buffer.concat([secret, padding]);
  const body = Buffer.concat([Buffer.from("openssh-key-v1\0"), str("none"), str("none"), str(""), u32(1), str(publicBlob), str(secret)]);
  const lines = body.toString("base64").match(/.{1,70}/g)!;
  return {
    privateKeyOpenssh: ["-----BEGIN OPENSSH PRIVATE KEY-----", ...lines, "-----END OPENSSH PRIVATE KEY-----", ""].join("\n"),
    publicKeyOpenssh: `ssh-ed25519 ${publicBlob.toString("base64")}\n`,
  };
}

/** A managed database's CA as getDatabaseCa answers it (PEM-shaped; never a real certificate). */
export const MOCK_DATABASE_CA = "-----BEGIN CERTIFICATE-----\nRkFLRS1DQS1GT1ItVEVTVFM=\n-----END CERTIFICATE-----\n";

/** The range DigitalOcean picks for a VPC created without one (a /20 of 10.0.0.0/8). */
export const MOCK_DEFAULT_VPC_RANGE = "10.110.16.0/20";

export class RecordingMocks implements pulumi.runtime.Mocks {
  readonly resources: RecordedResource[] = [];
  /** VPC ranges by VPC id: a droplet's private address is assigned inside its VPC's range. */
  private readonly vpcRanges = new Map<string, string>();

  newResource(args: pulumi.runtime.MockResourceArgs): { id: string; state: Record<string, any> } {
    const numericId = ["hcloud:", "digitalocean:index/droplet"].some((p) => args.type.startsWith(p));
    const id = numericId ? fakeNumericId(args.name) : `${args.name}-id`;
    const state: Record<string, any> = { ...args.inputs };
    this.resources.push({ type: args.type, name: args.name, inputs: args.inputs, id, state });
    switch (args.type) {
      case "hcloud:index/primaryIp:PrimaryIp":
      case "digitalocean:index/reservedIp:ReservedIp":
        state.ipAddress = fakeIpv4(args.name);
        break;
      case "hcloud:index/server:Server":
        state.ipv6Address = "2001:db8::1";
        break;
      case "digitalocean:index/droplet:Droplet": {
        state.ipv6Address = "2001:db8::2";
        // DigitalOcean assigns the VPC address itself: a host of the droplet's VPC, never a planned one.
        const range = this.vpcRanges.get(args.inputs.vpcUuid);
        if (range) state.ipv4AddressPrivate = hostAddress(range, 100 + (createHash("sha256").update(args.name).digest()[0] % 100));
        break;
      }
      case "digitalocean:index/vpc:Vpc":
        state.ipRange = args.inputs.ipRange ?? MOCK_DEFAULT_VPC_RANGE;
        this.vpcRanges.set(`${args.name}-id`, state.ipRange);
        break;
      case "digitalocean:index/sshKey:SshKey":
        state.fingerprint = fake(args.name, 47);
        break;
      case "random:index/randomPassword:RandomPassword":
      case "random:index/randomString:RandomString":
        state.result = fake(args.name, args.inputs.length ?? 32).toLowerCase();
        break;
      case "command:local:Command":
        // The app build's output, as its build script prints it (the build itself is not run under mocks).
        state.stdout = `dist/release/saas-app-${fake(args.name, 16).toLowerCase()}.tar.gz`;
        break;
      case "digitalocean:index/databaseCluster:DatabaseCluster":
        // The shape of DigitalOcean's answer: a private host in the VPC, port 25060, the admin login.
        state.host = `${args.name}-do-user-0.db.ondigitalocean.com`;
        state.privateHost = `private-${args.name}-do-user-0.db.ondigitalocean.com`;
        state.port = 25060;
        state.user = "doadmin";
        state.password = fake(`${args.name}-admin`, 24);
        break;
      case "digitalocean:index/databaseReplica:DatabaseReplica":
        // A read-only node answers like its cluster, at hosts of its own; other resources name it by uuid (its id is not that).
        state.host = `${args.name}-do-user-0.db.ondigitalocean.com`;
        state.privateHost = `private-${args.name}-do-user-0.db.ondigitalocean.com`;
        state.port = 25060;
        state.uuid = `${args.name}-uuid`;
        break;
      case "digitalocean:index/databaseUser:DatabaseUser":
        state.password = fake(`${args.name}-password`, 24);
        break;
      case "tls:index/privateKey:PrivateKey":
        Object.assign(state, fakeEd25519Key(args.name));
        break;
      case "digitalocean:index/spacesKey:SpacesKey":
        state.accessKey = fake(`${args.name}-access`, 20).toUpperCase();
        state.secretKey = fake(`${args.name}-secret`, 43);
        break;
    }
    return { id, state };
  }

  call(args: pulumi.runtime.MockCallArgs): Record<string, any> {
    if (args.token === "digitalocean:index/getDatabaseCa:getDatabaseCa") {
      return { ...args.inputs, certificate: MOCK_DATABASE_CA };
    }
    return args.inputs;
  }

  ofType(type: string): RecordedResource[] {
    return this.resources.filter((r) => r.type === type);
  }
}

/** Resolves an Output's value under mocks (never inside a test assertion callback). */
export function valueOf<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((resolve) => output.apply((v) => resolve(v)));
}
