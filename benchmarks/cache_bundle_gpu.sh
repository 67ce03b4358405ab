#!/bin/sh
# Issue 25's GPU figures, one profile after another, each in homes of its own (cache_bundle.py):
# a cold start packs the bundle (every cache empty), then starts with only the bundle restored;
# each start's vLLM log and the files it wrote go to RESULTS_DIR/starts. KINDS=DB adds a warm start;
# KINDS=E HF_VOLUME=DIR: the start a deployment makes, the model's config in a Hugging Face cache.
#   sh benchmarks/cache_bundle_gpu.sh RESULTS_DIR [PROFILE ...]     (default: phi3-t4 h100)
set -u
out=${1:?results directory}
shift
mkdir -p "$out"
profiles=${*:-"phi3-t4 h100"}
for p in $profiles; do
    python benchmarks/cache_bundle.py --profile "$p" --rounds 1 --cold-from-pack --kinds "${KINDS:-BC}" \
        --keep "$out/starts" ${HF_VOLUME:+--hf-home "$HF_VOLUME"} \
        --out "$out/cache-$p.json" > "$out/cache-$p.log" 2>&1
    echo "$p: exit $?" >> "$out/STATUS"
done
echo "all done" >> "$out/STATUS"
