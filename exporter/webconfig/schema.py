"""The web config file's schema: typed sections decoded strictly, then the checks no type can
express (docs/web-config.md gives the format and why each rule exists)."""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, get_args

import bcrypt
import msgspec

from exporter import yamlfile
from exporter.webconfig.names import (
    CIPHER_SUITES,
    CLIENT_AUTH_TYPES,
    HEADERS,
    TLS_VERSIONS,
    CipherSuiteName,
    ClientAuthType,
    CurveName,
    TLSVersionName,
)

# What an "invalid enum value" error lists as the allowed choices, by key name.
_CHOICES: Mapping[str, tuple[str, ...]] = {
    "min_version": get_args(TLSVersionName),
    "max_version": get_args(TLSVersionName),
    "client_auth_type": get_args(ClientAuthType),
    "cipher_suites": get_args(CipherSuiteName),
    "curve_preferences": get_args(CurveName),
}
_UNSUPPORTED = {
    "rate_limit": "not supported by this exporter; rate-limit in a reverse proxy instead",
    "client_allowed_sans": "not supported: Python's ssl has no hook to check a client "
    "certificate's SANs during the handshake",
}
# $2a$/$2b$/$2x$/$2y$, cost 04-31, 22 characters of salt and 31 of digest.
_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}")
_NOT_A_HASH = (
    "not a bcrypt hash (want $2a$, $2b$ or $2y$ with cost 04-31, "
    "e.g. from `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)"
)


class WebConfigError(ValueError):
    """A problem with the web config file; str() is one line naming the file and the key."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        where = f"{key}: " if key else ""
        super().__init__(f"web config {path}: {where}{problem}")
        self.path = path
        self.key = key
        self.problem = problem


# --- the file as written -----------------------------------------------------------------


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TLSSection(_Section):
    cert: str = ""
    key: str = ""
    client_ca: str = ""
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: ClientAuthType | Literal[""] = ""
    cipher_suites: tuple[CipherSuiteName, ...] = ()
    curve_preferences: tuple[CurveName, ...] = ()
    min_version: TLSVersionName = "TLS12"
    max_version: TLSVersionName = "TLS13"
    prefer_server_cipher_suites: bool = True

    @property
    def enabled(self) -> bool:
        """The toolkit's TLSConfig.IsEnabled: any certificate, key or client-auth key set."""
        sources = (self.cert, self.key, self.client_ca, self.cert_file, self.key_file)
        return any(sources) or bool(self.client_ca_file or self.client_auth_type)


class HeadersSection(_Section):
    strict_transport_security: str = msgspec.field(default="", name="Strict-Transport-Security")
    x_content_type_options: str = msgspec.field(default="", name="X-Content-Type-Options")
    x_frame_options: str = msgspec.field(default="", name="X-Frame-Options")
    x_xss_protection: str = msgspec.field(default="", name="X-XSS-Protection")
    content_security_policy: str = msgspec.field(default="", name="Content-Security-Policy")


class HTTPSection(_Section):
    http2: bool = True  # accepted for compatibility; aiohttp serves HTTP/1.1 only
    headers: HeadersSection = msgspec.field(default_factory=HeadersSection)


class WebConfigFile(_Section):
    tls_server_config: TLSSection = msgspec.field(default_factory=TLSSection)
    http_server_config: HTTPSection = msgspec.field(default_factory=HTTPSection)
    basic_auth_users: dict[str, str] = msgspec.field(default_factory=dict)


# --- the validated config ----------------------------------------------------------------


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
        """The settings a running server keeps until restarted (docs/web-config.md)."""
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
    http2: bool = True
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


def parse(path: str) -> WebConfig:
    """Reads and checks a web config file (certificates read, not yet loaded into OpenSSL);
    raises WebConfigError."""
    absolute = os.path.abspath(path)
    try:
        document = yamlfile.load_yaml(absolute)
    except yamlfile.YamlError as error:
        raise WebConfigError(path, "", str(error)) from None
    check = _Checker(path, os.path.dirname(absolute))
    written = check.decode(_without_nulls({} if document is None else document))
    return WebConfig(
        path=absolute,
        tls=check.tls(written.tls_server_config),
        http=check.http(written.http_server_config),
        basic_auth_users=check.users(written.basic_auth_users),
    )


def _without_nulls(document: object) -> object:
    """Keys written with no value are unset, as Go's YAML decoder reads them; a user's hash
    stays, so that `alice:` is reported as a missing hash."""
    if not isinstance(document, dict):
        return document
    kept: dict[object, object] = {}
    for key, value in document.items():
        if value is None:
            continue
        if key != "basic_auth_users":
            value = _without_nulls(value)
        kept[key] = value
    return kept


@dataclass(frozen=True)
class _Checker:
    """The checks beyond types, naming the file and the key in every error."""

    path: str  # as given, for messages
    folder: str  # the config file's folder, for relative paths

    def fail(self, key: str, problem: str) -> WebConfigError:
        return WebConfigError(self.path, key, problem)

    def decode(self, document: object) -> WebConfigFile:
        self._refuse_unsupported(document)
        if isinstance(document, dict):
            self._check_user_shapes(document.get("basic_auth_users"))
        try:
            return yamlfile.decode(document, WebConfigFile)
        except yamlfile.DecodeError as error:
            raise self.fail(error.key, _with_choices(error.key, error.problem)) from None

    def _refuse_unsupported(self, document: object) -> None:
        if not isinstance(document, dict):
            return
        tls = document.get("tls_server_config")
        for name, where in (
            ("rate_limit", document),
            ("client_allowed_sans", tls if isinstance(tls, dict) else {}),
        ):
            if name in where:
                key = name if where is document else f"tls_server_config.{name}"
                raise self.fail(key, _UNSUPPORTED[name])

    def _check_user_shapes(self, users: object) -> None:
        """Before decoding, for messages that name the user and never show a hash."""
        if users is None:
            return
        if not isinstance(users, dict):
            raise self.fail("basic_auth_users", "want a mapping of user name to bcrypt hash")
        for name, hashed in users.items():
            if not isinstance(name, str):
                raise self.fail(
                    "basic_auth_users", f"user name {yamlfile.quote(name)} must be a string"
                )
            if not isinstance(hashed, str):
                raise self.fail(f"basic_auth_users.{name}", _NOT_A_HASH)

    def tls(self, section: TLSSection) -> TLSServerConfig | None:
        if not section.enabled:
            return None  # the toolkit's IsEnabled(): no TLS, whatever else the section says
        certificate, cert_file = self._pem_source(section.cert, section.cert_file, "cert")
        private_key, key_file = self._pem_source(section.key, section.key_file, "key")
        client_ca, ca_file = self._pem_source(
            section.client_ca, section.client_ca_file, "client_ca"
        )
        if not certificate:
            raise self.fail("tls_server_config", "missing one of cert or cert_file")
        if not private_key:
            raise self.fail("tls_server_config", "missing one of key or key_file")
        auth = self._client_auth(section.client_auth_type or "NoClientCert", bool(client_ca))
        min_version = TLS_VERSIONS[section.min_version]
        if min_version > TLS_VERSIONS[section.max_version]:
            raise self.fail("tls_server_config.min_version", "is above max_version")
        self._check_suites(section.cipher_suites, min_version)
        if len(section.curve_preferences) > 1:
            raise self.fail(
                "tls_server_config.curve_preferences",
                "Python's ssl can restrict the key exchange to one curve only: list a single "
                "curve, or remove the key for OpenSSL's default set",
            )
        return TLSServerConfig(
            certificate=certificate,
            private_key=private_key,
            client_ca=client_ca,
            cert_file=cert_file,
            key_file=key_file,
            client_ca_file=ca_file,
            client_auth_type=auth,
            min_version=min_version,
            max_version=TLS_VERSIONS[section.max_version],
            cipher_suites=section.cipher_suites,
            curve_preferences=section.curve_preferences,
            prefer_server_cipher_suites=section.prefer_server_cipher_suites,
        )

    def _pem_source(self, inline: str, file_name: str, name: str) -> tuple[bytes, str]:
        """PEM bytes given inline or read from the file (relative to the config's folder, the
        toolkit's JoinDir), and that file's absolute path."""
        if inline and file_name:
            raise self.fail(
                f"tls_server_config.{name}", f"set either {name} or {name}_file, not both"
            )
        if inline:
            return inline.encode(), ""
        if not file_name:
            return b"", ""
        absolute = os.path.join(self.folder, file_name)
        try:
            with open(absolute, "rb") as file:
                return file.read(yamlfile.MAX_BYTES), absolute
        except OSError as error:
            reason = error.strerror or type(error).__name__
            raise self.fail(
                f"tls_server_config.{name}_file", f"cannot read {absolute}: {reason}"
            ) from None

    def _client_auth(self, name: str, has_ca: bool) -> str:
        key = "tls_server_config.client_auth_type"
        mode = CLIENT_AUTH_TYPES[name]
        if mode is None:
            raise self.fail(
                key,
                f'"{name}" is not supported: Python\'s ssl cannot require a client certificate '
                "without verifying it; use RequireAndVerifyClientCert with client_ca_file",
            )
        if mode != ssl.CERT_NONE and not has_ca:
            raise self.fail(
                "tls_server_config.client_ca_file", f"required when client_auth_type is {name}"
            )
        if name == "NoClientCert" and has_ca:
            raise self.fail(
                key,
                "a client CA is set but client_auth_type is NoClientCert, so client "
                "certificates would not be checked; set RequireAndVerifyClientCert",
            )
        return name

    def _check_suites(self, names: tuple[str, ...], min_version: ssl.TLSVersion) -> None:
        up_to_tls12 = [name for name in names if CIPHER_SUITES[name]]
        if names and not up_to_tls12 and min_version < ssl.TLSVersion.TLSv1_3:
            raise self.fail(
                "tls_server_config.cipher_suites",
                "lists TLS 1.3 suites only, which are not configurable; TLS 1.2 clients would "
                "have no cipher: add TLS 1.2 suites or set min_version: TLS13",
            )

    def http(self, section: HTTPSection) -> HTTPServerConfig:
        pairs: list[tuple[str, str]] = []
        values = msgspec.structs.astuple(section.headers)
        for name, value in zip(HEADERS, values, strict=True):
            if not value:
                continue  # "Unset if blank"
            where = f"http_server_config.headers.{name}"
            if "\r" in value or "\n" in value:
                raise self.fail(where, "must be a single line")
            if HEADERS[name] and value not in HEADERS[name]:
                allowed = ", ".join(HEADERS[name])
                raise self.fail(where, f"unknown value {yamlfile.quote(value)} (want {allowed})")
            pairs.append((name, value))
        return HTTPServerConfig(http2=section.http2, headers=tuple(pairs))

    def users(self, users: Mapping[str, str]) -> Mapping[str, str]:
        for name, hashed in users.items():
            where = f"basic_auth_users.{name}"
            if ":" in name:
                raise self.fail(where, "a user name cannot contain ':' (basic auth splits at it)")
            if not is_bcrypt_hash(hashed):
                # Never echo the value: it is a password hash.
                raise self.fail(where, _NOT_A_HASH)
        return MappingProxyType(dict(users))


def _with_choices(key: str, problem: str) -> str:
    """msgspec's "invalid enum value 'x'", bounded and followed by the allowed values."""
    if not problem.startswith("invalid enum value "):
        return problem
    value = yamlfile.quote(problem.removeprefix("invalid enum value ").strip("'"))
    name = re.sub(r"\[\d+\]$", "", key).rpartition(".")[2]
    allowed = ", ".join(_CHOICES.get(name, ()))
    return f"unknown value {value} (want {allowed})" if allowed else f"unknown value {value}"


def is_bcrypt_hash(hashed: str) -> bool:
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


def bcrypt_cost(hashed: str) -> int:
    return int(hashed[4:6])
