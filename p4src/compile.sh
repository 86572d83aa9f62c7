#!/usr/bin/env bash
# Compile the p4tas fast path for bmv2: compile.sh P4C MAIN.p4 OUTDIR
# Writes OUTDIR/p4tas.json (bmv2) and OUTDIR/p4tas.p4info.txtpb (P4Runtime, text format).
# Paths stay relative to the repository root so the output is the same in every clone.
set -euo pipefail
p4c=$1 main=$2 out=$3
cd "$(dirname "$0")/.."
mkdir -p "$out"
name=$(basename "$main" .p4)
"$p4c" --target bmv2 --arch v1model --std p4-16 \
  --p4runtime-files "$out/$name.p4info.txtpb" \
  -o "$out" "$main"
rm -f "$out/$name.p4i"
