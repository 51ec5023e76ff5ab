/**
 * What each hosting provider offers, as far as the stack config needs to know: locations,
 * server types with their memory (PostgreSQL tuning and the 2 GiB floor depend on it), the
 * Debian 13 image name, and defaults. Pure data; the Pulumi-facing code lives in components/.
 *
 * Sources: Hetzner Cloud locations and server types (docs.hetzner.com/cloud/servers/overview),
 * DigitalOcean regions and Droplet size slugs (docs.digitalocean.com/platform/regional-availability).
 */
export const PROVIDERS = ["hetzner", "digitalocean"] as const;
export type Provider = (typeof PROVIDERS)[number];

export interface ServerType {
  vcpus: number;
  memoryMiB: number;
}

export interface ProviderCatalog {
  /** Human name used in error messages. */
  title: string;
  /** Word for a place, as the provider says it. */
  regionWord: string;
  regions: readonly string[];
  defaultRegion: string;
  serverTypes: Readonly<Record<string, ServerType>>;
  defaultServerType: string;
  /**
   * The cache server's default type (stage scaled): the provider's cheapest type with at least
   * MIN_CACHE_MEMORY_MIB. Valkey is single-threaded and holds only rebuildable keys, so the cheapest
   * memory is the right start; cacheServerType grows it.
   */
  defaultCacheServerType: string;
  /** The provider's image name for Debian 13 (trixie). */
  debianImage: string;
}

const gib = (n: number) => n * 1024;

export const CATALOGS: Readonly<Record<Provider, ProviderCatalog>> = {
  hetzner: {
    title: "Hetzner",
    regionWord: "location",
    regions: ["fsn1", "nbg1", "hel1", "ash", "hil", "sin"],
    defaultRegion: "fsn1",
    serverTypes: {
      cx22: { vcpus: 2, memoryMiB: gib(4) },
      cx32: { vcpus: 4, memoryMiB: gib(8) },
      cx42: { vcpus: 8, memoryMiB: gib(16) },
      cx52: { vcpus: 16, memoryMiB: gib(32) },
      cx23: { vcpus: 2, memoryMiB: gib(4) },
      cx33: { vcpus: 4, memoryMiB: gib(8) },
      cx43: { vcpus: 8, memoryMiB: gib(16) },
      cx53: { vcpus: 16, memoryMiB: gib(32) },
      cpx11: { vcpus: 2, memoryMiB: gib(2) },
      cpx21: { vcpus: 3, memoryMiB: gib(4) },
      cpx31: { vcpus: 4, memoryMiB: gib(8) },
      cpx41: { vcpus: 8, memoryMiB: gib(16) },
      cpx51: { vcpus: 16, memoryMiB: gib(32) },
      cax11: { vcpus: 2, memoryMiB: gib(4) },
      cax21: { vcpus: 4, memoryMiB: gib(8) },
      cax31: { vcpus: 8, memoryMiB: gib(16) },
      cax41: { vcpus: 16, memoryMiB: gib(32) },
      ccx13: { vcpus: 2, memoryMiB: gib(8) },
      ccx23: { vcpus: 4, memoryMiB: gib(16) },
      ccx33: { vcpus: 8, memoryMiB: gib(32) },
      ccx43: { vcpus: 16, memoryMiB: gib(64) },
      ccx53: { vcpus: 32, memoryMiB: gib(128) },
      ccx63: { vcpus: 48, memoryMiB: gib(192) },
    },
    defaultServerType: "cx23",
    defaultCacheServerType: "cx23",
    debianImage: "debian-13",
  },
  digitalocean: {
    title: "DigitalOcean",
    regionWord: "region",
    regions: ["nyc1", "nyc3", "sfo2", "sfo3", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1"],
    defaultRegion: "fra1",
    serverTypes: {
      "s-1vcpu-1gb": { vcpus: 1, memoryMiB: gib(1) },
      "s-1vcpu-2gb": { vcpus: 1, memoryMiB: gib(2) },
      "s-2vcpu-2gb": { vcpus: 2, memoryMiB: gib(2) },
      "s-2vcpu-4gb": { vcpus: 2, memoryMiB: gib(4) },
      "s-4vcpu-8gb": { vcpus: 4, memoryMiB: gib(8) },
      "s-8vcpu-16gb": { vcpus: 8, memoryMiB: gib(16) },
      "s-2vcpu-4gb-amd": { vcpus: 2, memoryMiB: gib(4) },
      "s-4vcpu-8gb-amd": { vcpus: 4, memoryMiB: gib(8) },
      "s-2vcpu-4gb-intel": { vcpus: 2, memoryMiB: gib(4) },
      "s-4vcpu-8gb-intel": { vcpus: 4, memoryMiB: gib(8) },
      "g-2vcpu-8gb": { vcpus: 2, memoryMiB: gib(8) },
      "g-4vcpu-16gb": { vcpus: 4, memoryMiB: gib(16) },
      "c-2": { vcpus: 2, memoryMiB: gib(4) },
      "c-4": { vcpus: 4, memoryMiB: gib(8) },
      "m-2vcpu-16gb": { vcpus: 2, memoryMiB: gib(16) },
    },
    defaultServerType: "s-2vcpu-4gb",
    defaultCacheServerType: "s-1vcpu-1gb",
    debianImage: "debian-13-x64",
  },
};

/** Smallest memory we support: PostgreSQL + nginx + 2 web + 1 worker need headroom. */
export const MIN_MEMORY_MIB = gib(2);

/** Where a backup bucket can live; it may differ from the server's provider (off-provider backups). */
export const BUCKET_PROVIDERS = ["digitalocean", "hetzner", "s3"] as const;
export type BucketProvider = (typeof BUCKET_PROVIDERS)[number];

/** Hetzner Object Storage locations (S3 endpoint https://<location>.your-objectstorage.com). */
export const HETZNER_OBJECT_STORAGE_LOCATIONS = ["fsn1", "nbg1", "hel1"] as const;
/** DigitalOcean regions with Spaces. */
export const SPACES_REGIONS = ["nyc3", "sfo2", "sfo3", "ams3", "sgp1", "fra1", "syd1", "blr1", "lon1", "atl1", "tor1"] as const;

/** Where PostgreSQL runs from stage separated on: its own server, or DigitalOcean's managed service. */
export const DATABASE_MODES = ["server", "managed"] as const;
export type DatabaseMode = (typeof DATABASE_MODES)[number];
/**
 * Node sizes of DigitalOcean Managed PostgreSQL: the provider SDK's DatabaseSlug list (a test keeps the two equal),
 * smallest first: a read-only node may not be smaller than its cluster (config.ts compares positions here).
 */
export const MANAGED_DATABASE_SIZES = ["db-s-1vcpu-1gb", "db-s-1vcpu-2gb", "db-s-2vcpu-4gb", "db-s-4vcpu-8gb", "db-s-6vcpu-16gb", "db-s-8vcpu-32gb", "db-s-16vcpu-64gb"] as const;
/** The default node size of DigitalOcean Managed PostgreSQL (1 vCPU, 2 GiB). */
export const DEFAULT_MANAGED_DATABASE_SIZE = "db-s-1vcpu-2gb";

/**
 * Hetzner network zones and the locations in each: a network's subnet lives in one zone, and
 * only servers in that zone's locations can join it (docs.hetzner.com/cloud/networks/overview).
 */
export const HETZNER_NETWORK_ZONES: Readonly<Record<string, readonly string[]>> = {
  "eu-central": ["fsn1", "nbg1", "hel1"],
  "us-east": ["ash"],
  "us-west": ["hil"],
  "ap-southeast": ["sin"],
};

/** The network zone of a Hetzner location. */
export function hetznerZoneOf(location: string): string | undefined {
  return Object.keys(HETZNER_NETWORK_ZONES).find((zone) => HETZNER_NETWORK_ZONES[zone].includes(location));
}

/** Smallest memory of a server without PostgreSQL (web or worker alone). */
export const MIN_APP_MEMORY_MIB = gib(1);

/**
 * Smallest memory of the cache server: Valkey gets half of it (provisioning/valkey.ts), the rest is
 * the system's and the allocator's.
 */
export const MIN_CACHE_MEMORY_MIB = gib(1);
