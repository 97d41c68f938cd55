"""Reservation automations: spaces, reservations and access grants kept as managed codes
(docs/automations.md)."""
