#!/bin/sh
# Node 0 of 2 of one vLLM server (the head: it serves the API); rendered by `serve deploy
# --target hosts` from a validated profile: edit the source profile, not this file.
# Run on node 0: sh node-0.sh HEAD_ADDRESS, where HEAD_ADDRESS is node 0's
# address as every node reaches it. PROFILE overrides the profile's path.
set -eu
head_address="${1:?usage: node-0.sh HEAD_ADDRESS (the address of node 0 that every node reaches)}"
profile="${PROFILE:-$(dirname -- "$0")/profile.yaml}"
exec serve launch --profile "$profile" --node-rank 0 --head-address "$head_address"
