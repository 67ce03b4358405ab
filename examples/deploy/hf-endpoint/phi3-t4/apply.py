# Creates the Inference Endpoint (rendered by `serve deploy --target hf-endpoint`):
# run it next to endpoint.json, where HF_TOKEN (or `hf auth login`) can create one.
import json, os; from huggingface_hub import create_inference_endpoint; print(create_inference_endpoint(**json.load(open('endpoint.json')), secrets={k: os.environ[k] for k in ('HF_TOKEN',) if k in os.environ}))
