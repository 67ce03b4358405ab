"""`serve rehearse`: a profile on this host with its model's shape and dummy weights.

- `shape.py`    the model directory vLLM loads (config.json + a tokenizer of its vocabulary)
- `run.py`      one start through the real launcher: events, stop, exit code
- `commands.py` the command: prediction vs vLLM, phases, smoke, bench, calibration
"""
