"""Launching and supervising one server: what `serve launch` does once the profile is rendered.

Where each decision lives:
- `supervisor.py`  the run loop: start, wait for ready, watch, restart or stop (the only loop)
- `options.py`     what a launch needs, derived once from the profile and the command line
- `restart.py`     the restart policy: backoff, limit, which failures are never retried
- `process.py`     the server process, its process group and the stop that leaves nothing
- `guardian.py`    both sides of the guardian that stops the group if the launcher is SIGKILLed
- `readiness.py`   ready = `GET /v1/models` lists the model; /health and the deep probe
- `watchdog.py`    is a start making progress (stall), is the engine still there
- `phases.py`      start-up phases read from vLLM's log lines
- `diagnose.py`    vLLM's output classified: one cause, the fix, an exit code
- `reporter.py`    what the launcher prints: lines, JSON events or a live display
- `gpu_release.py` wait until stopped processes no longer hold GPU memory

A server over several nodes runs through this supervisor from `multinode/`. Nothing is imported
here: `python -m openai_server.launch.guardian` must start in milliseconds.
"""
