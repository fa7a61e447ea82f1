#!/usr/bin/env bash
# Start a throwaway single-node SLURM cluster on localhost, for tests/test_slurm.py.
#
#   bash .ci/slurm/start_local_slurm.sh
#   bash .ci/slurm/stop_local_slurm.sh       # stops exactly the daemons this script started
#
# Debian/Ubuntu, run as root, no systemd needed. Unattended and idempotent: a second call
# while the cluster is up reuses it; a half-started or stale one is stopped and restarted.
# System-wide it installs the Debian packages (slurmctld slurmd slurm-client munge: slurm-wlm
# without its recommends), writes /etc/slurm/slurm.conf (marked as ours; a slurm.conf that is
# not ours is never touched: SKIP) and, if the host name does not resolve, adds one
# /etc/hosts line. State, spool, logs and the list of started PIDs live in $GMSOP_SLURM_DIR.
# (A private SLURM_CONF does not work: the plugin's in-job `srun` drops SLURM_* variables.)
#
# No accounting database (slurmdbd): sacct does not work, so run Snakemake's SLURM executor
# with `--slurm-status-command squeue` (MinJobAge=600 keeps finished jobs visible to squeue).
#
# Exit status: 0 cluster up; 77 SKIP (cannot be done on this machine: not Linux, not root,
# no apt-get, packages not installable, a SLURM this script did not set up: its slurm.conf or
# its ports), with a line "SKIP: <reason>" on stdout and in $GMSOP_SLURM_DIR/skip_reason;
# anything else: a real failure (daemon logs printed). Wrap it in `timeout -k` in CI.
#
# Environment: GMSOP_SLURM_DIR (default /tmp/gmsop-slurm), GMSOP_SLURM_PARTITION (debug),
# GMSOP_SLURMCTLD_PORT (6817), GMSOP_SLURMD_PORT (6818).
set -euo pipefail

DIR="${GMSOP_SLURM_DIR:-/tmp/gmsop-slurm}"
PARTITION="${GMSOP_SLURM_PARTITION:-debug}"
CTLD_PORT="${GMSOP_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${GMSOP_SLURMD_PORT:-6818}"
HERE="$(cd "$(dirname "$0")" && pwd)"
CONF=/etc/slurm/slurm.conf
MARKER="# Written by gmsop .ci/slurm/start_local_slurm.sh"
PIDS="$DIR/pids"          # "<name> <pid>" per daemon this script started
export DEBIAN_FRONTEND=noninteractive
T0=$(date +%s.%N)

elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
log() { echo "[start_local_slurm $(elapsed)s] $*"; }
skip() {
  { mkdir -p "$DIR" && echo "$*" > "$DIR/skip_reason"; } 2>/dev/null || true
  echo "SKIP: $*"
  exit 77
}
wait_for() {  # wait_for <seconds> <command...>
  local t=$1; shift
  for _ in $(seq 1 $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "timeout waiting for: $*" >&2; return 1
}
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
dump_logs() {
  for f in "$DIR"/log/*.log /var/log/munge/munged.log; do
    [ -f "$f" ] && { echo "----- tail $f"; tail -n 30 "$f"; }
  done
}

rm -f "$DIR/skip_reason" 2>/dev/null || true

# ---- 0. can we do it here at all?
[ "$(uname -s)" = Linux ] || skip "a local SLURM cluster needs Linux (this is $(uname -s))"
[ "$(id -u)" = 0 ] || skip "starting a local SLURM cluster needs root (munged, slurmd run as system users)"

# ---- 1. already up (started by us)? then reuse it.
if [ -s "$PIDS" ]; then
  all_alive=1
  while read -r name pid; do   # alive, and not a recycled PID
    kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ] || all_alive=0
  done < "$PIDS"
  if [ "$all_alive" = 1 ] && scontrol ping >/dev/null 2>&1 \
     && sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
    log "cluster already up (PIDs: $(awk '{printf "%s=%s ", $1, $2}' "$PIDS")); reusing it"
    exit 0
  fi
  log "stale or half-started cluster in $DIR; stopping it first"
  bash "$HERE/stop_local_slurm.sh"
fi

# ---- 2. packages (postinst cannot start services without systemd: fine, we start them)
need_install=0
for b in slurmctld slurmd sbatch squeue sinfo scontrol munged munge unmunge; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || need_install=1
done
if [ "$need_install" = 1 ]; then
  command -v apt-get >/dev/null 2>&1 || skip "SLURM is not installed and there is no apt-get to install it"
  PKGS=(slurmctld slurmd slurm-client munge)
  log "apt-get install ${PKGS[*]}"
  if ! apt-get install -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends "${PKGS[@]}" >"/tmp/gmsop-slurm-apt.log" 2>&1; then
    log "install failed; apt-get update and retry"
    if ! { apt-get update -q && apt-get install -y -q -o DPkg::Lock::Timeout=120 --no-install-recommends "${PKGS[@]}"; } \
          >>"/tmp/gmsop-slurm-apt.log" 2>&1; then
      tail -n 20 /tmp/gmsop-slurm-apt.log
      skip "could not install Debian packages '${PKGS[*]}' (log: /tmp/gmsop-slurm-apt.log)"
    fi
  fi
  log "packages installed: $(dpkg-query -W -f '${Package}=${Version} ' slurmctld slurmd slurm-client munge)"
fi
export PATH="$PATH:/usr/sbin:/sbin"

# ---- 3. a SLURM we did not start (its config, its ports)? leave it alone.
if [ -e "$CONF" ] && ! head -n 1 "$CONF" | grep -qxF "$MARKER"; then
  skip "$CONF exists and was not written by this script (a real SLURM installation?); not touching it"
fi
for p in "$CTLD_PORT" "$SLURMD_PORT"; do
  port_in_use "$p" && skip "port $p is in use by a SLURM (or other) daemon this script did not start; set GMSOP_SLURMCTLD_PORT/GMSOP_SLURMD_PORT"
done

# ---- 4. host name must resolve (SlurmctldHost / NodeName)
H=$(hostname -s)
if ! getent hosts "$H" >/dev/null; then
  log "adding '127.0.0.1 $H' to /etc/hosts"
  echo "127.0.0.1 $H" >> /etc/hosts
fi
NCPU=$(nproc)
MEM=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)   # MiB, 90% of RAM

# ---- 5. state directory
mkdir -p "$DIR"
rm -rf "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
install -d -o slurm -g slurm -m 755 "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run"
: > "$PIDS"
record() { echo "$1 $2" >> "$PIDS"; log "started $1 (PID $2)"; }

# ---- 6. munge: reuse a working one, else start ours
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running; reusing it (not ours, will not be stopped)"
else
  if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null \
      || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  fi
  chown munge:munge /etc/munge/munge.key; chmod 600 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/log/munge
  install -d -o munge -g munge -m 711 /var/lib/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged          # daemonizes; pid in /run/munge/munged.pid
  wait_for 10 test -s /run/munge/munged.pid || { dump_logs; exit 1; }
  record munged "$(cat /run/munge/munged.pid)"
  wait_for 10 sh -c 'munge -n | unmunge' || { dump_logs; exit 1; }
fi

# ---- 7. slurm.conf (first line: our marker; stop_local_slurm.sh removes the file again)
mkdir -p "$(dirname "$CONF")"
cat > "$CONF" <<EOF
${MARKER}
# A throwaway single-node test cluster; state, logs and PIDs in ${DIR}.
ClusterName=gmsoptest
SlurmctldHost=${H}
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=${DIR}/run/slurmctld.pid
SlurmdPidFile=${DIR}/run/slurmd.pid
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
StateSaveLocation=${DIR}/state
SlurmdSpoolDir=${DIR}/spool
SlurmctldLogFile=${DIR}/log/slurmctld.log
SlurmdLogFile=${DIR}/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# squeue-based status polling needs finished jobs kept longer than the plugin's poll interval
MinJobAge=600
InactiveLimit=0
KillWait=30
Waittime=0
SlurmctldTimeout=120
SlurmdTimeout=300
NodeName=${H} CPUs=${NCPU} RealMemory=${MEM} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${H} Default=YES MaxTime=INFINITE State=UP
EOF
chmod 644 "$CONF"
cp "$CONF" "$DIR/slurm.conf"   # a copy for post-mortems

# ---- 8. slurmctld + slurmd (both daemonize; pid files in $DIR/run)
/usr/sbin/slurmctld -c          # cold start: no job state from an earlier run
wait_for 15 test -s "$DIR/run/slurmctld.pid" || { dump_logs; exit 1; }
record slurmctld "$(cat "$DIR/run/slurmctld.pid")"
wait_for 30 scontrol ping || { dump_logs; exit 1; }
/usr/sbin/slurmd
wait_for 15 test -s "$DIR/run/slurmd.pid" || { dump_logs; exit 1; }
record slurmd "$(cat "$DIR/run/slurmd.pid")"
wait_for 60 sh -c "sinfo -h -n $H -o %T | grep -qx idle" || { sinfo; dump_logs; exit 1; }
log "daemons up"

# ---- 9. smoke test: one batch job end to end
# shellcheck disable=SC2016  # $SLURM_JOB_ID expands in the job, not here
JID=$(sbatch --parsable -t 1 -o "$DIR/log/smoke-%j.out" --wrap 'echo smoke $SLURM_JOB_ID')
wait_for 60 sh -c "squeue -h -j $JID -t all -o %T | grep -qx COMPLETED" \
  || { squeue -t all; dump_logs; exit 1; }
grep -q "smoke $JID" "$DIR/log/smoke-$JID.out" || { dump_logs; exit 1; }
sinfo
log "local SLURM cluster up: partition=$PARTITION, node=$H (${NCPU} CPUs, ${MEM} MiB), logs in $DIR/log"
