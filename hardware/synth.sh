#!/usr/bin/env bash
# Synthesise the reference core for a hex export with Yosys and print its resources.
#
#   hardware/synth.sh HEX_DIR [FAMILY] [K]
#
# HEX_DIR: `bstdg export RUN --format hex --out HEX_DIR`; FAMILY: a Yosys `synth_*` target
# (default xilinx: 7-series; also ecp5, ice40, ...); K: input spikes per pass (default 16).
# PYTHON names the interpreter that has bstdg (default python3). Writes the log and the
# statistics to HEX_DIR/synth-FAMILY.log.
set -euo pipefail
hex=${1:?usage: hardware/synth.sh HEX_DIR [FAMILY] [K]}
family=${2:-xilinx}
k=${3:-16}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${PYTHON:-python3}" -m bstdg.export.hdl "$hex" --k "$k" > "$work/bstdg_net.v"
log="$hex/synth-$family.log"
srcs="$here/bstdg_fifo.v $here/bstdg_stepper.v $here/bstdg_layer.v $work/bstdg_net.v"
# Memory bits before mapping (weights, thresholds, potentials, fired flags, FIFOs; Yosys
# drops ROM bits that are constant, e.g. threshold bits above the largest threshold).
yosys -q -p "read_verilog -defer $srcs; hierarchy -top bstdg_net; proc; flatten; memory -nomap; tee -q -o $work/mem.txt dump t:\$mem_v2"
grep -E "parameter .(SIZE|WIDTH|MEMID) " "$work/mem.txt" | paste - - - | awk '
    { size = $3; width = $6; name = $9; gsub(/["\\]/, "", name); bits += size * width
      printf "memory %-14s %6d x %4d = %8d bits\n", name, size, width, size * width }
    END { printf "memory bits total %d\n", bits }' | tee "$hex/synth-memories.txt"
yosys -l "$log" -q -p "read_verilog -defer $srcs; synth_$family -top bstdg_net; tee -o $hex/synth-$family.stat stat"
cat "$hex/synth-$family.stat"
