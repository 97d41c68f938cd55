"""The chaos soak: a real daemon under every fault at once, then the invariants."""
