"""Deployment files rendered from one validated profile, built as data and serialised once.

- `budgets.py`      every number a deployment file carries (GPUs, probe budget, grace, /dev/shm),
                    each from one named function with the reason for its value
- `accelerators.py` which GPU a rented target gets (`--gpu`, else the smallest offer it fits)
- `compose.py`      a docker compose file (one service on serve's image)
- `k8s.py`          ConfigMap, PVC, Deployment and Service
- `hf_space.py`     a Hugging Face Docker Space (README front matter, Dockerfile for UID 1000)
- `hf_endpoint.py`  the arguments of huggingface_hub.create_inference_endpoint, and apply.py
- `skyserve.py`     a SkyPilot service
- `k8s_lws.py`      over several nodes: a LeaderWorkerSet (leader + workers, restarted as a group)
- `hosts.py`        over several plain hosts: one script per node
- `yamlout.py`      YAML as the targets write it (multi-line text as literal blocks)
- `commands.py`     `serve deploy`: validate, preflight for the target's GPUs, write the files

Each target's output is checked in the tests by its ecosystem's own validator.
"""
