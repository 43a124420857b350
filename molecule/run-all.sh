#!/usr/bin/env bash
# Run `molecule test` for each scenario given (default: default fleet vm), then
# print a timing table: image build (from molecule/images/build.sh), VM
# boot-to-SSH, each scenario.
#
# Scenarios run in two lanes side by side: the podman scenarios (default, fleet)
# one after another in one lane, the QEMU scenario (vm: kernel checks and the drill) in the other.
# A TCG VM keeps about one core busy and the container runs mostly wait on
# process start-up, so on two cores the lanes overlap well; two VMs at once do
# not (the guests stall for tens of seconds, soft lockups), hence one VM lane.
# Each lane holds its machine-wide lock (/tmp/oomguard-molecule-<lane>.lock)
# and, per run, the scenario's lock (/tmp/oomguard-molecule-<scenario>.lock,
# the one developers take by hand). Output lines carry the lane's name.
# Every scenario runs even if an earlier one failed; the exit code is non-zero
# if any failed. Run from anywhere, as root, after `make setup` and
# molecule/images/build.sh.
#
# Environment:
#   OOMGUARD_CACHE           test bed cache (default /var/cache/oomguard-testbed)
#   OOMGUARD_MOLECULE_LOCKS  directory of the lane locks (default /tmp)
#   OOMGUARD_MOLECULE_LANES  parallel (default) or serial: one scenario at a time
#   OOMGUARD_MOLECULE_ARGS   extra arguments for `molecule test` (e.g. --destroy=never)
set -euo pipefail

REPO="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." && pwd)"
CACHE="${OOMGUARD_CACHE:-/var/cache/oomguard-testbed}"
LOCKS="${OOMGUARD_MOLECULE_LOCKS:-/tmp}"
LANES="${OOMGUARD_MOLECULE_LANES:-parallel}"
BASE_CONFIG="molecule/shared/base.yml"
CONTAINER_RELEASES=(bookworm bullseye trixie)

export OOMGUARD_CACHE="${CACHE}"
export ANSIBLE_CONFIG="${REPO}/ansible.cfg"
[[ -d "${REPO}/.venv/bin" ]] && export PATH="${REPO}/.venv/bin:${PATH}"
# No terminal in CI: keep Molecule's boxes readable in logs.
export COLUMNS="${COLUMNS:-160}"

cd "${REPO}"
command -v molecule >/dev/null || { echo "run-all: molecule not found (run make setup)" >&2; exit 1; }
mkdir -p "${CACHE}/logs" "${CACHE}/timings" "${CACHE}/runs"

[[ $# -gt 0 ]] || set -- default fleet vm
[[ "${LANES}" == parallel || "${LANES}" == serial ]] ||
    { echo "run-all: OOMGUARD_MOLECULE_LANES=${LANES}; allowed: parallel, serial" >&2; exit 2; }
read -r -a extra_args <<<"${OOMGUARD_MOLECULE_ARGS:-}"

# lane_of SCENARIO: containers (podman driver) or vms (QEMU, delegated driver).
lane_of() {
    if grep -q '^  name: podman' "molecule/$1/molecule.yml"; then echo containers; else echo vms; fi
}

# locked SCENARIO CMD...: run CMD holding the scenario's lane lock
# (docs/DEVELOPING.md), then the scenario's own lock (the one developers take
# by hand).
locked() {
    local scenario="$1"
    shift
    flock "${LOCKS}/oomguard-molecule-$(lane_of "${scenario}").lock" \
        flock "/tmp/oomguard-molecule-${scenario}.lock" "$@"
}

# destroy_instances SCENARIO EPHEMERAL: make sure nothing of a run is left
# (after a failure or an interrupt Molecule may not have destroyed it). Only
# for a run that got its locks: the instances' names are the same for everyone.
destroy_instances() {
    [[ -f "$2.start" ]] || { rm -rf --one-file-system "$2"; return 0; }
    timeout 600 flock "${LOCKS}/oomguard-molecule-$(lane_of "$1").lock" \
        flock "/tmp/oomguard-molecule-$1.lock" env MOLECULE_EPHEMERAL_DIRECTORY="$2" \
        molecule -c "${BASE_CONFIG}" destroy -s "$1" >/dev/null 2>&1 || true
    rm -rf --one-file-system "$2" "$2.start"
}

# An interrupt (CI timeout, ^C) stops the running Molecule and destroys its
# instances, so no container or VM outlives us.
current_pid="" current_scenario="" current_ephemeral=""
on_signal() {
    trap - INT TERM
    if [[ -n "${current_pid}" ]]; then
        kill -TERM -- "-${current_pid}" 2>/dev/null || true
        wait "${current_pid}" 2>/dev/null || true
        echo "run-all: interrupted: destroying the ${current_scenario} instances" >&2
        destroy_instances "${current_scenario}" "${current_ephemeral}"
    fi
    exit 130
}
set -m  # each Molecule run in its own process group (see on_signal)

# run_molecule LABEL SCENARIO ARGS...: one `molecule test` under the locks;
# records "LABEL WAIT SECONDS RESULT" in rows[].
rows=()
failed=0
run_molecule() {
    local label="$1" scenario="$2"
    shift 2
    local t0 started end rc=0 result slug="${label//\//-}"
    t0="$(date +%s)"
    echo "run-all: ${label}: waiting for the $(lane_of "${scenario}") lane and /tmp/oomguard-molecule-${scenario}.lock"
    # Molecule keeps a scenario's state (inventory, instance config, the VM's
    # overlay and pidfile) in one directory per checkout and scenario: a run of
    # our own there cannot be disturbed by a concurrent run that took no lock.
    current_ephemeral="$(mktemp -d "${CACHE}/runs/${slug}.XXXXXX")"
    current_scenario="${scenario}"
    locked "${scenario}" \
        bash -c 'date +%s > "$1"; shift; exec "$@"' _ "${current_ephemeral}.start" \
        env MOLECULE_EPHEMERAL_DIRECTORY="${current_ephemeral}" \
        molecule -c "${BASE_CONFIG}" test -s "${scenario}" "$@" "${extra_args[@]}" &
    current_pid=$!
    wait "${current_pid}" || rc=$?
    current_pid=""
    end="$(date +%s)"
    started="$(cat "${current_ephemeral}.start" 2>/dev/null || echo "${t0}")"
    if [[ ${rc} -ne 0 ]]; then
        destroy_instances "${scenario}" "${current_ephemeral}"
    fi
    rm -rf --one-file-system "${current_ephemeral}" "${current_ephemeral}.start"
    if [[ ${rc} -eq 0 ]]; then result=passed; else result="FAILED (rc ${rc})"; failed=1; fi
    echo "run-all: ${label}: ${result} in $((end - started)) s"
    rows+=("$(printf '%s\t%s\t%s\t%s' "${label}" "$((started - t0))" "$((end - started))" "${result}")")
}

# The default scenario: if build.sh could not make a release's image (recorded
# as failed), test the other releases one platform at a time and say so;
# an image that is just missing (build.sh not run) is an error.
run_default() {
    local missing=() available=() r status
    for r in "${CONTAINER_RELEASES[@]}"; do
        if podman image exists "localhost/oomguard-test:${r}"; then
            available+=("${r}")
        else
            missing+=("${r}")
        fi
    done
    if [[ ${#missing[@]} -eq 0 ]]; then
        run_molecule default default
        return
    fi
    for r in "${missing[@]}"; do
        status="$(cut -f3 "${CACHE}/timings/build-${r}.tsv" 2>/dev/null || true)"
        if [[ "${r}" == bookworm || "${status}" != failed ]]; then
            echo "run-all: image localhost/oomguard-test:${r} is missing: run molecule/images/build.sh" >&2
            rows+=("$(printf 'default\t-\t-\tFAILED (no %s image)' "${r}")")
            failed=1
            return
        fi
        echo "run-all: SKIPPING platform oomguard-${r}: build.sh could not debootstrap ${r}"
        rows+=("$(printf 'default/%s\t-\t-\tskipped (image could not be built)' "${r}")")
    done
    for r in "${available[@]}"; do
        run_molecule "default/${r}" default -p "oomguard-${r}"
    done
}

# run_lane SCENARIO...: the scenarios one after another; rows and result to
# ${rows_dir}/<first scenario> for the table.
run_lane() {
    trap on_signal INT TERM
    rows=() failed=0
    local scenario
    # Boot times in the table are this run's (create.yml writes one per VM).
    [[ " ${vm_scenarios[*]} " != *" ${!#} "* ]] || rm -f "${CACHE}"/timings/vm-boot-*.tsv
    for scenario in "$@"; do
        if [[ "${scenario}" == default ]]; then
            run_default
        else
            run_molecule "${scenario}" "${scenario}"
        fi
    done
    printf '%s\n' "${rows[@]}" >"${rows_dir}/$1"
    return "${failed}"
}

rows_dir="$(mktemp -d)"
container_scenarios=() vm_scenarios=() lanes=()
for scenario in "$@"; do
    if [[ ! -f "molecule/${scenario}/molecule.yml" ]]; then
        echo "run-all: no scenario molecule/${scenario}" >&2
        rows+=("$(printf '%s\t-\t-\tFAILED (no such scenario)' "${scenario}")")
        failed=1
    elif [[ "$(lane_of "${scenario}")" == containers ]]; then
        container_scenarios+=("${scenario}")
    else
        vm_scenarios+=("${scenario}")
    fi
done
[[ ${#container_scenarios[@]} -eq 0 ]] || lanes+=("containers")
[[ ${#vm_scenarios[@]} -eq 0 ]] || lanes+=("vms")

total_start="$(date +%s)"
if [[ ${#lanes[@]} -eq 0 ]]; then
    :
elif [[ "${LANES}" == serial || ${#lanes[@]} -lt 2 ]]; then
    ( run_lane "${container_scenarios[@]}" "${vm_scenarios[@]}" ) || failed=1
else
    # Each lane in the background, its lines prefixed with its name; an interrupt
    # reaches each lane, which stops and destroys its own run (on_signal).
    lane_pids=()
    ( run_lane "${container_scenarios[@]}" ) > >(sed -u 's/^/[containers] /') 2>&1 &
    lane_pids+=($!)
    ( run_lane "${vm_scenarios[@]}" ) > >(sed -u 's/^/[vms] /') 2>&1 &
    lane_pids+=($!)
    trap 'kill -TERM "${lane_pids[@]}" 2>/dev/null || true; wait; exit 130' INT TERM
    for pid in "${lane_pids[@]}"; do
        wait "${pid}" || failed=1
    done
    trap - INT TERM
fi
for f in "${rows_dir}"/*; do
    [[ -f "${f}" ]] && mapfile -t -O "${#rows[@]}" rows <"${f}"
done
rm -rf "${rows_dir}"
total=$(($(date +%s) - total_start))

echo
echo "== oomguard test bed timings (seconds) =="
echo "image build (molecule/images/build.sh; last run, and last real build):"
for t in "${CONTAINER_RELEASES[@]}" vm total; do
    last="-" built="-"
    if [[ -f "${CACHE}/timings/build-${t}.tsv" ]]; then
        IFS=$'\t' read -r _ secs status <"${CACHE}/timings/build-${t}.tsv"
        last="${secs} ${status}"
    fi
    if [[ -f "${CACHE}/timings/built-${t}.tsv" ]]; then
        IFS=$'\t' read -r _ secs when <"${CACHE}/timings/built-${t}.tsv"
        built="${secs} (${when})"
    fi
    [[ "${t}" == total && "${last}" != - ]] && last="${last%% *}"
    printf '  %-22s %-16s %s\n' "${t}" "${last}" "${built}"
done
if compgen -G "${CACHE}/timings/vm-boot-*.tsv" >/dev/null; then
    echo "VM boot to SSH (create.yml, QEMU TCG):"
    cat "${CACHE}"/timings/vm-boot-*.tsv | while IFS=$'\t' read -r name secs; do
        printf '  %-22s %6s\n' "${name}" "${secs}"
    done
fi
echo "molecule test (lock wait / run):"
for row in "${rows[@]}"; do
    IFS=$'\t' read -r name wait secs result <<<"${row}"
    printf '  %-22s %6s %6s  %s\n' "${name}" "${wait}" "${secs}" "${result}"
done
printf '  %-22s %13s\n' "total" "${total}"
# The drill's summary (vm scenario): what an operator saw during each storm, both VMs.
if [[ " ${vm_scenarios[*]} " == *" vm "* && -f molecule/vm/output/summary.txt ]]; then
    echo
    echo "== memory-exhaustion drill (molecule/vm/output/summary.txt) =="
    cat molecule/vm/output/summary.txt
fi
exit "${failed}"
