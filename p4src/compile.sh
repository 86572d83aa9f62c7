#!/usr/bin/env bash
# Compile the p4tas fast path.
#   compile.sh P4C MAIN.p4 OUTDIR             bmv2 (v1model): OUTDIR/p4tas.json and .p4info.txtpb
#   compile.sh --pna P4C_DPDK MAIN.p4 OUTDIR  DPDK SWX (PNA, p4c-dpdk): OUTDIR/p4tas.spec,
#                                             .p4info.txtpb and .context.json
#   compile.sh [--pna] --max-flows N ...      either, for N flows (-DMAX_FLOWS=N)
# Paths stay relative to the repository root so the output is the same in every clone.
# The PNA build also runs p4src/p4c_dpdk_checks.py (fails on constructs p4c-dpdk miscompiles
# silently) and p4src/dpdk_spec_fixups.py (p4c-dpdk's and DPDK 22.11's defects, fixed in the
# spec), and drops the context's build date, so that the output is reproducible.
set -euo pipefail
pna=0
defines=()
if [ "${1:-}" = "--pna" ]; then pna=1; shift; fi
if [ "${1:-}" = "--max-flows" ]; then defines=("-DMAX_FLOWS=$2"); shift 2; fi
p4c=$1 main=$2 out=$3
cd "$(dirname "$0")/.."
mkdir -p "$out"
name=$(basename "$main" .p4)
if [ "$pna" = 1 ]; then
  log=$(mktemp)
  trap 'rm -f "$log"' EXIT
  if ! "$p4c" --arch pna ${defines[@]+"${defines[@]}"} -o "$out/$name.spec" --p4runtime-files "$out/$name.p4info.txtpb" \
        --context "$out/$name.context.json" "$main" 2> "$log"; then
    cat "$log" >&2
    exit 1
  fi
  sed -i -e '/^  "build_date" : /d' \
         -e 's|^  "compile_command" : .*|  "compile_command" : "p4src/compile.sh --pna",|' \
         "$out/$name.context.json"
  python3 p4src/p4c_dpdk_checks.py "$p4c" "$main"
  python3 p4src/dpdk_spec_fixups.py "$out/$name.spec"
else
  "$p4c" --target bmv2 --arch v1model --std p4-16 ${defines[@]+"${defines[@]}"} \
    --p4runtime-files "$out/$name.p4info.txtpb" \
    -o "$out" "$main"
  rm -f "$out/$name.p4i"
fi
