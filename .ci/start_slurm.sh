#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian/Ubuntu, run as root), so the workflow
# test can push the demo cohort through sbatch for real. Idempotent: if `sinfo` already answers,
# it only makes sure the node is up.
#
# Installs slurm-wlm + munge with apt-get, writes /etc/slurm/slurm.conf for this host
# (select/cons_tres, accounting off, MinJobAge=3600 so finished jobs stay visible to squeue),
# and starts munged, slurmctld and slurmd directly (no systemd needed).
# Logs: /var/log/slurm/slurmctld.log and slurmd.log.
set -euo pipefail

if [ "$(id -u)" != 0 ]; then
    echo "start_slurm.sh: must run as root (it installs packages and starts daemons)" >&2
    exit 1
fi

if command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -h >/dev/null 2>&1; then
    scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
    echo "start_slurm.sh: cluster already running"; sinfo
    exit 0
fi

if ! command -v slurmctld >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

HOST="$(hostname -s)"
CPUS="$(nproc)"
# Leave a little memory to the OS; SLURM refuses jobs that ask for more than RealMemory.
MEM_MB="$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)"

# munge: a key, then the daemon as the munge user.
install -d -o munge -g munge -m 0700 /etc/munge /var/log/munge /var/lib/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
fi

install -d -m 0755 /etc/slurm /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/slurm
cat > /etc/slurm/slurm.conf <<EOF
# One-node cluster for pmlseg CI (written by .ci/start_slurm.sh)
ClusterName=pmlseg-ci
SlurmctldHost=${HOST}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=/run/slurm/slurmctld.pid
SlurmdPidFile=/run/slurm/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge=3600
InactiveLimit=0
KillWait=30
Waittime=0
NodeName=${HOST} CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=debug Nodes=${HOST} Default=YES MaxTime=INFINITE State=UP
EOF
# cgroup.conf is read by slurmd even with proctrack/linuxproc on some builds; keep it harmless.
cat > /etc/slurm/cgroup.conf <<EOF
CgroupPlugin=autodetect
IgnoreSystemd=yes
EOF

pgrep -x slurmctld >/dev/null 2>&1 || slurmctld
pgrep -x slurmd >/dev/null 2>&1 || slurmd

for _ in $(seq 1 30); do
    if sinfo -h -o '%T' 2>/dev/null | grep -q -E '^(idle|mixed|allocated)'; then
        echo "start_slurm.sh: one-node cluster up on ${HOST} (${CPUS} CPUs, ${MEM_MB} MB)"
        sinfo
        exit 0
    fi
    sleep 1
done
echo "start_slurm.sh: SLURM did not come up; see /var/log/slurm/slurmctld.log and slurmd.log" >&2
sinfo >&2 || true
tail -20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
