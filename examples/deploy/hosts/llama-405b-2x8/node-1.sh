#!/bin/sh
# Node 1 of 2 of one vLLM server (a worker: it joins node 0); rendered by `serve deploy
# --target hosts` from a validated profile: edit the source profile, not this file.
# Run on node 1: sh node-1.sh HEAD_ADDRESS, where HEAD_ADDRESS is node 0's
# address as every node reaches it. PROFILE overrides the profile's path.
set -eu
head_address="${1:?usage: node-1.sh HEAD_ADDRESS (the address of node 0 that every node reaches)}"
profile="${PROFILE:-$(dirname -- "$0")/profile.yaml}"
exec serve launch --profile "$profile" --node-rank 1 --head-address "$head_address"
