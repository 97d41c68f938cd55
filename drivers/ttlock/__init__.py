"""TTLock locks with a gateway, through the TTLock Open Platform (a vendor cloud, over HTTPS)."""
