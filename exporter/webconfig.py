"""`--web.config.file`: TLS and basic auth for the exporter's own HTTP server.

The file has the Prometheus exporter-toolkit format (docs/web-configuration.md and
web/tls_config.go in prometheus/exporter-toolkit), so a file written for node_exporter works here:

    tls_server_config: {cert_file, key_file, cert, key, client_auth_type, client_ca_file,
                        client_ca, min_version, max_version, cipher_suites, curve_preferences,
                        prefer_server_cipher_suites}
    http_server_config: {http2, headers}
    basic_auth_users: {username: bcrypt hash}

Loading is strict, as the toolkit's UnmarshalStrict: an unknown or duplicated key, a wrong type,
an unreadable or mismatched certificate and key, or a malformed bcrypt hash raises
`WebConfigError`, whose str() is one line naming the key. Relative paths are resolved against
the config file's folder, as the toolkit does. TLS is on when any of cert, cert_file, key,
key_file, client_ca, client_ca_file or client_auth_type is set (the toolkit's IsEnabled);
then a certificate and a key are required. Setting both cert and cert_file (or key and
key_file, client_ca and client_ca_file) is refused: the toolkit's docs forbid it and its code
would silently prefer the file.

Where Python's ssl module cannot do what Go's crypto/tls does, we map faithfully when the
outcome for clients is the same and refuse with a clear message otherwise:

- client_auth_type: NoClientCert -> CERT_NONE; VerifyClientCertIfGiven -> CERT_OPTIONAL;
  RequireAndVerifyClientCert -> CERT_REQUIRED (both need a client CA, unlike Go, which would
  silently fall back to the system roots). RequestClientCert -> CERT_NONE: Go asks for a
  certificate but never requires nor verifies it and the toolkit never looks at it, so exactly
  the same clients get in. RequireAnyClientCert (and its old alias RequireClientCert) is
  refused: OpenSSL through Python cannot require a certificate without verifying it.
- cipher_suites take Go's names (tls.CipherSuites(), the secure list the toolkit accepts) and
  are mapped to OpenSSL's. TLS 1.3 suites are accepted and have no effect, exactly as in Go,
  where they are not configurable either; a list of TLS 1.3 suites only is refused unless
  min_version is TLS13, since Go would then leave TLS 1.2 without any cipher.
- curve_preferences: Python's ssl can restrict the key exchange to one group only
  (set_ecdh_curve), so a single curve is honoured and a longer list is refused.
- prefer_server_cipher_suites maps to OP_CIPHER_SERVER_PREFERENCE (Go ignores it since 1.18).
- min_version TLS10/TLS11 is set as asked, but OpenSSL's security level may still refuse
  such handshakes.
- http2 is accepted and has no effect: aiohttp serves HTTP/1.1 only, and HTTP/2 clients
  (Prometheus included) fall back to it through ALPN.
- client_allowed_sans and rate_limit (newer toolkit keys) are refused: Python's ssl has no
  hook to check a client certificate's SANs during the handshake, and rate limiting is left to
  a reverse proxy.

Basic auth (`BasicAuthGuard`) checks bcrypt hashes off the event loop, one at a time like the
toolkit's mutex, and caches verified credentials (never failures: a flood of wrong passwords
can then not evict the good ones) under an HMAC of user, password and stored hash, so a
changed hash or a removed user can never hit a stale entry and no password is kept. An
unknown user is checked against a dummy hash of the same cost, so user names cannot be
probed by timing.

Like the toolkit, auth protects every path except, here, the two probe paths `/-/healthy` and
`/-/ready`: the toolkit guards those too (exclusions were proposed in exporter-toolkit #106 and
prometheus #9166, neither merged), which forces a Kubernetes httpGet probe to carry the
password in the pod spec. They reveal only that the process is alive and listening. Client
certificates, being checked in the TLS handshake, cannot be waived per path: with
RequireAndVerifyClientCert, probes must use a tcpSocket or exec check.

Reload: the toolkit re-reads the file on every request. `WebConfigWatcher` gets the same
effect cheaply: at most once a second (on a request, through the middleware) it compares the
stat (inode, size, mtime) of the config file and the certificate, key and CA files it names,
and reloads when one changed. Users and headers change at once; a new certificate and key
are loaded into the live SSLContext (new connections get them); client CAs added to the CA
file are trusted at once, but a removed CA stays trusted until a restart (OpenSSL cannot
remove a CA from a live context), and turning TLS on or off or changing any other TLS
setting needs a restart too: each case logs a warning. A broken file keeps the running config
and logs one error line per change of the file; a reload never raises into the request path.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import tempfile
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import NoReturn, TypeVar

import bcrypt
import yaml
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

logger = logging.getLogger(__name__)

REALM = "rocketchat-livechat-exporter"
# Paths served without credentials; see the module docstring for why.
PROBE_PATHS: frozenset[str] = frozenset({"/-/healthy", "/-/ready"})

TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# None: the toolkit accepts the name but Python's ssl cannot honour it (reason in the docstring).
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode | None] = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_NONE,
    "RequireAnyClientCert": None,
    "RequireClientCert": None,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}

# Go's tls.CipherSuites() names -> OpenSSL names; None marks TLS 1.3 suites, which neither Go
# nor Python's ssl lets you configure.
CIPHER_SUITES: Mapping[str, str | None] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_AES_128_GCM_SHA256": None,
    "TLS_AES_256_GCM_SHA384": None,
    "TLS_CHACHA20_POLY1305_SHA256": None,
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
}

# The toolkit's curve names -> OpenSSL group names.
CURVES: Mapping[str, str] = {
    "CurveP256": "prime256v1",
    "CurveP384": "secp384r1",
    "CurveP521": "secp521r1",
    "X25519": "X25519",
}

# The toolkit's extraHTTPHeaders: the only headers that may be set, and their allowed values
# (empty: any value).
HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_TOP_KEYS = ("tls_server_config", "http_server_config", "basic_auth_users")
_TLS_KEYS = (  # the first seven turn TLS on
    "cert",
    "key",
    "client_ca",
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "cipher_suites",
    "curve_preferences",
    "min_version",
    "max_version",
    "prefer_server_cipher_suites",
)
# Any of these set turns TLS on (the toolkit's TLSConfig.IsEnabled).
_TLS_ENABLING_KEYS = _TLS_KEYS[:7]
_HTTP_KEYS = ("http2", "headers")
_UNSUPPORTED = {
    "rate_limit": "not supported by this exporter; rate-limit in a reverse proxy instead",
    "client_allowed_sans": "not supported: Python's ssl has no hook to check a client "
    "certificate's SANs during the handshake",
}

# $2a$/$2b$/$2x$/$2y$, cost 04-31, 22 characters of salt and 31 of digest.
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_BCRYPT_MAX_PASSWORD = 72
_DEFAULT_DUMMY_COST = 10


class WebConfigError(ValueError):
    """A problem with the web config file; str() is one line naming the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        where = f"{key}: " if key else ""
        super().__init__(f"web config {path}: {where}{problem}")
        self.path = path
        self.key = key
        self.problem = problem


# --- values ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class TLSServerConfig:
    """A validated `tls_server_config`. The PEM material is read once at load time, so the
    SSLContext is built from exactly what was validated, even while files are being replaced."""

    certificate: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes = field(default=b"", repr=False)
    cert_file: str = ""  # absolute path; "" when given inline as `cert`
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: str = "NoClientCert"
    min_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_2
    max_version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3
    cipher_suites: tuple[str, ...] = ()  # Go names, as configured
    curve_preferences: tuple[str, ...] = ()
    prefer_server_cipher_suites: bool = True

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(p for p in (self.cert_file, self.key_file, self.client_ca_file) if p)

    def restart_settings(self) -> dict[str, object]:
        """The settings a running server keeps until restarted (see the module docstring)."""
        return {
            "client_auth_type": self.client_auth_type,
            "min_version": self.min_version,
            "max_version": self.max_version,
            "cipher_suites": self.cipher_suites,
            "curve_preferences": self.curve_preferences,
            "prefer_server_cipher_suites": self.prefer_server_cipher_suites,
        }


@dataclass(frozen=True, kw_only=True)
class HTTPServerConfig:
    http2: bool = True  # accepted for compatibility; aiohttp serves HTTP/1.1 only
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, kw_only=True)
class WebConfig:
    path: str  # absolute
    tls: TLSServerConfig | None = None  # None: plain HTTP
    http: HTTPServerConfig = field(default_factory=HTTPServerConfig)
    # user name -> bcrypt hash; the hashes are secrets, hence repr=False
    basic_auth_users: Mapping[str, str] = field(
        default_factory=lambda: MappingProxyType({}), repr=False
    )

    @property
    def files(self) -> tuple[str, ...]:
        """Every file this config was read from, for change detection."""
        return (self.path, *(self.tls.files if self.tls else ()))


# --- loading -----------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, as Go's yaml.UnmarshalStrict does: a user listed
    twice under basic_auth_users would otherwise silently keep only the last hash."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[object, object]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # a list or mapping as a key
            raise yaml.constructor.ConstructorError(
                None, None, "found an unhashable key", key_node.start_mark
            ) from None
        if duplicate:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


@dataclass(frozen=True)
class _Reader:
    """Reads one file's YAML values, naming the file and the key in every error."""

    path: str  # as given, for messages
    folder: str  # the config file's folder, for relative paths

    def fail(self, key: str, problem: str) -> NoReturn:
        raise WebConfigError(self.path, key, problem)

    def mapping(self, value: object, key: str, known: Collection[str]) -> dict[str, object]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(key, f"want a mapping, got {_kind(value)}")
        for name in value:
            where = f"{key}.{name}" if key else str(name)
            if name in _UNSUPPORTED:
                self.fail(where, _UNSUPPORTED[str(name)])
            if name not in known:
                self.fail(where, f"unknown key (want one of {', '.join(known)})")
        return {str(k): v for k, v in value.items()}

    def string(self, section: Mapping[str, object], key: str, name: str) -> str:
        value = section.get(name)
        if value is None:
            return ""
        if not isinstance(value, str):
            self.fail(f"{key}.{name}", f"want a string, got {_kind(value)}")
        return value

    def boolean(self, section: Mapping[str, object], key: str, name: str, default: bool) -> bool:
        value = section.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(f"{key}.{name}", f"want true or false, got {_kind(value)}")
        return value

    def strings(self, section: Mapping[str, object], key: str, name: str) -> tuple[str, ...]:
        value = section.get(name)
        if value is None:
            return ()
        if not isinstance(value, list):
            self.fail(f"{key}.{name}", f"want a list of strings, got {_kind(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                self.fail(f"{key}.{name}[{index}]", f"want a string, got {_kind(item)}")
        return tuple(value)

    def choice(self, value: str, key: str, what: str, allowed: Iterable[str]) -> str:
        allowed = list(allowed)
        if value not in allowed:
            self.fail(key, f'unknown {what} "{value}" (want {", ".join(allowed)})')
        return value

    def resolve(self, name: str) -> str:
        """A path from the file, relative to the file's folder (the toolkit's JoinDir)."""
        return os.path.join(self.folder, name) if name else ""

    def read(self, key: str, name: str) -> bytes:
        try:
            with open(name, "rb") as file:
                return file.read()
        except OSError as error:
            self.fail(key, f"cannot read {name}: {error.strerror or error}")


def _kind(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def load_web_config(path: str) -> WebConfig:
    """Reads and fully validates a web config file, certificates and hashes included (the
    toolkit's web.Validate); raises WebConfigError."""
    absolute = os.path.abspath(path)
    reader = _Reader(path, os.path.dirname(absolute))
    document = _parse_yaml(reader, absolute)
    top = reader.mapping(document, "", _TOP_KEYS)
    config = WebConfig(
        path=absolute,
        tls=_tls_config(
            reader, reader.mapping(top.get("tls_server_config"), "tls_server_config", _TLS_KEYS)
        ),
        http=_http_config(
            reader, reader.mapping(top.get("http_server_config"), "http_server_config", _HTTP_KEYS)
        ),
        basic_auth_users=_users(reader, top.get("basic_auth_users")),
    )
    build_ssl_context(config)  # proves that the certificate, key and CA load
    return config


def _parse_yaml(reader: _Reader, absolute: str) -> object:
    try:
        with open(absolute, "rb") as file:
            text = file.read()
    except OSError as error:
        reader.fail("", f"cannot read: {error.strerror or error}")
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.MarkedYAMLError as error:
        # Only the problem and its position: the context snippet could show a secret.
        mark = error.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reader.fail("", f"invalid YAML{where}: {error.problem}")
    except yaml.YAMLError as error:
        reader.fail("", f"invalid YAML: {type(error).__name__}")


def _tls_config(reader: _Reader, section: Mapping[str, object]) -> TLSServerConfig | None:
    key = "tls_server_config"
    text = {name: reader.string(section, key, name) for name in _TLS_ENABLING_KEYS}
    if not any(text.values()):
        return None  # the toolkit's IsEnabled(): no TLS, whatever else the section says
    certificate, cert_file = _pem_source(reader, text, "cert", "cert_file")
    private_key, key_file = _pem_source(reader, text, "key", "key_file")
    client_ca, client_ca_file = _pem_source(reader, text, "client_ca", "client_ca_file")
    if not certificate:
        reader.fail(key, "missing one of cert or cert_file")
    if not private_key:
        reader.fail(key, "missing one of key or key_file")
    auth = _client_auth(reader, text["client_auth_type"] or "NoClientCert", bool(client_ca))
    min_version = _tls_version(reader, section, "min_version", ssl.TLSVersion.TLSv1_2)
    max_version = _tls_version(reader, section, "max_version", ssl.TLSVersion.TLSv1_3)
    if min_version > max_version:
        reader.fail(f"{key}.min_version", "is above max_version")
    return TLSServerConfig(
        certificate=certificate,
        private_key=private_key,
        client_ca=client_ca,
        cert_file=cert_file,
        key_file=key_file,
        client_ca_file=client_ca_file,
        client_auth_type=auth,
        min_version=min_version,
        max_version=max_version,
        cipher_suites=_cipher_suites(reader, section, min_version),
        curve_preferences=_curves(reader, section),
        prefer_server_cipher_suites=reader.boolean(
            section, key, "prefer_server_cipher_suites", default=True
        ),
    )


def _pem_source(
    reader: _Reader, text: Mapping[str, str], inline: str, file_key: str
) -> tuple[bytes, str]:
    """PEM bytes from `inline` or from the file named by `file_key`, and that file's path."""
    if text[inline] and text[file_key]:
        reader.fail(f"tls_server_config.{inline}", f"set either {inline} or {file_key}, not both")
    if text[inline]:
        return text[inline].encode(), ""
    name = reader.resolve(text[file_key])
    if not name:
        return b"", ""
    return reader.read(f"tls_server_config.{file_key}", name), name


def _client_auth(reader: _Reader, name: str, has_ca: bool) -> str:
    key = "tls_server_config.client_auth_type"
    reader.choice(name, key, "client auth type", CLIENT_AUTH_TYPES)
    mode = CLIENT_AUTH_TYPES[name]
    if mode is None:
        reader.fail(
            key,
            f'"{name}" is not supported: Python\'s ssl cannot require a client certificate '
            "without verifying it; use RequireAndVerifyClientCert with client_ca_file",
        )
    if mode != ssl.CERT_NONE and not has_ca:
        reader.fail("tls_server_config.client_ca_file", f"required when client_auth_type is {name}")
    if name == "NoClientCert" and has_ca:
        reader.fail(
            key,
            "a client CA is set but client_auth_type is NoClientCert, so client certificates "
            "would not be checked; set RequireAndVerifyClientCert",
        )
    return name


def _tls_version(
    reader: _Reader, section: Mapping[str, object], name: str, default: ssl.TLSVersion
) -> ssl.TLSVersion:
    text = reader.string(section, "tls_server_config", name)
    if not text:
        return default
    reader.choice(text, f"tls_server_config.{name}", "TLS version", TLS_VERSIONS)
    return TLS_VERSIONS[text]


def _cipher_suites(
    reader: _Reader, section: Mapping[str, object], min_version: ssl.TLSVersion
) -> tuple[str, ...]:
    key = "tls_server_config.cipher_suites"
    names = reader.strings(section, "tls_server_config", "cipher_suites")
    for index, name in enumerate(names):
        reader.choice(name, f"{key}[{index}]", "cipher suite", CIPHER_SUITES)
    up_to_tls12 = [name for name in names if CIPHER_SUITES[name]]
    if names and not up_to_tls12 and min_version < ssl.TLSVersion.TLSv1_3:
        reader.fail(
            key,
            "lists TLS 1.3 suites only, which are not configurable; TLS 1.2 clients would have "
            "no cipher: add TLS 1.2 suites or set min_version: TLS13",
        )
    return names


def _curves(reader: _Reader, section: Mapping[str, object]) -> tuple[str, ...]:
    key = "tls_server_config.curve_preferences"
    names = reader.strings(section, "tls_server_config", "curve_preferences")
    for index, name in enumerate(names):
        reader.choice(name, f"{key}[{index}]", "curve", CURVES)
    if len(names) > 1:
        reader.fail(
            key,
            "Python's ssl can restrict the key exchange to one curve only: list a single "
            "curve, or remove the key for OpenSSL's default set",
        )
    return names


def _http_config(reader: _Reader, section: Mapping[str, object]) -> HTTPServerConfig:
    key = "http_server_config"
    headers = reader.mapping(section.get("headers"), f"{key}.headers", list(HEADERS))
    pairs: list[tuple[str, str]] = []
    for name, value in headers.items():
        where = f"{key}.headers.{name}"
        if value is None or value == "":
            continue  # "Unset if blank"
        if not isinstance(value, str):
            reader.fail(where, f"want a string, got {_kind(value)}")
        if "\r" in value or "\n" in value:
            reader.fail(where, "must be a single line")
        if HEADERS[name]:
            reader.choice(value, where, "value", HEADERS[name])
        pairs.append((name, value))
    return HTTPServerConfig(
        http2=reader.boolean(section, key, "http2", default=True), headers=tuple(pairs)
    )


def _users(reader: _Reader, value: object) -> Mapping[str, str]:
    key = "basic_auth_users"
    if value is None:
        return MappingProxyType({})
    if not isinstance(value, dict):
        reader.fail(key, f"want a mapping of user name to bcrypt hash, got {_kind(value)}")
    users: dict[str, str] = {}
    for name, hashed in value.items():
        if not isinstance(name, str):
            reader.fail(key, f"user name {name!r} must be a string (quote it)")
        where = f"{key}.{name}"
        if ":" in name:
            reader.fail(where, "a user name cannot contain ':' (basic auth splits at the first)")
        if not isinstance(hashed, str) or not _is_bcrypt_hash(hashed):
            # Never echo the value: it is a password hash.
            reader.fail(
                where,
                "not a bcrypt hash (want $2a$, $2b$ or $2y$ with cost 04-31, "
                "e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            )
        users[name] = hashed
    return MappingProxyType(users)


def _is_bcrypt_hash(hashed: str) -> bool:
    if not _BCRYPT_HASH.fullmatch(hashed):
        return False
    # The bcrypt library is stricter than the shape (e.g. the salt's last character); asking it
    # at the cheapest cost, rather than the hash's, proves the hash parses in under a millisecond.
    cheapest = hashed[:4] + "04" + hashed[6:]
    try:
        bcrypt.checkpw(b"", cheapest.encode("ascii"))
    except ValueError:
        return False
    return True


def _bcrypt_cost(hashed: str) -> int:
    return int(hashed[4:6])


# --- TLS ---------------------------------------------------------------------------------


def build_ssl_context(config: WebConfig) -> ssl.SSLContext | None:
    """The server-side SSLContext for `config`, or None for plain HTTP; raises WebConfigError
    (never for a config from load_web_config, which builds one to validate)."""
    tls = config.tls
    if tls is None:
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _set_protocol(context, tls)
    _load_server_certificate(context, tls, config.path)
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
    openssl_names = [CIPHER_SUITES[name] for name in tls.cipher_suites]
    up_to_tls12 = [name for name in openssl_names if name]
    if up_to_tls12:
        context.set_ciphers(":".join(up_to_tls12))
    if tls.curve_preferences:
        context.set_ecdh_curve(CURVES[tls.curve_preferences[0]])


def _load_server_certificate(context: ssl.SSLContext, tls: TLSServerConfig, path: str) -> None:
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
        _load_client_ca(context, tls, path)
    mode = CLIENT_AUTH_TYPES.get(tls.client_auth_type)
    if mode is None:  # load_web_config refuses these; a hand-built config may not have
        raise WebConfigError(
            path, "tls_server_config.client_auth_type", f'"{tls.client_auth_type}" unsupported'
        )
    context.verify_mode = mode


def _load_client_ca(context: ssl.SSLContext, tls: TLSServerConfig, path: str) -> None:
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
    return str(reason) if reason else str(error).split(" (_ssl.c")[0]


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


# --- basic auth --------------------------------------------------------------------------


def parse_basic_authorization(header: str | None) -> tuple[str, bytes] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None (Go's BasicAuth)."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(token.strip(), validate=True)
        user, colon, password = raw.partition(b":")
        return (user.decode("utf-8"), password) if colon else None
    except (binascii.Error, ValueError):  # UnicodeDecodeError is a ValueError
        return None


class BasicAuthGuard:
    """Checks basic-auth credentials against bcrypt hashes, caching the verified ones.

    Cache keys are HMAC-SHA256 (with a per-process random key) of user, password and stored
    hash: no password is kept, a fast unkeyed hash of it is not either, and a changed hash or a
    removed user never matches an old entry. Only successes are cached, so failures cannot evict
    good entries. bcrypt runs in one worker thread: it takes tens of milliseconds and would
    stall the event loop, and one at a time bounds its CPU use as the toolkit's mutex does."""

    def __init__(self, users: Mapping[str, str], *, cache_size: int = 256) -> None:
        self._users: Mapping[str, str] = MappingProxyType(dict(users))
        self._dummy_hash = _dummy_hash(self._users.values())
        self._cache: OrderedDict[bytes, None] = OrderedDict()
        self._cache_size = cache_size
        self._cache_secret = secrets.token_bytes(32)
        self._bcrypt_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bcrypt")

    @property
    def enabled(self) -> bool:
        return bool(self._users)

    @property
    def users(self) -> Mapping[str, str]:
        return self._users

    def replace_users(self, users: Mapping[str, str]) -> None:
        # Old cache entries stay harmless: their keys include the hash they were verified with.
        self._users = MappingProxyType(dict(users))
        self._dummy_hash = _dummy_hash(self._users.values())

    async def authorize(self, authorization: str | None) -> bool:
        """Whether an Authorization header value carries valid credentials."""
        credentials = parse_basic_authorization(authorization)
        return credentials is not None and await self.verify(*credentials)

    async def verify(self, user: str, password: bytes) -> bool:
        stored = self._users.get(user)
        # An unknown user still pays a bcrypt round of the same cost: no probing by timing.
        hashed = stored if stored is not None else self._dummy_hash
        key = self._cache_key(user, password, hashed)
        if key in self._cache:
            self._cache.move_to_end(key)
            return stored is not None
        loop = asyncio.get_running_loop()
        matches = await loop.run_in_executor(self._bcrypt_thread, _bcrypt_matches, password, hashed)
        if not (matches and stored is not None):
            return False
        self._cache[key] = None
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return True

    def close(self) -> None:
        self._bcrypt_thread.shutdown(wait=False, cancel_futures=True)

    def _cache_key(self, user: str, password: bytes, hashed: str) -> bytes:
        mac = hmac.new(self._cache_secret, digestmod=hashlib.sha256)
        for part in (user.encode(), password, hashed.encode()):
            mac.update(len(part).to_bytes(4, "big"))  # length-prefixed: no ambiguous joins
            mac.update(part)
        return mac.digest()


def _bcrypt_matches(password: bytes, hashed: str) -> bool:
    # bcrypt reads 72 bytes at most; Go and htpasswd silently truncate, bcrypt>=5 raises, so we
    # truncate to accept the same passwords. checkpw compares in constant time.
    return bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed.encode("ascii"))


def _dummy_hash(hashes: Iterable[str]) -> str:
    """A well-formed hash no password matches, at the highest configured cost, so a wrong user
    is never cheaper to test than a wrong password."""
    cost = max((_bcrypt_cost(h) for h in hashes), default=_DEFAULT_DUMMY_COST)
    return f"$2b${cost:02d}${'.' * 53}"


# --- reload ------------------------------------------------------------------------------

_Stamp = tuple[tuple[int, int, int, int] | None, ...]


def _stamp(paths: Iterable[str]) -> _Stamp:
    """What tells a changed file: inode (atomic replaces, Kubernetes secret symlink swaps),
    size and mtime. os.stat follows symlinks, as those swaps need."""
    stamps: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            stamps.append(None)
            continue
        stamps.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(stamps)


class WebConfigWatcher:
    """The running web config, reloaded when its files change (see the module docstring).

    Construction loads the file strictly and raises WebConfigError; afterwards nothing raises.
    Pass `ssl_context` to the server once: reloads update that same object."""

    def __init__(
        self,
        path: str,
        *,
        min_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._path = path
        self._min_interval = min_interval
        self._clock = clock
        self._config = load_web_config(path)
        self._running_tls = self._config.tls  # what the live SSLContext holds
        self._ssl_context = build_ssl_context(self._config)
        self._guard = BasicAuthGuard(self._config.basic_auth_users)
        self._stamp = _stamp(self._config.files)
        self._next_check = clock() + min_interval

    @property
    def config(self) -> WebConfig:
        """The last config loaded successfully (TLS settings may await a restart)."""
        return self._config

    @property
    def ssl_context(self) -> ssl.SSLContext | None:
        return self._ssl_context

    @property
    def guard(self) -> BasicAuthGuard:
        return self._guard

    def maybe_reload(self, *, force: bool = False) -> bool:
        """Reloads if a file changed (at most once per min_interval unless `force`, e.g. on
        SIGHUP); True when a new config was applied. Never raises."""
        now = self._clock()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self._min_interval
        try:
            return self._reload_if_changed(force)
        except Exception as error:  # a reload must never break the request that triggered it
            logger.error(
                "web config %s: reload failed: %s: %s", self._path, type(error).__name__, error
            )
            return False

    def close(self) -> None:
        self._guard.close()

    def _reload_if_changed(self, force: bool) -> bool:
        # Stamped before loading, so that a change made during the load is seen next time.
        before = _stamp(self._config.files)
        if before == self._stamp and not force:
            return False
        self._stamp = before  # a broken file is reported once, not every second
        try:
            new = load_web_config(self._path)
        except WebConfigError as error:
            logger.error("keeping the previous web config: %s", error)
            return False
        if new.files != self._config.files:
            self._stamp = _stamp(new.files)
        self._apply(new)
        return True

    def _apply(self, new: WebConfig) -> None:
        self._apply_tls(new)  # first: should it fail, nothing of the new file is in use
        if dict(new.basic_auth_users) != dict(self._config.basic_auth_users):
            self._guard.replace_users(new.basic_auth_users)
            logger.info(
                "web config %s: basic auth users reloaded (%d)",
                self._path,
                len(new.basic_auth_users),
            )
        self._config = new

    def _apply_tls(self, new: WebConfig) -> None:
        running, wanted = self._running_tls, new.tls
        if running is None or wanted is None:
            if (running is None) != (wanted is None):
                state = "on" if running else "off"
                logger.warning(
                    "web config %s: turning TLS on or off needs a restart; TLS stays %s",
                    self._path,
                    state,
                )
            return
        self._warn_about_restart_settings(running, wanted)
        if (wanted.certificate, wanted.private_key) != (running.certificate, running.private_key):
            assert self._ssl_context is not None  # running TLS implies a context
            _load_server_certificate(self._ssl_context, wanted, new.path)
            logger.info("web config %s: new TLS certificate loaded", self._path)
        if wanted.client_ca != running.client_ca and wanted.client_ca:
            self._add_client_cas(wanted, new.path)
        self._running_tls = replace(
            running,
            certificate=wanted.certificate,
            private_key=wanted.private_key,
            client_ca=wanted.client_ca or running.client_ca,
        )

    def _warn_about_restart_settings(
        self, running: TLSServerConfig, wanted: TLSServerConfig
    ) -> None:
        before = running.restart_settings()
        changed = [
            f"tls_server_config.{name}"
            for name, value in wanted.restart_settings().items()
            if before[name] != value
        ]
        if changed:
            logger.warning(
                "web config %s: %s changed; restart to apply", self._path, ", ".join(changed)
            )

    def _add_client_cas(self, wanted: TLSServerConfig, path: str) -> None:
        assert self._ssl_context is not None
        fresh = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _load_client_ca(fresh, wanted, path)
        new_cas = set(fresh.get_ca_certs(binary_form=True))
        removed = set(self._ssl_context.get_ca_certs(binary_form=True)) - new_cas
        _load_client_ca(self._ssl_context, wanted, path)  # additive: OpenSSL cannot forget a CA
        logger.info("web config %s: client CAs reloaded", self._path)
        if removed:
            logger.warning(
                "web config %s: %d client CA certificate(s) removed from the file stay trusted "
                "until a restart",
                self._path,
                len(removed),
            )


# --- aiohttp -----------------------------------------------------------------------------


def basic_auth_middleware(
    watcher: WebConfigWatcher, *, open_paths: Collection[str] = PROBE_PATHS
) -> Middleware:
    """aiohttp middleware: reloads the web config when due, asks for basic auth on every path
    but `open_paths` when users are configured, and sets the configured response headers.

    Responses a handler has already prepared (streamed) cannot get the headers any more."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        watcher.maybe_reload()
        headers = watcher.config.http.headers
        guard = watcher.guard
        protected = guard.enabled and request.path not in open_paths
        if protected and not await guard.authorize(request.headers.get(hdrs.AUTHORIZATION)):
            return _set_headers(_unauthorized(), headers)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            _set_headers(error, headers)
            raise
        return _set_headers(response, headers)

    return middleware


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="Unauthorized\n",
        headers={hdrs.WWW_AUTHENTICATE: f'Basic realm="{REALM}"'},
    )


_Response = TypeVar("_Response", bound=web.StreamResponse)


def _set_headers(response: _Response, headers: Iterable[tuple[str, str]]) -> _Response:
    if not response.prepared:
        for name, value in headers:
            response.headers[name] = value
    return response
