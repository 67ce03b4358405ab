"""`serve top`: a running server (or fleet) and this host's GPUs, live or as one JSON snapshot."""
