"""Our own FastAPI server around vLLM's async engine, streaming text as Server-Sent Events.

Started as `python -m openai_server.custom <vLLM engine flags> --host H --port P`, which is what
`serve launch --server custom` renders. Modules, one concern each:

- `schemas.py`: request/response models (pydantic; no vLLM import), the API contract.
- `sse.py`: the Server-Sent Events wire format.
- `engine.py`: the one adapter over vLLM's engine API, which moves between releases (0.26, 0.32).
- `app.py`: the FastAPI routes.
- `__main__.py`: vLLM's own argument parsing, engine build, uvicorn, signals.
"""
