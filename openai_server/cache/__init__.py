"""Warm-start cache bundles: what one start of a profile compiled, packed into one file and
restored on another host (`serve cache pack | unpack | ls`).

- `locations.py`: where vLLM and its libraries keep their caches, from the environment (pure).
- `manifest.py`: what a bundle holds and whether this host may use it (pure).
- `select.py`: which cache entries one start used, read from its log and the files it wrote.
- `bundle.py`: the tar file: writing it, and restoring it all-or-nothing.
The command (`serve cache`, and the start `pack` runs when nothing is cached) is
`openai_server/cache_commands.py`, above the features it drives; this package sits below them, so
`serve deploy` can check a bundle too.
"""
