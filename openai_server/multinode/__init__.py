"""One server over several nodes, at run time: what `serve launch --node-rank R` does.

- `spec.py`   one node's part rendered from the profile (its vLLM rank, its Ray node), never
              seen by the launcher below it
- `group.py`  the launchers' control channel between nodes (join, reports, stop, heartbeat)
- `node.py`   the head (joins the group, serves through the one supervisor, re-forms the group on
              a restart) and a worker (runs its part until the head stops the group)

The ports a group listens on are in `ports.py`; what is checked before a node starts is in
`preflight/multinode.py` (the plan) and `preflight/node.py` (this node's GPUs and ports), beside
the other checks. Nothing is imported here: the CLI reads the default below.
"""

# How long the head waits for every node to join, and a worker for the head (--join-timeout): a
# node's pod or host may come up minutes after another's.
JOIN_TIMEOUT_S = 600.0
