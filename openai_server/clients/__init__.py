"""Clients of any OpenAI-compatible endpoint: smoke test, chat, load benchmark."""
