"""Nuki Smart Locks with a Keypad, through the Nuki Web API (a vendor cloud, over HTTPS)."""
