/** uploadsStorage and the uploads bucket's keys: defaults per stage, and every refusal names its key. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { parseStackConfig } from "../../config/config";
import { readStackFile } from "../../cli/lib/renderStack";
import { minimalRaw } from "../support/fixtures";
import { configProblems } from "../support/configProblems";


const separated = (provider: "hetzner" | "digitalocean") => ({ ...minimalRaw(provider), stage: "separated" });
const hetznerUploadsKeys = { uploadsAccessKeyId: "UPLOADSKEYID", uploadsSecretAccessKey: "uploads-secret-key" };

describe("stack config: where uploads live", () => {
  it("keeps them on the data volume in mvp unless told otherwise", () => {
    assert.deepEqual(parseStackConfig(minimalRaw("hetzner")).uploads, { storage: "volume" });
    assert.deepEqual(parseStackConfig({ ...minimalRaw("hetzner"), uploadsStorage: "volume" }).uploads, { storage: "volume" });
  });

  it("puts them in a bucket from separated on, on the server's provider by default (Spaces: created, keys minted)", () => {
    assert.deepEqual(parseStackConfig(separated("digitalocean")).uploads, {
      storage: "bucket",
      bucket: { provider: "digitalocean", region: "fra1", endpoint: "https://fra1.digitaloceanspaces.com", name: undefined, accessKeyId: undefined, secretAccessKey: undefined },
    });
    assert.deepEqual(parseStackConfig({ ...separated("hetzner"), region: "nbg1", ...hetznerUploadsKeys }).uploads, {
      storage: "bucket",
      bucket: { provider: "hetzner", region: "nbg1", endpoint: "https://nbg1.your-objectstorage.com", name: undefined, accessKeyId: "UPLOADSKEYID", secretAccessKey: "uploads-secret-key" },
    });
  });

  it("takes a bucket in mvp too, at another provider or any S3 store", () => {
    const config = parseStackConfig({
      ...minimalRaw("hetzner"),
      uploadsStorage: "bucket",
      uploadsBucketProvider: "s3",
      uploadsBucketEndpoint: "https://s3.eu-central-1.amazonaws.com",
      uploadsBucketName: "acme-uploads",
      uploadsBucketRegion: "eu-central-1",
      ...hetznerUploadsKeys,
    });
    assert.deepEqual(config.uploads, {
      storage: "bucket",
      bucket: { provider: "s3", region: "eu-central-1", endpoint: "https://s3.eu-central-1.amazonaws.com", name: "acme-uploads", accessKeyId: "UPLOADSKEYID", secretAccessKey: "uploads-secret-key" },
    });
    assert.equal(parseStackConfig({ ...minimalRaw("hetzner"), uploadsStorage: "bucket", uploadsBucketProvider: "digitalocean", uploadsBucketRegion: "ams3" }).uploads.storage, "bucket");
  });

  // Each fragment, merged into a minimal valid config, gives exactly these lines.
  const table: Array<[string, Record<string, string | undefined>, string[]]> = [
    [
      "volume in stage separated",
      { ...separated("digitalocean"), uploadsStorage: "volume" },
      ['saas-vps:uploadsStorage: "volume" keeps uploads on one server\'s disk, but in stage separated the web and worker processes run on different servers that share no disk; use bucket (the default from separated on)'],
    ],
    ["an unknown storage", { ...minimalRaw("hetzner"), uploadsStorage: "disk" }, ['saas-vps:uploadsStorage: "disk" is not allowed; use one of volume, bucket']],
    [
      "bucket keys while uploads stay on the volume",
      { ...minimalRaw("hetzner"), uploadsBucketRegion: "fsn1", uploadsSecretAccessKey: "x" },
      [
        "saas-vps:uploadsBucketRegion: is only for saas-vps:uploadsStorage bucket; uploads are kept on the data volume here (uploadsStorage is volume): remove the key or set uploadsStorage to bucket",
        "saas-vps:uploadsSecretAccessKey: is only for saas-vps:uploadsStorage bucket; uploads are kept on the data volume here (uploadsStorage is volume): remove the key or set uploadsStorage to bucket",
      ],
    ],
    [
      "a Hetzner uploads bucket without keys",
      separated("hetzner"),
      [
        "saas-vps:uploadsAccessKeyId: is required when saas-vps:uploadsBucketProvider is hetzner (Hetzner's API cannot create S3 keys; make them in the Hetzner console)",
        "saas-vps:uploadsSecretAccessKey: is required when saas-vps:uploadsBucketProvider is hetzner (Hetzner's API cannot create S3 keys; make them in the Hetzner console); set it with --secret",
      ],
    ],
    [
      "the backup bucket's key for uploads",
      { ...separated("hetzner"), uploadsAccessKeyId: "HETZNERKEYID", uploadsSecretAccessKey: "hetzner-secret-key" },
      ["saas-vps:uploadsAccessKeyId: is the backup bucket's key (saas-vps:backupAccessKeyId); the app holds this key, and with it could read and delete the backups: give the uploads bucket a key of its own"],
    ],
    ["an unknown bucket provider", { ...separated("digitalocean"), uploadsBucketProvider: "aws" }, ['saas-vps:uploadsBucketProvider: "aws" is not allowed; use one of digitalocean, hetzner, s3']],
    ["a Spaces region that has none", { ...separated("digitalocean"), uploadsBucketRegion: "nyc1" }, ['saas-vps:uploadsBucketRegion: "nyc1" has no Spaces; use one of nyc3, sfo2, sfo3, ams3, sgp1, fra1, syd1, blr1, lon1, atl1, tor1']],
    ["a region that is no region name", { ...separated("digitalocean"), uploadsBucketProvider: "s3", uploadsBucketEndpoint: "https://s3.example.com", uploadsBucketName: "acme-up", uploadsBucketRegion: "eu central", ...hetznerUploadsKeys }, ['saas-vps:uploadsBucketRegion: must be a region name such as fsn1, fra1 or eu-central-1; got "eu central"']],
    ["an endpoint for a derived one", { ...separated("digitalocean"), uploadsBucketEndpoint: "https://fra1.digitaloceanspaces.com" }, ["saas-vps:uploadsBucketEndpoint: is only for uploadsBucketProvider s3; digitalocean endpoints are derived from the region"]],
    ["s3 without an endpoint", { ...separated("digitalocean"), uploadsBucketProvider: "s3", uploadsBucketName: "acme-up", ...hetznerUploadsKeys }, ['saas-vps:uploadsBucketEndpoint: is required for uploadsBucketProvider s3 and must be an http(s) URL such as https://s3.eu-central-1.amazonaws.com; got ""']],
    ["s3 without a name", { ...separated("digitalocean"), uploadsBucketProvider: "s3", uploadsBucketEndpoint: "https://s3.example.com", ...hetznerUploadsKeys }, ["saas-vps:uploadsBucketName: is required for uploadsBucketProvider s3 (an existing bucket)"]],
    ["a name with dots", { ...separated("digitalocean"), uploadsBucketName: "uploads.example.com" }, ['saas-vps:uploadsBucketName: must be 3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (no dots: they break TLS for virtual-host-style S3 requests); got "uploads.example.com"']],
    [
      "a key with a space (it lands in an env file)",
      { ...separated("hetzner"), uploadsAccessKeyId: "UPLOADS KEY", uploadsSecretAccessKey: "s\"ecret" },
      [
        "saas-vps:uploadsAccessKeyId: must be an S3 key: letters, digits and + / = . _ ~ - only (no spaces, quotes or backslashes); got a value that is not one",
        "saas-vps:uploadsSecretAccessKey: must be an S3 key: letters, digits and + / = . _ ~ - only (no spaces, quotes or backslashes); got a value that is not one",
      ],
    ],
  ];
  for (const [title, raw, expected] of table) {
    it(`refuses ${title}, naming the key`, () => {
      const clean = Object.fromEntries(Object.entries(raw).filter(([, v]) => v !== undefined)) as Record<string, string>;
      assert.deepEqual(configProblems(clean), expected);
    });
  }

  it("refuses the uploads secret key stored in plain text", () => {
    assert.deepEqual(configProblems({ ...separated("hetzner"), ...hetznerUploadsKeys }, new Set(["backupSecretAccessKey"])), [
      "saas-vps:uploadsSecretAccessKey: is a credential and is stored in plain text; set it with: pulumi config set --secret saas-vps:uploadsSecretAccessKey <value>",
    ]);
  });

  it("parses the example stack Pulumi.separated.yaml: uploads in Hetzner Object Storage next to the servers", () => {
    const file = readStackFile(join(__dirname, "..", "..", "Pulumi.separated.yaml"));
    const raw = Object.fromEntries(Object.entries(file.config).filter(([k]) => k.startsWith("saas-vps:")).map(([k, v]) => [k.slice(9), v]));
    const secretKeys = new Set(file.secretKeys.filter((k) => k.startsWith("saas-vps:")).map((k) => k.slice(9)));
    const config = parseStackConfig(raw, { secretKeys });
    assert.equal(config.uploads.storage, "bucket");
    assert.equal(config.uploads.storage === "bucket" && config.uploads.bucket.endpoint, "https://fsn1.your-objectstorage.com");
    assert.equal(config.backupBucket.provider, "digitalocean");
  });
});
