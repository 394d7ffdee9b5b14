#!/usr/bin/env bash
# make slurm-test: a single-node SLURM cluster (munged, slurmctld, slurmd) on this machine, from a
# config in a temporary folder, for the checks in tests/slurm/test_slurm.py; stopped by pid on exit.
#   tests/slurm/cluster.sh [PYTHON [PYTEST ARGS...]]   (PYTHON: the harness's, default python3)
# Installs Debian's slurmctld/slurmd/slurm-client/munge when missing (needs root and apt-get;
# otherwise it says why and exits 0 without testing). Never changes a system SLURM config, and
# refuses to run where one points at another controller.
set -euo pipefail
PY=${1:-python3}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HOST=$(hostname -s)

skip() { echo "slurm-test: SKIPPED: $*"; exit 0; }
die() { echo "slurm-test: error: $*" >&2; exit 1; }

# A system config that names another controller means this machine belongs to a real cluster.
for conf in ${SLURM_CONF:-} /etc/slurm/slurm.conf /etc/slurm-llnl/slurm.conf; do
    [ -f "$conf" ] || continue
    ctl=$(sed -n -E 's/^[[:space:]]*(SlurmctldHost|ControlMachine)[[:space:]]*=[[:space:]]*([^([:space:]]+).*/\2/Ip' "$conf" | head -1)
    if [ -n "$ctl" ] && [ "$ctl" != "$HOST" ] && [ "$ctl" != localhost ]; then
        die "$conf points at controller '$ctl': this machine is part of a real cluster; not starting a test cluster here"
    fi
done
[ -z "${SLURM_JOB_ID:-}" ] || die "running inside SLURM job $SLURM_JOB_ID; run make slurm-test outside a cluster"

PATH=$PATH:/usr/sbin:/sbin   # the daemons live in sbin
daemons=(munged slurmctld slurmd sbatch srun sinfo squeue)
missing=0; for d in "${daemons[@]}"; do command -v "$d" >/dev/null || missing=1; done
if [ "$missing" = 1 ]; then
    [ "$(id -u)" = 0 ] || skip "SLURM is not installed and this is not root (apt-get install slurmctld slurmd slurm-client munge)"
    command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get"
    echo "slurm-test: installing slurmctld slurmd slurm-client munge (apt-get)"
    # The packages' services must not start: a policy-rc.d forbids it while they install
    # (only if there is none already, and removed after).
    policy=/usr/sbin/policy-rc.d; made_policy=0
    if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod 755 "$policy"; made_policy=1; fi
    export DEBIAN_FRONTEND=noninteractive
    pkgs=(slurmctld slurmd slurm-client munge)
    ok=1
    apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${pkgs[@]}" >/dev/null; } \
        || ok=0
    [ "$made_policy" = 0 ] || rm -f "$policy"
    [ "$ok" = 1 ] || die "apt-get could not install ${pkgs[*]}"
fi
TMP=$(mktemp -d "${TMPDIR:-/tmp}/slurm-test.XXXXXX")
pids=()
checks=""
# slurmd's step daemons detach from it; ours are those with a file open in this cluster's folder.
our_steps() {
    local proc
    for proc in /proc/[0-9]*; do
        [ "$(cat "$proc/comm" 2>/dev/null)" = slurmstepd ] || continue
        ls -l "$proc/cwd" "$proc/fd/" 2>/dev/null | grep -qF "$TMP/" && echo "${proc#/proc/}"
    done
    return 0
}
cleanup() {
    local rc=$?
    if [ -n "$checks" ] && kill -0 "$checks" 2>/dev/null; then
        kill -TERM -- "-$checks" 2>/dev/null || true
        sleep 1; kill -KILL -- "-$checks" 2>/dev/null || true
    fi
    # Jobs first (their steps run under slurmstepd, which slurmd started), then the daemons.
    if [ "${#pids[@]}" -ge 2 ]; then
        scancel -p slurmtest >/dev/null 2>&1 || true
        for _ in $(seq 30); do [ -z "$(squeue -h -p slurmtest 2>/dev/null)" ] && break; sleep 0.5; done
        for _ in $(seq 30); do [ -z "$(our_steps)" ] && break; sleep 0.5; done
    fi
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    for pid in $(our_steps); do kill -9 "$pid" 2>/dev/null || true; done
    if [ "$rc" != 0 ]; then
        for log in "$TMP"/*.log "$TMP"/*.out; do [ -f "$log" ] && { echo "--- $log"; tail -20 "$log"; }; done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CPUS=$(nproc)
MEM=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 / 2 ))
mkdir -p "$TMP/munge" "$TMP/key" "$TMP/state" "$TMP/spool"
chmod 755 "$TMP" "$TMP/munge"   # munged wants its socket's folders open to all ...
chmod 700 "$TMP/key"            # ... and its key closed to all but itself
head -c 1024 /dev/urandom > "$TMP/key/munge.key"
chmod 400 "$TMP/key/munge.key"
: > "$TMP/plugstack.conf"
cat > "$TMP/slurm.conf" <<CONF
ClusterName=slurmtest
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$TMP/munge/munge.socket
StateSaveLocation=$TMP/state
SlurmdSpoolDir=$TMP/spool
SlurmctldPidFile=$TMP/slurmctld.pid
SlurmdPidFile=$TMP/slurmd.pid
SlurmctldLogFile=$TMP/slurmctld.log
SlurmdLogFile=$TMP/slurmd.log
PlugStackConfig=$TMP/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=slurmtest Nodes=$HOST Default=YES MaxTime=30 State=UP
CONF
export SLURM_CONF=$TMP/slurm.conf

munged -F -f --socket="$TMP/munge/munge.socket" --key-file="$TMP/key/munge.key" \
    --pid-file="$TMP/key/munged.pid" --log-file="$TMP/munged.log" \
    --seed-file="$TMP/key/munged.seed" >"$TMP/munged.out" 2>&1 &
pids+=($!)
for _ in $(seq 50); do [ -S "$TMP/munge/munge.socket" ] && break; sleep 0.1; done
[ -S "$TMP/munge/munge.socket" ] || die "munged did not start"
slurmctld -D -i -f "$SLURM_CONF" >"$TMP/slurmctld.out" 2>&1 &
pids+=($!)
slurmd -D -f "$SLURM_CONF" -N "$HOST" >"$TMP/slurmd.out" 2>&1 &
pids+=($!)

state=""
for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || die "node $HOST not idle after 60 s (state: '${state:-no answer}')"
echo "slurm-test: cluster up: $(sinfo -h -o '%P %D nodes %c cpus %t')"

# The checks run in a session of their own, so that a signal here ends them with all their
# children (the sweeps' submitters) before the cluster goes; the jobs see this python and the
# repository's code (submitit runs sys.executable in the submitter's folder).
cd "$REPO"
SLURM_TEST_PARTITION=slurmtest PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" \
    setsid "$PY" -m pytest -q -p no:cacheprovider tests/slurm "${@:2}" &
checks=$!
wait "$checks"
