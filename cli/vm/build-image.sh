#!/usr/bin/env bash
# Build (or reuse from cache) a Debian 13 (trixie) disk image for the local VM runner.
#
#   cli/vm/build-image.sh --packages FILE [--rebuild | --print-key]
#
# --packages FILE  server packages to pre-install, whitespace/newline separated, '#' comments
#                  allowed, `name=version` allowed (apt syntax). The VM runner (cli/vm/image.ts)
#                  writes it: the rendered user-data's `packages:`, else its DEFAULT_PACKAGES.
# --rebuild        ignore a cached image with the same key and build again.
# --print-key      print `KEY=<key>` (the image's cache folder is images/<key>) and stop.
#
# Output: progress on stderr; the last stdout line is `IMAGE_DIR=<dir>`, a directory holding
#   disk.qcow2   ext4 root filesystem (no partition table, boot with root=/dev/vda), qcow2
#   vmlinuz      the guest's kernel (linux-image-cloud-amd64), booted with QEMU -kernel
#   initrd.img   its initramfs, booted with -initrd
#   packages.txt the requested server package list; manifest.txt: every installed package
#   build.json   build facts (key, seconds, sizes, mirror)
#
# Cache: ${SAAS_VPS_VM_CACHE:-~/.cache/saas-vps/vm}/images/<key>, key = sha256 of the normalised
# package list + this script; beside them base-<key>.tar, the base system every image starts
# from. Builds are serialised with flock and published atomically; a cached image is used
# without waiting for the lock.
# Needs root (mmdebstrap root mode + mkfs.ext4 -d keep ownership) and network to the mirror.
set -euo pipefail

SCRIPT="$(readlink -f "$0")"
SUITE=trixie
# The host's apt sources point at deb.debian.org (the only Debian mirror reachable from these
# machines); trixie, trixie-updates and trixie-security are all served there.
MIRROR="${SAAS_VPS_VM_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${SAAS_VPS_VM_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="${SAAS_VPS_VM_CACHE:-$HOME/.cache/saas-vps/vm}"
# Root filesystem size before first boot; the runner's overlay is larger and cloud-init's
# resizefs grows the filesystem to it at first boot.
ROOTFS_SIZE="${SAAS_VPS_VM_ROOTFS_SIZE:-3G}"

# Base system, installed WITHOUT Recommends (kept small, explicit):
#  - kernel + boot: linux-image-cloud-amd64 (initramfs-tools comes as its dependency)
#  - systemd as init, udev, dbus (hostnamectl/timedatectl that cloud-init calls need D-Bus)
#  - networking with systemd-networkd + systemd-resolved: cloud-init 25 also asks for DHCPv6,
#    QEMU user networking has none, and ifupdown's networking.service then blocks for 5 min;
#    networkd does not. iproute2 is what cloud-init's networkd renderer checks for.
#  - e2fsprogs: cloud-init's resizefs module fails (status: error) without resize2fs
#  - locales: cloud-init's locale module runs locale-gen unless the locale is C/C.UTF-8
#  - sudo: cloud-init writes sudoers rules for the users it creates
BASE_PACKAGES="linux-image-cloud-amd64 systemd-sysv udev dbus systemd-resolved systemd-timesyncd \
iproute2 netbase openssh-server cloud-init sudo e2fsprogs locales tzdata procps ca-certificates \
less"

usage() {
  cat <<'USAGE'
usage: cli/vm/build-image.sh --packages FILE [--rebuild | --print-key]
Builds (or reuses from cache) a Debian 13 disk image for the local VM with the packages in FILE
(whitespace separated, '#' comments, name=version allowed) pre-installed. Needs root.
--rebuild    build again even if an image with the same key is cached.
--print-key  print KEY=<key> (the image's cache folder is images/<key>) and stop.
Last stdout line: IMAGE_DIR=<dir> (disk.qcow2 vmlinuz initrd.img packages.txt manifest.txt build.json).
Cache: ${SAAS_VPS_VM_CACHE:-~/.cache/saas-vps/vm}/images/<key>.
USAGE
}

log() { printf '[build-image %5ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'build-image: error: %s\n' "$*" >&2; exit 1; }

packages_file=""
rebuild=0
print_key=0
while [ $# -gt 0 ]; do
  case "$1" in
    --packages) packages_file="${2:?--packages needs a file}"; shift 2 ;;
    --rebuild) rebuild=1; shift ;;
    --print-key) print_key=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root (mmdebstrap root mode, mkfs.ext4 -d with ownership)"
for tool in mmdebstrap mkfs.ext4 qemu-img flock sha256sum; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (Debian packages: mmdebstrap e2fsprogs qemu-utils util-linux coreutils)"
done

[ -n "$packages_file" ] || die "give --packages FILE (the server package list)"
[ -r "$packages_file" ] || die "cannot read package list $packages_file"
raw_packages="$(sed 's/#.*//' "$packages_file")"
# normalise: one per line, sorted, unique
read -r -d '' -a pkg_words <<<"$raw_packages" || true
packages="$(printf '%s\n' "${pkg_words[@]}" | sed '/^$/d' | LC_ALL=C sort -u)"
mapfile -t pkg_array <<<"$packages"
[ -n "$packages" ] || die "empty package list"
for p in "${pkg_array[@]}"; do
  [[ "$p" =~ ^[a-z0-9][a-z0-9+.-]*(=[A-Za-z0-9.+:~-]+)?$ ]] || die "not a Debian package name: '$p'"
done

key="$( { printf '%s\n' "$packages"; printf 'suite=%s\n' "$SUITE"; sha256sum < "$SCRIPT"; } | sha256sum | cut -c1-16)"
if [ "$print_key" -eq 1 ]; then
  echo "KEY=$key"
  exit 0
fi
images="$CACHE/images"
out="$images/$key"
mkdir -p "$images"

# A cached image is published whole (one rename, below), so it can be used without the lock: a
# run whose image is ready does not wait for another image's build (CI prebuilds several while
# the first VM suite starts). Asked again once the lock is held: that build may have been ours.
use_cached() {
  if [ -f "$out/disk.qcow2" ] && [ -f "$out/build.json" ] && [ "$rebuild" -eq 0 ]; then
    log "cached image $key ($(du -h "$out/disk.qcow2" | cut -f1)) in $out"
    echo "IMAGE_DIR=$out"
    exit 0
  fi
}
use_cached

exec 9>"$images/.lock"
if ! flock -n 9; then
  log "another image build holds $images/.lock; waiting"
  flock 9
fi
use_cached

work="$images/.build-$key.$$"
rm -rf "$work"
mkdir -p "$work"
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
rootfs="$work/rootfs"
mkdir "$rootfs"

log "building image $key: Debian $SUITE from $MIRROR"
log "server packages (pre-installed, with Recommends like cloud-init's apt-get): ${pkg_array[*]}"

# Runs in the chroot after the base install (mmdebstrap keeps policy-rc.d/start-stop-daemon
# neutered there, so no service starts on the host). Server packages are installed with their
# Recommends, exactly as cloud-init's `packages:` would on a cloud server, so the VM matches it.
customize="$work/customize.sh"
cat >"$customize" <<'HOOK'
#!/bin/sh
set -eu
root="$1"; shift
echo "[build-image] chroot: apt-get install (with Recommends): $*" >&2
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
  -o APT::Install-Recommends=true -o Dpkg::Use-Pty=0 "$@" >&2
# --- per-machine identities must not be baked into an image shared by every VM ---
# PostgreSQL: the package's postinst ran initdb, so every VM would share the cluster's system
# identifier (and its data would sit outside any data volume the user-data mounts). Drop the
# clusters here; saas-vps-firstboot.service recreates "main" at first boot, after cloud-init has
# mounted volumes and written files (e.g. /etc/postgresql-common/createcluster.conf) and before
# cloud-final installs packages - the same point where the package would create it on a cloud
# server.
if [ -x "$root/usr/bin/pg_lsclusters" ]; then
  chroot "$root" pg_lsclusters -h | while read -r ver name _; do
    echo "[build-image] chroot: dropping PostgreSQL cluster $ver/$name (recreated at first boot)" >&2
    chroot "$root" pg_dropcluster --stop "$ver" "$name"
  done
fi
# ssl-cert's snakeoil key pair: regenerated at first boot by the same unit.
rm -f "$root/etc/ssl/private/ssl-cert-snakeoil.key" "$root/etc/ssl/certs/ssl-cert-snakeoil.pem"
find "$root/etc/ssl/certs" -xtype l -delete
# SSH host keys: cloud-init generates fresh ones at first boot (ssh_deletekeys/ssh_genkeytypes).
rm -f "$root"/etc/ssh/ssh_host_*
# systemd identities
rm -f "$root/var/lib/systemd/random-seed" "$root/var/lib/systemd/credential.secret" \
      "$root/var/lib/dbus/machine-id"
HOOK
chmod +x "$customize"

# Two steps, the first shared by every image: the base system (minbase + BASE_PACKAGES) is built
# once and kept as a tarball beside the images (base-<key>.tar, key = the base's inputs and this
# script); each image starts from it and adds its server packages. Measured alone on a 2-core
# machine: the base 103 s, then 66-94 s per image where a whole build took 172 s, and every
# image the same packages and files as one built in a single step. mmdebstrap's manual documents
# this reuse: --variant=custom with the tarball unpacked by a setup hook. Left out of it: /dev
# (mmdebstrap makes its own) and /etc/resolv.conf (systemd-resolved's link to a stub that does
# not exist in a chroot; mmdebstrap has put the host's copy there for apt, and the image gets its
# link back below).
MMDEBSTRAP_OPTS=(--mode=root
  --aptopt='APT::Install-Recommends "false"'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*')
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")
base_key="$( { printf '%s\n' "$BASE_PACKAGES" "suite=$SUITE" "${SOURCES[@]}"; sha256sum < "$SCRIPT"; } | sha256sum | cut -c1-16)"
base_tar="$images/base-$base_key.tar"

t0=$SECONDS
if [ -f "$base_tar" ]; then
  log "base system: cached $base_tar"
else
  log "base system: mmdebstrap (minbase + base packages without Recommends) ..."
  mmdebstrap --variant=minbase --format=tar "${MMDEBSTRAP_OPTS[@]}" \
    --include="${BASE_PACKAGES// /,}" \
    "$SUITE" "$work/base.tar" "${SOURCES[@]}" \
    2> >(sed -u 's/^/[mmdebstrap] /' >&2)
  mv "$work/base.tar" "$base_tar"
  log "base system built in $((SECONDS - t0)) s: $base_tar"
fi

t1=$SECONDS
log "mmdebstrap (the base system + the server packages) ..."
mmdebstrap --variant=custom --format=directory "${MMDEBSTRAP_OPTS[@]}" \
  --setup-hook="mmtarfilter --path-exclude='/dev/*' --path-exclude=/etc/resolv.conf <'$base_tar' | tar --xattrs --xattrs-include='*' -C \"\$1\" -x" \
  --customize-hook="$customize \"\$1\" ${pkg_array[*]}" \
  "$SUITE" "$rootfs" "${SOURCES[@]}" \
  2> >(sed -u 's/^/[mmdebstrap] /' >&2)
log "mmdebstrap done in $((SECONDS - t1)) s"

log "configuring the root filesystem"
# The dpkg path-excludes were only for the build; a server installs docs normally.
rm -f "$rootfs/etc/dpkg/dpkg.cfg.d/99mmdebstrap" "$rootfs/etc/apt/apt.conf.d/99mmdebstrap"
rm -f "$rootfs/usr/sbin/policy-rc.d"

# apt sources as on a Debian 13 cloud server
rm -f "$rootfs/etc/apt/sources.list"
cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF

# cloud-init's `packages:` runs apt-get update at first boot; skipping the Translation files
# saves downloading and parsing ~7 MB under TCG (package descriptions only, nothing a server uses).
echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/99saas-vps-vm-no-translations"

cat >"$rootfs/etc/fstab" <<'EOF'
# root is the whole virtio disk (no partition table); the kernel mounts it from root=/dev/vda
/dev/vda  /  ext4  rw,discard,errors=remount-ro  0  1
EOF
echo localhost >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n' >"$rootfs/etc/hosts"
# systemd-resolved owns resolv.conf (the host's copy from the build is removed)
ln -sf ../run/systemd/resolve/stub-resolv.conf "$rootfs/etc/resolv.conf"
: >"$rootfs/etc/machine-id"

# Locales: C.UTF-8 is built into libc; also generate en_US.UTF-8 (cloud-init's Debian default)
# so the locale module has nothing to do at first boot.
sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' "$rootfs/etc/locale.gen"
chroot "$rootfs" locale-gen >/dev/null
printf 'LANG=C.UTF-8\n' >"$rootfs/etc/default/locale"

# Networking: cloud-init renders for systemd-networkd (no ifupdown in the image).
chroot "$rootfs" systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
# Only the NoCloud seed exists here; skip probing other datasources.
cat >"$rootfs/etc/cloud/cloud.cfg.d/05_saas_vps_vm.cfg" <<'EOF'
# saas-vps local VM image: the runner attaches a NoCloud seed (label cidata)
datasource_list: [ NoCloud, None ]
EOF

# The guest boots an external kernel/initrd (QEMU -kernel/-initrd), so rebuilding the initrd
# inside the guest (e.g. when a package with Recommends pulls fuse3) only burns ~60 s of TCG.
if [ -f "$rootfs/etc/initramfs-tools/update-initramfs.conf" ]; then
  sed -i 's/^update_initramfs=.*/update_initramfs=no/' "$rootfs/etc/initramfs-tools/update-initramfs.conf"
fi

# First-boot unit: per-machine identities for packages baked into the image.
mkdir -p "$rootfs/usr/local/lib/saas-vps-vm"
cat >"$rootfs/usr/local/lib/saas-vps-vm/firstboot" <<'EOF'
#!/bin/sh
# saas-vps VM image, first boot only: recreate what must be unique per machine and was removed
# from the shared image (see cli/vm/build-image.sh in the saas-vps repository).
set -eu
if [ -x /usr/sbin/make-ssl-cert ]; then
  echo "saas-vps-firstboot: generating the snakeoil TLS key pair"
  make-ssl-cert generate-default-snakeoil --force-overwrite
fi
if [ -x /usr/bin/pg_createcluster ]; then
  # Same rules as postgresql-common's create_main_cluster (maintscripts-functions), which the
  # package's postinst would have applied at install time: only if no cluster exists yet, for
  # the newest installed major, unless createcluster.conf says create_main_cluster = off.
  newest="$(ls -v /usr/lib/postgresql/*/bin/postgres 2>/dev/null | tail -n1)"
  if [ -n "$newest" ] && [ -z "$(ls /etc/postgresql/*/*/postgresql.conf 2>/dev/null)" ]; then
    ver="$(basename "$(dirname "$(dirname "$newest")")")"
    create="$(pg_conftool /etc/postgresql-common/createcluster.conf show -bs create_main_cluster 2>/dev/null || :)"
    if [ "$create" = "off" ]; then
      echo "saas-vps-firstboot: create_main_cluster is off; no PostgreSQL $ver cluster"
    else
      echo "saas-vps-firstboot: creating PostgreSQL $ver cluster main"
      pg_createcluster -u postgres "$ver" main --start
    fi
  fi
fi
mkdir -p /var/lib/saas-vps-vm
date -u +%FT%TZ >/var/lib/saas-vps-vm/firstboot.done
EOF
chmod 755 "$rootfs/usr/local/lib/saas-vps-vm/firstboot"
cat >"$rootfs/etc/systemd/system/saas-vps-firstboot.service" <<'EOF'
[Unit]
Description=saas-vps VM image: per-machine identities (PostgreSQL cluster, snakeoil key)
# after cloud-init has mounted volumes and written files, before cloud-final installs packages
After=local-fs.target cloud-config.service
Before=cloud-final.service
ConditionPathExists=!/var/lib/saas-vps-vm/firstboot.done

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/saas-vps-vm/firstboot

[Install]
WantedBy=multi-user.target
EOF
chroot "$rootfs" systemctl enable saas-vps-firstboot.service >/dev/null 2>&1

# Kernel and initrd for QEMU -kernel/-initrd (newest installed version).
kver="$(find "$rootfs/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -n1)"
if [ -z "$kver" ] || [ ! -f "$rootfs/boot/vmlinuz-$kver" ] || [ ! -f "$rootfs/boot/initrd.img-$kver" ]; then
  die "kernel/initrd not found in the image (modules: $(ls "$rootfs/lib/modules"))"
fi
cp "$rootfs/boot/vmlinuz-$kver" "$work/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$work/initrd.img"
# shellcheck disable=SC2016  # dpkg-query's own ${...} format
chroot "$rootfs" dpkg-query -W -f='${Package} ${Version}\n' >"$work/manifest.txt"
printf '%s\n' "$packages" >"$work/packages.txt"

log "mkfs.ext4 -d (root filesystem $ROOTFS_SIZE, used $(du -sh "$rootfs" | cut -f1))"
t1=$SECONDS
mkfs.ext4 -q -F -L saas-root -d "$rootfs" "$work/disk.raw" "$ROOTFS_SIZE" >&2
# compressed (zstd) qcow2: about half the size in the cache; overlays read it transparently
qemu-img convert -c -o compression_type=zstd -f raw -O qcow2 "$work/disk.raw" "$work/disk.qcow2"
rm -f "$work/disk.raw"
rm -rf "$rootfs"
log "disk image written in $((SECONDS - t1)) s"

rm -f "$customize"
size_bytes="$(stat -c %s "$work/disk.qcow2")"
cat >"$work/build.json" <<EOF
{"key": "$key", "suite": "$SUITE", "mirror": "$MIRROR", "kernel": "$kver",
 "builtAt": "$(date -u +%FT%TZ)", "buildSeconds": $SECONDS, "diskBytes": $size_bytes,
 "rootfsSize": "$ROOTFS_SIZE"}
EOF
rm -rf "$out"
mv "$work" "$out"
trap - EXIT
log "image $key ready in $SECONDS s: $out (disk.qcow2 $(du -h "$out/disk.qcow2" | cut -f1), kernel $kver)"
echo "IMAGE_DIR=$out"
