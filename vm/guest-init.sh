#!/bin/sh
# PID 1 of the damoncore test VM (kernel cmdline: init=<repo>/vm/guest-init.sh).
#
# The root filesystem is the host's / over read-only virtio-9p, so the host's
# python, the repo and its compiled extensions appear at the same paths.  A
# second, writable 9p share (mount tag "results") carries the job in and the
# results out:
#   job        executable to run (written by tests/vm/harness.py)
#   job.env    optional, sourced before the job (KEY=VALUE lines, sh syntax)
#   stdout, stderr, rc, dmesg, meminfo   written here
# The job sees DC_RESULTS=<results mount> and runs with cwd=$DC_CWD (default /tmp).
# Sysctls: kernel.numa_balancing=0 unless DC_NUMA_BALANCING is set in job.env;
# DC_THP=never|madvise|always sets THP; DC_TICKER_CPUS starts 1 ms tickers (below).
# Ends with a power-off; if anything here fails the kernel panics and qemu,
# started with -no-reboot, exits as well.

PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH
R=/run/results

# Every exec of a dynamically linked host binary costs many 9p round trips
# (slow under TCG); the static busybox (package busybox-static) needs one.
if [ -x /bin/busybox ]; then
    for c in mount mkdir dmesg mv sync sleep cat; do
        eval "$c() { /bin/busybox $c \"\$@\"; }"
    done
fi

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null  # usually already there (DEVTMPFS_MOUNT)
mount -t tmpfs -o mode=755 tmpfs /run
mkdir -p /dev/shm /dev/pts "$R"
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t devpts devpts /dev/pts 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 results "$R"; then
    echo "guest-init: cannot mount the results share" >&2
    echo o > /proc/sysrq-trigger
fi
[ -f "$R/job.env" ] && . "$R/job.env"

# A writable tmpfs /tmp hides the host's /tmp, where a checkout (CI clones) or a
# venv may live: DC_KEEP_PATHS (set by the harness: repo, python prefix) lists
# host paths that stay visible, bind-mounted back on top of the new /tmp.
mkdir -p /run/keep
i=0
for p in ${DC_KEEP_PATHS:-}; do
    case "$p" in /tmp/*) i=$((i + 1)); mkdir -p /run/keep/$i; mount -o bind "$p" /run/keep/$i ;; esac
done
mount -t tmpfs -o mode=1777 tmpfs /tmp
i=0
for p in ${DC_KEEP_PATHS:-}; do
    case "$p" in /tmp/*) i=$((i + 1)); mkdir -p "$p"; mount -o bind /run/keep/$i "$p" ;; esac
done

echo "${DC_NUMA_BALANCING:-0}" > /proc/sys/kernel/numa_balancing
echo 1 > /proc/sys/kernel/sysrq
[ -n "${DC_THP:-}" ] && echo "$DC_THP" > /sys/kernel/mm/transparent_hugepage/enabled

export HOME=/tmp DC_RESULTS="$R" PYTHONDONTWRITEBYTECODE=1 TMPDIR=/tmp LANG=C.UTF-8

# DC_TICKER_CPUS="0 1": one tiny process per listed CPU, pinned there, sleeping
# 1 ms in a loop.  Under TCG each wakeup flushes that vCPU's software TLB, so
# accessed bits cleared by page_idle/DAMON get set again on the next access.
# Use it for migration/tiering runs; not for slowdown measurements.
for cpu in ${DC_TICKER_CPUS:-}; do
    "${DC_PYTHON:-python3}" -c "import os, time
os.sched_setaffinity(0, {$cpu})
while True:
    time.sleep(0.001)" &
done
cd "${DC_CWD:-/tmp}" || cd /tmp
read up _ < /proc/uptime
echo "guest-init: running job (uptime $up s)" > /dev/console
if [ -x "$R/job" ]; then
    "$R/job" > "$R/stdout" 2> "$R/stderr"
    rc=$?
else
    echo "guest-init: no executable $R/job" > "$R/stderr"
    rc=127
fi
read up _ < /proc/uptime
echo "$up" > "$R/uptime"
dmesg > "$R/dmesg" 2>/dev/null
echo "$rc" > "$R/rc.tmp" && mv "$R/rc.tmp" "$R/rc"
sync
echo "guest-init: job exited $rc, powering off" > /dev/console
echo o > /proc/sysrq-trigger
sleep 10
