"""The upstream link over real TLS: a private CA given as `ca_file` is trusted, and a server
certificate the bridge cannot verify is refused once, clearly, and not retried in a storm."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bridge.clock import FakeClock
from bridge.reconnect import LinkState
from drivers.simulator import SimLockSpec
from tests.harness import Harness
from tests.upstream_helpers import (
    BRIDGE_ID,
    TOKEN,
    bridge_event_ids,
    eventually,
    start_link,
    unlock_events,
    upstream_config,
)

pytestmark = pytest.mark.timeout(60)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_pki(folder: Path) -> tuple[Path, ssl.SSLContext]:
    """A private CA (its certificate written to ca.pem) and a server context for 127.0.0.1."""
    now = datetime.now(UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("lockbridge test CA"))
          .issuer_name(_name("lockbridge test CA")).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
                         critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=5)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    chain = folder / "server.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file = folder / "server.key"
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(chain, key_file)
    return ca_file, context


async def test_private_ca_is_trusted_and_an_unknown_one_refused_once(
        harness_factory, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from bridge.upstream.devserver import DevUpstream

    h: Harness = await harness_factory([SimLockSpec(lock_id="front", name="Front")])
    ca_file, server_context = make_pki(tmp_path)
    server = DevUpstream(tmp_path / "upstream.db", TOKEN)
    port = await server.start("127.0.0.1", 0, ssl_context=server_context)
    url = f"wss://127.0.0.1:{port}/ws"
    try:
        # Without the CA the certificate cannot be verified: refused, said once, no storm.
        clock = FakeClock()
        untrusting = await start_link(h.engine, upstream_config(
            port, tmp_path, url=url, refused_retry_s=600), clock=clock)
        try:
            await eventually(lambda: untrusting.link.state is LinkState.REFUSED)
            await asyncio.sleep(0.3)  # real time: a storm would show as more attempts
            refusals = [r for r in caplog.records if r.levelno >= logging.ERROR
                        and "upstream link" in r.getMessage()]
            assert len(refusals) == 1
            assert "certificate" in refusals[0].getMessage().lower()
            assert server.connections == {}
        finally:
            await untrusting.stop()

        # With the private CA as ca_file: connected, and events arrive in order over TLS.
        trusting = await start_link(h.engine, upstream_config(port, tmp_path, url=url,
                                                              ca_file=ca_file))
        try:
            await unlock_events(h.engine, h.device_id("front"), 5)
            expected = await bridge_event_ids(h.engine)

            async def delivered() -> bool:
                got = [e["event_id"] for e in await server.events(BRIDGE_ID)]
                return got == expected and len(expected) >= 5

            await eventually(delivered, what="events delivered over TLS")
        finally:
            await trusting.stop()
    finally:
        await server.stop()
