#!/usr/bin/env bash
# Stop the daemons that start_local_slurm.sh started: exactly the PIDs it recorded in
# $GMSOP_SLURM_DIR/pids (never by name), after cancelling the cluster's jobs; then remove the
# /etc/slurm/slurm.conf it wrote (only if it carries its marker; a copy stays in
# $GMSOP_SLURM_DIR). Idempotent: safe when nothing runs, twice, or from a trap after a failed start.
set -u
DIR="${GMSOP_SLURM_DIR:-/tmp/gmsop-slurm}"
PIDS="$DIR/pids"
CONF=/etc/slurm/slurm.conf
MARKER="# Written by gmsop .ci/slurm/start_local_slurm.sh"
export PATH="$PATH:/usr/sbin:/sbin"
remove_conf() {
  if [ -f "$CONF" ] && head -n 1 "$CONF" | grep -qxF "$MARKER"; then rm -f "$CONF"; fi
}
if [ ! -s "$PIDS" ]; then
  remove_conf
  echo "[stop_local_slurm] nothing to stop ($PIDS absent or empty)"
  exit 0
fi

alive() {  # alive <name> <pid>: the recorded process still runs (and is not a reused PID)
  kill -0 "$2" 2>/dev/null && [ "$(cat "/proc/$2/comm" 2>/dev/null)" = "$1" ]
}

# Cancel whatever still runs on the test cluster, so no slurmstepd outlives slurmd.
if alive slurmctld "$(awk '$1 == "slurmctld" {print $2}' "$PIDS")" 2>/dev/null; then
  mapfile -t JOBS < <(timeout 10 squeue -h -o %i 2>/dev/null)
  if [ "${#JOBS[@]}" -gt 0 ]; then
    echo "[stop_local_slurm] cancelling jobs: ${JOBS[*]}"
    timeout 10 scancel "${JOBS[@]}" 2>/dev/null || true
    for _ in $(seq 1 50); do
      [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
  fi
fi

status=0
# reverse start order: slurmd, slurmctld, munged
for entry in $(tac "$PIDS" | awk '{print $1 ":" $2}'); do
  name=${entry%%:*}; pid=${entry##*:}
  if ! alive "$name" "$pid"; then
    echo "[stop_local_slurm] $name (PID $pid) not running"
    continue
  fi
  kill "$pid"
  for _ in $(seq 1 100); do alive "$name" "$pid" || break; sleep 0.2; done
  if alive "$name" "$pid"; then
    echo "[stop_local_slurm] $name (PID $pid) did not stop in 20 s; sending KILL"
    kill -9 "$pid" 2>/dev/null
    sleep 0.5
    alive "$name" "$pid" && { echo "[stop_local_slurm] $name (PID $pid) still alive" >&2; status=1; }
  fi
  echo "[stop_local_slurm] stopped $name (PID $pid)"
done
if [ "$status" = 0 ]; then : > "$PIDS"; remove_conf; fi
exit "$status"
