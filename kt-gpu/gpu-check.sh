#!/usr/bin/env bash
# Runs kt-gpu's already-built GPU tests (tests/gpu.rs) on a machine with a GPU, NCCL and
# the NVIDIA driver (written for an H200 with CUDA 13). Build them first, anywhere:
#   cargo test -p kt-gpu --test gpu --no-run
# Usage: kt-gpu/gpu-check.sh [TEST_BINARY...]   (default: the newest target/debug/deps/gpu-*)
# Set KT_NCCL_LIBRARY=/path/to/libnccl.so.2 if NCCL is somewhere unusual.
set -u
cd "$(dirname "$0")/.." || exit 2
if [ "$#" -gt 0 ]; then
  binaries=("$@")
else
  mapfile -t binaries < <(ls -t target/debug/deps/gpu-* 2>/dev/null | grep -v '\.d$' | head -1)
fi
[ "${#binaries[@]}" -gt 0 ] || { echo "no gpu test binary: cargo test -p kt-gpu --test gpu --no-run"; exit 2; }
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
echo "KT_NCCL_LIBRARY=${KT_NCCL_LIBRARY:-<unset>} LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-<unset>}"
status=0
for binary in "${binaries[@]}"; do
  echo "=== $binary"
  output=$(timeout 300 "$binary" --nocapture --test-threads=1 2>&1)
  code=$?
  echo "$output"
  if grep -q 'skipped:' <<<"$output"; then
    echo "!!! some tests skipped: this machine's GPU, driver or NCCL was not usable"
    status=1
  fi
  [ "$code" -eq 0 ] || { echo "!!! $binary exited with $code (124: timed out)"; status=1; }
done
[ "$status" -eq 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit "$status"
