"""Preflight: what can be known before launch (vLLM flags, hardware, memory fit)."""
