#!/bin/sh
# Issue 25's GPU figures, one profile after another, each in homes of its own (cache_bundle.py):
# a cold start packs the bundle (every cache empty), then starts with only the bundle restored.
#   sh benchmarks/cache_bundle_gpu.sh RESULTS_DIR [PROFILE ...]     (default: phi3-t4 h100)
set -u
out=${1:?results directory}
shift
mkdir -p "$out"
profiles=${*:-"phi3-t4 h100"}
for p in $profiles; do
    python benchmarks/cache_bundle.py --profile "$p" --rounds 1 --cold-from-pack --kinds "${KINDS:-BC}" \
        --out "$out/cache-$p.json" > "$out/cache-$p.log" 2>&1
    echo "$p: exit $?" >> "$out/STATUS"
done
echo "all done" >> "$out/STATUS"
