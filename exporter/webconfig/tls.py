"""The server's SSLContext from a validated `tls_server_config`."""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
import warnings
from collections.abc import Iterator

from exporter.webconfig.names import CIPHER_SUITES, CLIENT_AUTH_TYPES, CURVES
from exporter.webconfig.schema import TLSServerConfig, WebConfig, WebConfigError


def build_ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server-side SSLContext for `config`, or None for plain HTTP; raises WebConfigError."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_protocol(context, tls)
    load_server_certificate(context, tls, config.path)
    _set_client_auth(context, tls, config.path)
    return context


def _set_protocol(context: ssl.SSLContext, tls: TLSServerConfig) -> None:
    with warnings.catch_warnings():
        # Python deprecates TLS 1.0/1.1; the toolkit still accepts them, so we honour the file.
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = tls.min_version
        context.maximum_version = tls.max_version
    # Go's server never renegotiates; client-initiated renegotiation is only a CPU sink.
    context.options |= ssl.OP_NO_RENEGOTIATION
    if tls.prefer_server_cipher_suites:
        context.options |= ssl.OP_CIPHER_SERVER_PREFERENCE
    else:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    up_to_tls12 = [CIPHER_SUITES[name] or "" for name in tls.cipher_suites]
    if any(up_to_tls12):
        context.set_ciphers(":".join(name for name in up_to_tls12 if name))
    if tls.curve_preferences:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])


def load_server_certificate(context: ssl.SSLContext, tls: TLSServerConfig, path: str) -> None:
    """Loads the certificate chain and key into `context`; on a live server context, new
    connections get them. Raises WebConfigError naming the key that is wrong."""
    cert_key = "tls_server_config.cert_file" if tls.cert_file else "tls_server_config.cert"
    key_key = "tls_server_config.key_file" if tls.key_file else "tls_server_config.key"
    if b"-----BEGIN CERTIFICATE-----" not in tls.certificate:
        raise WebConfigError(path, cert_key, "no PEM certificate found")
    if b"PRIVATE KEY-----" not in tls.private_key:
        raise WebConfigError(path, key_key, "no PEM private key found")
    if b"ENCRYPTED" in tls.private_key:
        raise WebConfigError(path, key_key, "encrypted private keys are not supported")
    try:
        with _pem_path(tls.certificate) as cert_path, _pem_path(tls.private_key) as key_path:
            context.load_cert_chain(cert_path, key_path, password=_no_password)
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise WebConfigError(path, key_key, "the key does not match the certificate") from None
        raise WebConfigError(
            path, cert_key, f"cannot load the certificate and key: {_ssl_reason(error)}"
        ) from None


def _set_client_auth(context: ssl.SSLContext, tls: TLSServerConfig, path: str) -> None:
    if tls.client_ca:
        load_client_ca(context, tls, path)
    mode = CLIENT_AUTH_TYPES.get(tls.client_auth_type)
    if mode is None:  # the schema refuses these; a hand-built config may not have
        raise WebConfigError(
            path, "tls_server_config.client_auth_type", f'"{tls.client_auth_type}" unsupported'
        )
    context.verify_mode = mode


def load_client_ca(context: ssl.SSLContext, tls: TLSServerConfig, path: str) -> None:
    key = (
        "tls_server_config.client_ca_file" if tls.client_ca_file else "tls_server_config.client_ca"
    )
    try:
        context.load_verify_locations(cadata=tls.client_ca.decode("ascii"))
    except (ssl.SSLError, UnicodeDecodeError, ValueError) as error:
        raise WebConfigError(
            path, key, f"no usable PEM certificate: {_ssl_reason(error)}"
        ) from None


def _ssl_reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)
    return str(reason) if reason else str(error).split(" (_ssl.c")[0][:200]


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


@contextlib.contextmanager
def _pem_path(data: bytes) -> Iterator[str]:
    """A path OpenSSL can open to read `data`. load_cert_chain reads files only; on Linux an
    anonymous memory file keeps the key off the disk, elsewhere a private temporary file."""
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("webconfig-pem", os.MFD_CLOEXEC)
        try:
            _write_all(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    with tempfile.TemporaryDirectory(prefix="webconfig-") as folder:
        name = os.path.join(folder, "pem")
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        yield name


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
