"""The customer portal: Seam's `create_portal` magic links, sessions and the pages they open.

docs/portal.md describes what it shows and its security; `bridge.api.server` mounts it on the
API's listener."""
