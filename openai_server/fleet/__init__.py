"""Several models behind one OpenAI endpoint on one host (`serve fleet`).

- `spec.py`    the fleet file: public model name -> profile (+ overrides), resolved per model
- `placement.py` do the engines that share a GPU fit on it together
- `router.py`  the one endpoint: /v1/models, requests routed by `model`, streams passed through
- `run.py`     each model's `serve launch` under the fleet, the router, the stop
- `commands.py` the `serve fleet` command
"""
