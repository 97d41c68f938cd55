"""Who can reach the local API: loopback as always, or the network, deliberately and safely.

On loopback nothing changes: the routes that hold no secret (`LOOPBACK_KEYLESS`) need no key.
Beyond loopback (`api.host` such as 0.0.0.0) the listener serves HTTPS with the configured
certificate, or plain HTTP only when `api.allow_plain_http` says so, and every route but
/health needs a key unless the operator names it in `api.public_routes`.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from pathlib import Path

from bridge.hosts import is_loopback
from bridge.startup import StartupError

ALWAYS_OPEN = frozenset({"/health"})
# What an operator may open beyond loopback, by name, and the paths each name serves: none
# holds a PIN or a guest's name. The page brings its script, style and the `/` redirect to it.
OPENABLE: dict[str, frozenset[str]] = {
    "/status": frozenset({"/status", "/status.js", "/status.css", "/"}),
    "/status.json": frozenset({"/status.json"}),
    "/metrics": frozenset({"/metrics"}),
    "/openapi.json": frozenset({"/openapi.json"}),
}
# Served without a key on a loopback listener, as lockbridge always has.
LOOPBACK_KEYLESS = ALWAYS_OPEN.union(*OPENABLE.values())


def beyond_loopback(host: str) -> bool:
    """True when `api.host` lets other machines connect (0.0.0.0, ::, a LAN address, a name)."""
    return not is_loopback(host)


def keyless_paths(host: str, public_routes: Iterable[str]) -> frozenset[str]:
    """The paths a client may call without a key on a listener bound to `host`."""
    if not beyond_loopback(host):
        return LOOPBACK_KEYLESS
    return ALWAYS_OPEN.union(*(OPENABLE[name] for name in public_routes))


def server_tls(cert_file: Path | None, key_file: Path | None) -> ssl.SSLContext | None:
    """The listener's TLS context, None for plain HTTP; StartupError when the files are unusable."""
    if cert_file is None or key_file is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:  # an OSError too: caught first, as the files were read
        raise StartupError(
            f"api.tls_cert_file {cert_file} and api.tls_key_file {key_file} are not a PEM "
            f"certificate and its private key ({exc.reason or exc})",
            "give the PEM certificate (chain) and the unencrypted PEM key that belongs to "
            "it") from None
    except OSError as exc:
        raise StartupError(
            f"cannot read the API's TLS files {cert_file}, {key_file} "
            f"({exc.strerror or exc})",
            f"make them readable by the service user: chown root:lockbridge {cert_file} "
            f"{key_file} && chmod 0640 {cert_file} {key_file}") from None
    return context


def client_tls(cert_file: Path) -> ssl.SSLContext:
    """A client context trusting exactly the certificate this box's daemon serves: the CLI
    reaches it on 127.0.0.1, a name the certificate need not carry, so the pin replaces the
    host name check."""
    try:
        context = ssl.create_default_context(cafile=str(cert_file))
    except (OSError, ssl.SSLError) as exc:
        raise StartupError(f"cannot read the API's certificate {cert_file} ({exc})",
                           "run the command as root or as the service user") from None
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    return context
