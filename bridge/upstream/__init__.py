"""The upstream link: an outbox of events, acks, resume and commands over one websocket."""
