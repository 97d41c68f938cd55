"""The customer portal: Seam's `create_portal` magic links, sessions and the pages they open.

docs/portal.md describes what it shows and its security; `bridge.api.server` mounts it on the
API's listener."""

# Where the portal's pages live on the API's listener; here, not in `web`, so the API can route
# around them without importing the portal (imported only when enabled).
PREFIX = "/portal"
