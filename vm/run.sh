#!/bin/sh
# Run a shell command (or an executable file plus arguments) in the 4-node test guest:
#   vm/run.sh 'numactl -H; cat /sys/devices/system/node/node1/access0/initiators/read_latency'
#   vm/run.sh ./my-script.sh arg1
# Builds the kernel on first use (see vm/README.md). Exit status = the job's.
exec python3 "$(dirname "$0")/../tests/vm/harness.py" "$@"
