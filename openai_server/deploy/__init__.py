"""Deployment files rendered from one validated profile, built as data and serialised once.

- `budgets.py`  every number a deployment file carries (GPUs, probe budget, grace, /dev/shm), each
                from one named function with the reason for its value
- `compose.py`  a docker compose file (one service on serve's image)
- `commands.py` `serve deploy`: validate, preflight for the target's GPUs, write the files

Each target's output is checked in the tests by its ecosystem's own validator.
"""
