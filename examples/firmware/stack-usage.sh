#!/usr/bin/env bash
# Measures the firmware's peak stack use and checks it against the stack the budget layout
# reserves (`_stack_reserve` in boards/mps2-an386.x).
#
# Builds with the stack painted at reset (feature stack-probe) and with all of QEMU's RAM (so
# an overflow cannot corrupt the measurement), runs the scenario, which parks instead of
# exiting, dumps the top of RAM through the QEMU monitor and finds the lowest word that is no
# longer paint. Exits non-zero if the scenario fails or the stack outgrows the reserve.
set -euo pipefail
cd "$(dirname "$0")"
export FIRMWARE_BOARD=mps2-an386-full
cargo build --release --features stack-probe --quiet
elf="${CARGO_TARGET_DIR:-target}/thumbv7em-none-eabihf/release/tinyraft-firmware"
top=$((0x20000000 + 4 * 1024 * 1024)) # _stack_start: the end of RAM in mps2-an386-full.x
window=$((256 * 1024))                # how far below the top to look
reserve_kib=$(sed -n 's/^_stack_reserve = \([0-9]*\)K;$/\1/p' boards/mps2-an386.x)
work=$(mktemp -d)
qemu=
cleanup() {
  [ -n "$qemu" ] && kill "$qemu" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkfifo "$work/in"
# -nographic multiplexes the QEMU monitor on stdio: Ctrl-A c switches to it.
timeout 120 qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -nographic \
  -semihosting-config enable=on,target=native -kernel "$elf" <"$work/in" >"$work/out" 2>&1 &
qemu=$!
exec 3>"$work/in"
for _ in $(seq 1200); do
  grep -q '^PARKED' "$work/out" && break
  kill -0 "$qemu" 2>/dev/null || break
  sleep 0.1
done
if ! grep -q '^PASS' "$work/out" || ! grep -q '^PARKED' "$work/out"; then
  cat "$work/out"
  echo "stack-usage: the scenario did not pass"
  exit 1
fi
printf '\001c' >&3
printf 'pmemsave %d %d "%s"\n' $((top - window)) "$window" "$work/ram.bin" >&3
printf 'quit\n' >&3
exec 3>&-
wait "$qemu" || true
qemu=
# Words from the bottom of the window up; the first one that is not paint is the deepest the
# stack reached. (Frames have holes of untouched paint, so "first from the top" would be wrong.)
lowest=$(od -A d -t x4 -v -w4 "$work/ram.bin" |
  awk '$2 != "cccccccc" && NF == 2 && !found { print $1; found = 1 }')
if [ -z "$lowest" ]; then
  echo "stack-usage: no stack use found in the window"
  exit 1
fi
used=$((window - 10#$lowest))
echo "stack: $used bytes at peak (reserved: $((reserve_kib * 1024)))"
if [ "$used" -gt $((reserve_kib * 1024)) ]; then
  echo "stack-usage: the stack outgrew _stack_reserve in boards/mps2-an386.x"
  exit 1
fi
