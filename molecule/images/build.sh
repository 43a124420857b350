#!/usr/bin/env bash
# Build the Molecule test bed from Debian packages (no registry needed):
#   - podman images localhost/oomguard-test:{bookworm,bullseye,trixie}
#     (systemd as PID 1, sshd, cron, python3) for the `default` scenario;
#   - a bootable bookworm disk image + kernel + initrd for the QEMU `vm`
#     scenario;
#   root in all of them logs in over SSH with a key generated here (kept in the
#   cache dir).
#
# Usage (as root):  molecule/images/build.sh [all|containers|vm|bookworm|bullseye|trixie]...
#
# Artifacts are named by a hash of this script and their package list: when the
# artifact with the current hash exists, the target is skipped. Targets build in
# parallel (they are network-bound). A release that cannot be debootstrapped is
# reported and skipped, except bookworm (container and VM), which is required.
#
# Environment:
#   OOMGUARD_CACHE          cache dir (default /var/cache/oomguard-testbed)
#   OOMGUARD_MIRROR         Debian mirror (default: the one apt is configured with;
#                           OOMGUARD_DEBIAN_MIRROR, its older name, is read too)
#   OOMGUARD_FORCE_REBUILD  1 to ignore the cache
set -euo pipefail

SCRIPT="$(readlink -f "${BASH_SOURCE[0]}")"
readonly SCRIPT
readonly CACHE="${OOMGUARD_CACHE:-/var/cache/oomguard-testbed}"
readonly IMAGE_REPO="localhost/oomguard-test"
readonly CONTAINER_RELEASES=(bookworm bullseye trixie)
readonly REQUIRED=(bookworm vm)
readonly VM_RELEASE="bookworm"
readonly VM_DISK_SIZE="2G"

# Package lists (part of the cache key). iproute2 and python3-apt serve
# Testinfra and Ansible's apt/package_facts modules without network access.
readonly BASE_PACKAGES="systemd,systemd-sysv,openssh-server,cron,python3,procps,dbus,iproute2,python3-apt"
# What a Debian server installed the usual way (every package of priority
# standard) has beyond that and what bears on memory, sessions and logging
# (molecule/README.md says why each):
#   libpam-systemd  logins become session scopes in user.slice/user-UID.slice, with a
#                   per-user manager (user@UID.service); without it they stay in ssh.service
#   libnss-systemd  name service for systemd's dynamic users
#   logrotate       rotates and compresses logs daily (priority important)
readonly STANDARD_PACKAGES="libpam-systemd,libnss-systemd,logrotate"
# Debian 12 (container and VM) is the standard server; Debian 11 and 13 stay
# minimal like cloud and container images, where sessions stay in ssh.service.
readonly STANDARD_RELEASES=(bookworm)
# linux-image-amd64 (not -cloud-amd64: the cloud kernel has no i6300esb driver);
# udev for predictable en* names and module autoloading.
readonly VM_PACKAGES="${BASE_PACKAGES},${STANDARD_PACKAGES},linux-image-amd64,udev,kmod,e2fsprogs"
# Packages oomguard's roles install on a target (the early killers), served to the
# targets by a local file repository in every image, since the targets reach no
# mirror: the roles install them as they would on a real host. A package a release
# does not have (systemd-oomd before Debian 12) is left out of that release's repo.
readonly LOCAL_REPO_PACKAGES=(earlyoom systemd-oomd)
readonly LOCAL_REPO_DIR="/var/local/oomguard-testbed-debs"

log() { printf '[build %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die() { log "ERROR: $*" >&2; exit 1; }

usage() {
    sed -n '2,21p' "${SCRIPT}" | sed 's/^# \{0,1\}//'
}

debian_mirror() {
    local given="${OOMGUARD_MIRROR:-${OOMGUARD_DEBIAN_MIRROR:-}}"
    if [[ -n "${given}" ]]; then
        echo "${given}"
        return
    fi
    local uri=""
    # deb822 sources first (Debian 12 default), then one-line sources.list.
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        uri="$(awk '/^URIs:/ {print $2}' /etc/apt/sources.list.d/*.sources \
            | grep -v -e security -e '^$' | head -n1 || true)"
    fi
    if [[ -z "${uri}" && -f /etc/apt/sources.list ]]; then
        uri="$(awk '$1 == "deb" && $0 !~ /security/ {for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp):/) {print $i; exit}}' \
            /etc/apt/sources.list || true)"
    fi
    [[ -n "${uri}" ]] || die "no Debian mirror in this machine's apt sources: set OOMGUARD_MIRROR to one (e.g. OOMGUARD_MIRROR=http://your-mirror/debian)"
    echo "${uri}"
}

# safe_rm DIR: remove a work dir, first unmounting whatever a failed
# debootstrap left mounted in it (proc, sys); never cross into a mount.
safe_rm() {
    local dir="$1" real m
    [[ -e "${dir}" ]] || return 0
    real="$(readlink -f "${dir}")"
    for m in $(awk -v d="${real}/" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "${m}" || true
    done
    rm -rf --one-file-system "${dir}"
}

# in_use DIR: does any process hold a file under DIR open (a QEMU on its disk)?
in_use() {
    find /proc/[0-9]*/fd -maxdepth 1 -lname "$1/*" -print -quit 2>/dev/null | grep -q .
}

# Cache key: this script, the release, the package list and the public key baked in.
cache_key() {
    { cat "${SCRIPT}"; printf '%s\n' "$@"; } | sha256sum | cut -c1-12
}

# run_debootstrap RELEASE DIR PACKAGES DEBS [SETUP_FN]: minbase rootfs, .debs
# cached per target. With SETUP_FN, packages are unpacked first (--foreign),
# SETUP_FN DIR runs, then they are configured (--second-stage): so package
# scripts (the kernel's initramfs hook) already see our configuration.
run_debootstrap() {
    local release="$1" dir="$2" packages="$3" debs="$4" setup_fn="${5:-}"
    mkdir -p "${debs}"
    if [[ -z "${setup_fn}" ]]; then
        debootstrap --variant=minbase --cache-dir="${debs}" --include="${packages}" \
            "${release}" "${dir}" "${MIRROR}"
        return
    fi
    debootstrap --foreign --variant=minbase --cache-dir="${debs}" --include="${packages}" \
        "${release}" "${dir}" "${MIRROR}"
    "${setup_fn}" "${dir}"
    chroot "${dir}" /debootstrap/debootstrap --second-stage
}

# local_repo_setup ROOT: download LOCAL_REPO_PACKAGES (and what they need that is
# not installed) with the rootfs's own apt from the build mirror, serve them from a
# file repository inside the rootfs, and make that the rootfs's only apt source:
# on the target, `apt-get install earlyoom` works without network, and nothing else
# can be installed by accident.
local_repo_setup() {
    local root="$1" pkg available=()
    # The build machine's resolver and snapshot leniency (a mirror serving an
    # archive snapshot has an expired Release date) for the rootfs's own apt.
    local -a apt_opts=(-o Acquire::Check-Valid-Until=false -o Acquire::Check-Date=false)
    cp --remove-destination /etc/resolv.conf "${root}/etc/resolv.conf"
    chroot "${root}" apt-get "${apt_opts[@]}" update -qq
    for pkg in "${LOCAL_REPO_PACKAGES[@]}"; do
        if chroot "${root}" apt-cache show "${pkg}" >/dev/null 2>&1; then
            available+=("${pkg}")
        fi
    done
    rm -f "${root}"/var/cache/apt/archives/*.deb
    if [[ ${#available[@]} -gt 0 ]]; then
        chroot "${root}" apt-get install -qq -y --download-only --no-install-recommends "${available[@]}"
    fi
    mkdir -p "${root}${LOCAL_REPO_DIR}"
    find "${root}/var/cache/apt/archives" -maxdepth 1 -name '*.deb' \
        -exec mv -t "${root}${LOCAL_REPO_DIR}" {} +
    (cd "${root}${LOCAL_REPO_DIR}" && apt-ftparchive packages . > Packages)
    printf '# oomguard test bed: no mirror is reachable from the targets.\n' \
        > "${root}/etc/apt/sources.list"
    rm -f "${root}"/etc/apt/sources.list.d/*
    printf 'deb [trusted=yes] file:%s ./\n' "${LOCAL_REPO_DIR}" \
        > "${root}/etc/apt/sources.list.d/oomguard-testbed.list"
    rm -rf "${root}"/var/lib/apt/lists/*
    chroot "${root}" apt-get "${apt_opts[@]}" update -qq
    rm -f "${root}/etc/resolv.conf"
    echo "local repo: ${available[*]:-none}"
}

# Settings common to container and VM rootfs.
common_rootfs_setup() {
    local root="$1"
    # Empty machine-id: systemd makes one at boot (the image stays generic).
    : > "${root}/etc/machine-id"
    rm -f "${root}/var/lib/dbus/machine-id"
    # No timers that would fire apt or fstrim in the middle of a test.
    local unit
    for unit in apt-daily.timer apt-daily-upgrade.timer fstrim.timer e2scrub_all.timer \
                e2scrub_reap.service man-db.timer; do
        ln -sf /dev/null "${root}/etc/systemd/system/${unit}"
    done
    # sshd: no reverse DNS (slow login without a resolver).
    mkdir -p "${root}/etc/ssh/sshd_config.d"
    printf 'UseDNS no\n' > "${root}/etc/ssh/sshd_config.d/10-oomguard-testbed.conf"
    # Root logs in by the test bed key only (no password): Ansible reaches VMs and
    # containers alike over SSH with pipelining (the podman connection cannot pipeline).
    install -d -m 700 "${root}/root/.ssh"
    install -m 600 "${CACHE}/ssh/id_ed25519.pub" "${root}/root/.ssh/authorized_keys"
    chroot "${root}" apt-get clean
}

# container_packages RELEASE: the package list of that release's container image.
container_packages() {
    if printf '%s\n' "${STANDARD_RELEASES[@]}" | grep -qx "$1"; then
        echo "${BASE_PACKAGES},${STANDARD_PACKAGES}"
    else
        echo "${BASE_PACKAGES}"
    fi
}

build_container() {
    local release="$1"
    local key tag_hash work packages
    packages="$(container_packages "${release}")"
    key="$(cache_key container "${release}" "${packages}" "${LOCAL_REPO_PACKAGES[*]}" \
        "$(cat "${CACHE}/ssh/id_ed25519.pub")")"
    tag_hash="${IMAGE_REPO}:${release}-${key}"
    if [[ "${OOMGUARD_FORCE_REBUILD:-0}" != 1 ]] && podman image exists "${tag_hash}"; then
        podman tag "${tag_hash}" "${IMAGE_REPO}:${release}"
        echo cached
        return 0
    fi
    work="${CACHE}/work/container-${release}"
    safe_rm "${work}"
    mkdir -p "${work}"
    run_debootstrap "${release}" "${work}/root" "${packages}" \
        "${CACHE}/debs/container-${release}" >&2
    local_repo_setup "${work}/root" >&2
    common_rootfs_setup "${work}/root"
    # Only systemd's own getty would try a console that does not exist.
    ln -sf /dev/null "${work}/root/etc/systemd/system/getty@tty1.service"
    echo "oomguard-${release}" > "${work}/root/etc/hostname"
    tar -C "${work}/root" --numeric-owner -c . \
        | podman import --change 'CMD ["/sbin/init"]' \
            --message "oomguard test bed ${release} (${key})" - "${tag_hash}" >&2
    podman tag "${tag_hash}" "${IMAGE_REPO}:${release}"
    # Drop this release's images of older hashes.
    local old
    for old in $(podman images --format '{{.Repository}}:{{.Tag}}' "${IMAGE_REPO}" \
                 | grep -E ":${release}-[0-9a-f]{12}$" | grep -v -F "${tag_hash}" || true); do
        podman rmi "${old}" >/dev/null 2>&1 || true
    done
    safe_rm "${work}"
    echo built
}

ensure_ssh_key() {
    local keydir="${CACHE}/ssh"
    mkdir -p "${keydir}"
    chmod 700 "${keydir}"
    if [[ ! -f "${keydir}/id_ed25519" ]]; then
        ssh-keygen -q -t ed25519 -N '' -C "oomguard-testbed" -f "${keydir}/id_ed25519"
    fi
}

# A small initrd (only what a QEMU virtio guest needs to mount /) instead of
# MODULES=most: under TCG every MiB to unpack costs boot time. Set up before
# the kernel package is configured, so its initrd is built once.
vm_small_initrd() {
    local root="$1"
    mkdir -p "${root}/etc/initramfs-tools/conf.d" "${root}/etc/initramfs-tools/hooks"
    printf 'MODULES=list\n' > "${root}/etc/initramfs-tools/conf.d/oomguard-testbed.conf"
    cat > "${root}/etc/initramfs-tools/hooks/oomguard-testbed" <<'HOOK'
#!/bin/sh
# oomguard test bed: load the QEMU virtio disk/net drivers and ext4 at boot.
case "$1" in prereqs) exit 0 ;; esac
. /usr/share/initramfs-tools/hook-functions
for module in virtio_pci virtio_blk virtio_net ext4; do
    force_load "${module}"
done
HOOK
    chmod 755 "${root}/etc/initramfs-tools/hooks/oomguard-testbed"
}

build_vm() {
    local pubkey key out work root kver
    pubkey="$(cat "${CACHE}/ssh/id_ed25519.pub")"
    key="$(cache_key vm "${VM_RELEASE}" "${VM_PACKAGES}" "${LOCAL_REPO_PACKAGES[*]}" \
        "${VM_DISK_SIZE}" "${pubkey}")"
    out="${CACHE}/vm/${key}"
    if [[ "${OOMGUARD_FORCE_REBUILD:-0}" != 1 && -f "${out}/disk.img" ]]; then
        ln -sfn "${key}" "${CACHE}/vm/current"
        echo cached
        return 0
    fi
    work="${CACHE}/work/vm"
    root="${work}/root"
    safe_rm "${work}"
    mkdir -p "${work}"
    run_debootstrap "${VM_RELEASE}" "${root}" "${VM_PACKAGES}" "${CACHE}/debs/vm-${VM_RELEASE}" \
        vm_small_initrd >&2
    local_repo_setup "${root}" >&2
    common_rootfs_setup "${root}"
    # A machine-id in the image: the VM's first boot must not differ from the
    # others (systemd applies presets on a first boot). Each run uses an overlay.
    chroot "${root}" systemd-machine-id-setup >&2
    echo "oomguard-vm" > "${root}/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 oomguard-vm\n' > "${root}/etc/hosts"
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' > "${root}/etc/fstab"
    # Network: DHCP on every en* interface (QEMU user networking), its DNS.
    mkdir -p "${root}/etc/systemd/network"
    printf '[Match]\nName=en*\n\n[Network]\nDHCP=ipv4\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n' \
        > "${root}/etc/systemd/network/20-en.network"
    printf 'nameserver 10.0.2.3\n' > "${root}/etc/resolv.conf"
    chroot "${root}" systemctl enable systemd-networkd.service >&2
    ln -sf /dev/null "${root}/etc/systemd/system/systemd-networkd-wait-online.service"
    kver="$(basename "$(ls -d "${root}"/lib/modules/*)")"
    mkdir -p "${work}/out"
    cp "${root}/boot/vmlinuz-${kver}" "${work}/out/vmlinuz"
    cp "${root}/boot/initrd.img-${kver}" "${work}/out/initrd.img"
    echo "${kver}" > "${work}/out/kernel-version"
    truncate -s "${VM_DISK_SIZE}" "${work}/out/disk.img"
    mkfs.ext4 -q -F -L oomguard-root -d "${root}" "${work}/out/disk.img" >&2
    mkdir -p "${CACHE}/vm"
    rm -rf "${out}"
    mv "${work}/out" "${out}"
    ln -sfn "${key}" "${CACHE}/vm/current"
    # Drop disks of older hashes, unless a running VM still uses one.
    local old
    for old in "${CACHE}"/vm/*/; do
        old="$(basename "${old}")"
        [[ "${old}" == "${key}" || "${old}" == current ]] && continue
        if in_use "${CACHE}/vm/${old}"; then
            log "keeping ${CACHE}/vm/${old}: a running VM uses it" >&2
        else
            rm -rf "${CACHE:?}/vm/${old}"
        fi
    done
    safe_rm "${work}"
    echo built
}

# run_target NAME: build one target, record "NAME SECONDS STATUS".
# The build runs in its own subshell with errexit on (a `||` after it would
# silently disable errexit inside it).
run_target() {
    local target="$1" start status rc
    start="$(date +%s)"
    set +e
    if [[ "${target}" == vm ]]; then
        (set -e; build_vm) >"${CACHE}/work/status-${target}" 2>"${CACHE}/logs/${target}.log"
    else
        (set -e; build_container "${target}") >"${CACHE}/work/status-${target}" \
            2>"${CACHE}/logs/${target}.log"
    fi
    rc=$?
    set -e
    status="$(tail -n1 "${CACHE}/work/status-${target}")"
    rm -f "${CACHE}/work/status-${target}"
    [[ ${rc} -eq 0 && -n "${status}" ]] || status=failed
    printf '%s\t%s\t%s\n' "${target}" "$(($(date +%s) - start))" "${status}" \
        > "${CACHE}/timings/build-${target}.tsv"
    # The cost of the last real build, which a cached run does not show.
    if [[ "${status}" == built ]]; then
        printf '%s\t%s\t%s\n' "${target}" "$(($(date +%s) - start))" "$(date -u +%FT%TZ)" \
            > "${CACHE}/timings/built-${target}.tsv"
    fi
    [[ "${status}" != failed ]]
}

pids=()
on_signal() {
    trap - INT TERM
    local p
    for p in "${pids[@]}"; do
        kill -TERM -- "-${p}" 2>/dev/null || true
    done
    wait || true
    die "interrupted: partial work is left in ${CACHE}/work (removed by the next run)"
}

main() {
    [[ ${EUID} -eq 0 ]] || die "run as root (debootstrap, chroot and mkfs need it)"
    local targets=() arg
    [[ $# -gt 0 ]] || set -- all
    for arg in "$@"; do
        case "${arg}" in
            all) targets+=("${CONTAINER_RELEASES[@]}" vm) ;;
            containers) targets+=("${CONTAINER_RELEASES[@]}") ;;
            vm | bookworm | bullseye | trixie) targets+=("${arg}") ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown target: ${arg}" ;;
        esac
    done
    # Unique targets, order kept.
    mapfile -t targets < <(printf '%s\n' "${targets[@]}" | awk '!seen[$0]++')

    local tool
    for tool in debootstrap podman mkfs.ext4 ssh-keygen flock sha256sum apt-ftparchive; do
        command -v "${tool}" >/dev/null || die "${tool} not found (run make setup)"
    done

    mkdir -p "${CACHE}"/{logs,timings,work,debs,vm}
    # One build at a time on this machine.
    exec 9>"${CACHE}/.build.lock"
    flock 9

    MIRROR="$(debian_mirror)"
    readonly MIRROR
    log "mirror ${MIRROR}, cache ${CACHE}, targets: ${targets[*]}"
    ensure_ssh_key

    local start t
    start="$(date +%s)"
    # Each target in its own process group (job control), so that an interrupt
    # stops its whole tree (debootstrap, dpkg), not just our subshell.
    set -m
    trap on_signal INT TERM
    for t in "${targets[@]}"; do
        rm -f "${CACHE}/timings/build-${t}.tsv"
        run_target "${t}" &
        pids+=("$!")
    done
    local i failed_required=0
    for i in "${!targets[@]}"; do
        wait "${pids[$i]}" || true
    done
    local total=$(($(date +%s) - start))

    printf '\n%-10s %8s  %s\n' TARGET SECONDS STATUS
    local line name secs status any_built=0
    for t in "${targets[@]}"; do
        line="$(cat "${CACHE}/timings/build-${t}.tsv" 2>/dev/null || printf '%s\t?\tfailed' "${t}")"
        IFS=$'\t' read -r name secs status <<<"${line}"
        printf '%-10s %8s  %s\n' "${name}" "${secs}" "${status}"
        [[ "${status}" != built ]] || any_built=1
        if [[ "${status}" == failed ]]; then
            log "${t} could not be built; last lines of ${CACHE}/logs/${t}.log:"
            tail -n 15 "${CACHE}/logs/${t}.log" | sed 's/^/    /'
            if printf '%s\n' "${REQUIRED[@]}" | grep -qx "${t}"; then
                failed_required=1
            else
                log "${t} is optional: continuing without it"
            fi
        fi
    done
    printf '%-10s %8s\n' total "${total}"
    printf 'total\t%s\t%s\n' "${total}" "$(date -u +%FT%TZ)" > "${CACHE}/timings/build-total.tsv"
    if [[ ${any_built} -eq 1 ]]; then
        cp "${CACHE}/timings/build-total.tsv" "${CACHE}/timings/built-total.tsv"
    fi
    if [[ -L "${CACHE}/vm/current" ]]; then
        log "VM image: ${CACHE}/vm/current/ (disk.img, vmlinuz, initrd.img); key: ${CACHE}/ssh/id_ed25519"
    fi
    [[ ${failed_required} -eq 0 ]] || die "a required target failed (bookworm container or VM)"
}

main "$@"
