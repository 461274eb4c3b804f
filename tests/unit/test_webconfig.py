"""--web.config.file: strict loading, TLS, basic auth, reload (exporter/webconfig/)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import get_args

import aiohttp
import bcrypt
import msgspec
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from exporter.webconfig import (
    BasicAuth,
    Verdict,
    WebConfig,
    WebConfigError,
    WebConfigWatcher,
    build_ssl_context,
    load_web_config,
    loader,
    names,
    schema,
    web_config_middleware,
)

# Cost 4, the cheapest bcrypt allows, keeps the suite fast.
ALICE_PASSWORD = "alice-secret-pw"
BOB_PASSWORD = "bob-secret-pw"
ALICE_HASH = bcrypt.hashpw(ALICE_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
BOB_HASH = bcrypt.hashpw(BOB_PASSWORD.encode(), bcrypt.gensalt(4)).decode()
REALM_HEADER = 'Basic realm="rocketchat-livechat-exporter"'
TIMEOUT = aiohttp.ClientTimeout(total=5)


# --- helpers -----------------------------------------------------------------------------


def write(path: Path, text: str | bytes) -> Path:
    """Replaces a file atomically, as config management and Kubernetes do (a new inode)."""
    data = text.encode() if isinstance(text, str) else text
    staging = path.with_name(path.name + ".tmp")
    staging.write_bytes(data)
    os.replace(staging, path)
    return path


def basic(user: str, password: str) -> dict[str, str]:
    """The Authorization header a scraper sends."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def users_yaml(**users: str) -> str:
    lines = "".join(f"  {name}: {hashed}\n" for name, hashed in users.items())
    return f"basic_auth_users:\n{lines}"


def write_pair(folder: Path, cert: trustme.LeafCert, stem: str = "server") -> None:
    write(folder / f"{stem}.crt", b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    write(folder / f"{stem}.key", cert.private_key_pem.bytes())


def tls_yaml(extra: str = "") -> str:
    return f"tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{extra}"


CLIENT_CERT_REQUIRED = "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n"


def error_of(path: Path) -> WebConfigError:
    with pytest.raises(WebConfigError) as caught:
        load_web_config(str(path))
    assert "\n" not in str(caught.value)
    return caught.value


def client_context(ca: trustme.CA, cert: trustme.LeafCert | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    if cert is not None:
        cert.configure_cert(context)
    return context


async def ok(_: web.Request) -> web.Response:
    return web.Response(text="ok\n")


def make_app(watcher: WebConfigWatcher) -> web.Application:
    app = web.Application(middlewares=[web_config_middleware(watcher)])
    for path in ("/", "/metrics", "/-/healthy", "/-/ready"):
        app.router.add_get(path, ok)
    return app


@contextlib.asynccontextmanager
async def serve_tls(watcher: WebConfigWatcher) -> AsyncIterator[str]:
    """The app of `watcher` served with its TLS on a free port: the URL of /metrics."""
    assert watcher.ssl_context is not None
    context = watcher.ssl_context
    runner = web.AppRunner(make_app(watcher))
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock, ssl_context=context)
    await site.start()
    try:
        yield f"https://127.0.0.1:{port}/metrics"
    finally:
        await runner.cleanup()
        sock.close()


async def fetch_status(url: str, context: ssl.SSLContext) -> int:
    """A fresh connection each time, so every call is a new TLS handshake."""
    connector = aiohttp.TCPConnector(ssl=context, force_close=True)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=TIMEOUT) as session,
        session.get(url) as response,
    ):
        return response.status


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_folder(tmp_path: Path, ca: trustme.CA) -> Path:
    write_pair(tmp_path, ca.issue_cert("127.0.0.1", "localhost"))
    write(tmp_path / "ca.crt", ca.cert_pem.bytes())
    return tmp_path


@pytest.fixture
def web_yml(tmp_path: Path) -> Path:
    """Where a test writes its web config file."""
    return tmp_path / "web.yml"


@pytest.fixture
def make_watcher() -> Iterator[Callable[[Path], WebConfigWatcher]]:
    watchers: list[WebConfigWatcher] = []

    def make(path: Path) -> WebConfigWatcher:
        watchers.append(WebConfigWatcher(str(path), min_interval=0))
        return watchers[-1]

    yield make
    for watcher in watchers:
        watcher.close()


@contextlib.asynccontextmanager
async def http_client(
    watcher: WebConfigWatcher,
) -> AsyncIterator[TestClient[web.Request, web.Application]]:
    async with TestClient(TestServer(make_app(watcher))) as client:
        yield client


@pytest.fixture
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Records the hash of every bcrypt check from now on (hashes checked while loading too)."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    return calls


# --- loading: errors ---------------------------------------------------------------------

TESTDATA = Path(__file__).parent.parent / "testdata" / "web"
GOOD_FILES = sorted(TESTDATA.glob("*.good.yml"))
BAD_FILES = sorted(TESTDATA.glob("*.bad.yml"))


def fixture_in(folder: Path, ca: trustme.CA, fixture: Path) -> Path:
    """`fixture` as web.yml in a folder that also holds the files fixtures name: server.crt,
    server.key, ca.crt, other.key (of another certificate) and encrypted.key."""
    write(folder / "other.key", ca.issue_cert("other").private_key_pem.bytes())
    write(folder / "encrypted.key", "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAA\n")
    return write(folder / "web.yml", fixture.read_bytes())


def expected_error(fixture: Path) -> tuple[str, str]:
    """The `# key:` and `# error:` lines that open a .bad.yml fixture."""
    key_line, error_line = fixture.read_text().splitlines()[:2]
    assert key_line.startswith("# key:")
    assert error_line.startswith("# error: ")
    return key_line.removeprefix("# key:").strip(), error_line.removeprefix("# error: ")


@pytest.mark.parametrize("fixture", BAD_FILES, ids=lambda p: p.name)
def test_bad_file_is_refused_with_one_line_naming_the_key(
    tls_folder: Path, ca: trustme.CA, fixture: Path
) -> None:
    key, problem = expected_error(fixture)
    path = fixture_in(tls_folder, ca, fixture)

    error = error_of(path)

    assert str(error).startswith(f"web config {path}: {key}: " if key else f"web config {path}: ")
    assert error.key == key
    assert problem in error.problem
    assert len(error.problem) < 800  # bounded, whatever the file holds


@pytest.mark.parametrize("fixture", GOOD_FILES, ids=lambda p: p.name)
def test_good_file_loads(tls_folder: Path, ca: trustme.CA, fixture: Path) -> None:
    config = load_web_config(str(fixture_in(tls_folder, ca, fixture)))
    assert (config.tls is not None) == ("tls_server_config:\n  " in fixture.read_text())


def test_the_fixtures_cover_both_kinds() -> None:
    assert len(GOOD_FILES) >= 5
    assert len(BAD_FILES) >= 30


def test_allowed_names_are_the_tables_keys() -> None:
    assert set(get_args(names.CipherSuiteName)) == set(names.CIPHER_SUITES)
    assert set(get_args(names.CurveName)) == set(names.CURVES)
    assert set(get_args(names.TLSVersionName)) == set(names.TLS_VERSIONS)
    assert set(get_args(names.ClientAuthType)) == set(names.CLIENT_AUTH_TYPES)
    headers = msgspec.structs.fields(schema.HeadersSection)
    assert [field.encode_name for field in headers] == list(names.HEADERS)


def test_missing_file_is_refused(tmp_path: Path) -> None:
    error = error_of(tmp_path / "absent.yml")
    assert "cannot read: No such file or directory" in str(error)


def test_bad_hash_is_not_echoed(web_yml: Path) -> None:
    path = write(web_yml, "basic_auth_users:\n  alice: hunter2-not-a-hash\n")
    assert "hunter2" not in str(error_of(path))


def test_yaml_error_does_not_echo_the_line(web_yml: Path) -> None:
    path = write(web_yml, f"basic_auth_users:\n  alice: {ALICE_HASH}\n  : : :\n")
    assert ALICE_HASH not in str(error_of(path))


# --- loading: what a good file gives -----------------------------------------------------


def test_empty_file_means_plain_http_without_auth(web_yml: Path) -> None:
    config = load_web_config(str(write(web_yml, "")))
    assert config.tls is None
    assert not config.basic_auth_users
    assert config.http.http2 is True
    assert build_ssl_context(config) is None


def test_tls_section_without_certificate_keys_leaves_tls_off(web_yml: Path) -> None:
    path = write(web_yml, "tls_server_config:\n  min_version: TLS13\n")
    assert load_web_config(str(path)).tls is None


def test_relative_paths_resolve_against_the_config_folder(
    tls_folder: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tls_folder / "web.yml", tls_yaml())
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))

    tls = load_web_config(str(path)).tls

    assert tls is not None
    assert tls.cert_file == str(tls_folder / "server.crt")
    assert tls.key_file == str(tls_folder / "server.key")


def test_inline_cert_and_key_are_accepted(web_yml: Path, ca: trustme.CA) -> None:
    cert = ca.issue_cert("127.0.0.1")
    indent = "\n    ".join
    text = (
        "tls_server_config:\n"
        f"  cert: |\n    {indent(cert.cert_chain_pems[0].bytes().decode().splitlines())}\n"
        f"  key: |\n    {indent(cert.private_key_pem.bytes().decode().splitlines())}\n"
    )
    config = load_web_config(str(write(web_yml, text)))
    assert isinstance(build_ssl_context(config), ssl.SSLContext)


def test_ssl_context_defaults_to_tls12_up_to_tls13_without_client_certs(tls_folder: Path) -> None:
    context = build_ssl_context(load_web_config(str(write(tls_folder / "web.yml", tls_yaml()))))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.maximum_version == ssl.TLSVersion.TLSv1_3
    assert context.verify_mode == ssl.CERT_NONE
    assert context.options & ssl.OP_CIPHER_SERVER_PREFERENCE


@pytest.mark.parametrize(
    ("client_auth_type", "verify_mode"),
    [
        ("NoClientCert", ssl.CERT_NONE),
        ("RequestClientCert", ssl.CERT_NONE),
        ("VerifyClientCertIfGiven", ssl.CERT_OPTIONAL),
        ("RequireAndVerifyClientCert", ssl.CERT_REQUIRED),
    ],
)
def test_client_auth_types_map_to_verify_modes(
    tls_folder: Path, client_auth_type: str, verify_mode: ssl.VerifyMode
) -> None:
    ca_line = "" if client_auth_type == "NoClientCert" else "  client_ca_file: ca.crt\n"
    text = tls_yaml(f"  client_auth_type: {client_auth_type}\n{ca_line}")
    context = build_ssl_context(load_web_config(str(write(tls_folder / "web.yml", text))))
    assert context is not None
    assert context.verify_mode == verify_mode


def test_cipher_suites_restrict_tls12_by_go_names(tls_folder: Path) -> None:
    text = tls_yaml(
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256]\n"
    )
    context = build_ssl_context(load_web_config(str(write(tls_folder / "web.yml", text))))
    assert context is not None
    tls12 = {c["name"] for c in context.get_ciphers() if c["protocol"] != "TLSv1.3"}
    assert tls12 == {"ECDHE-RSA-AES256-GCM-SHA384"}


def test_tls13_suites_only_are_accepted_with_min_version_tls13(tls_folder: Path) -> None:
    text = tls_yaml("  min_version: TLS13\n  cipher_suites: [TLS_AES_256_GCM_SHA384]\n")
    assert load_web_config(str(write(tls_folder / "web.yml", text))).tls is not None


def test_secrets_stay_out_of_repr(tls_folder: Path) -> None:
    path = write(tls_folder / "web.yml", tls_yaml() + users_yaml(alice=ALICE_HASH))
    shown = repr(load_web_config(str(path)))
    assert ALICE_HASH not in shown
    assert "PRIVATE KEY" not in shown


# --- TLS handshakes ----------------------------------------------------------------------


async def test_tls_server_is_verified_by_a_client_trusting_the_ca(
    tls_folder: Path, ca: trustme.CA, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(tls_folder / "web.yml", tls_yaml()))
    async with serve_tls(watcher) as url:
        assert await fetch_status(url, client_context(ca)) == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await fetch_status(url, client_context(trustme.CA()))


async def test_required_client_cert_rejects_a_client_without_one(
    tls_folder: Path, ca: trustme.CA, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    text = tls_yaml(CLIENT_CERT_REQUIRED)
    watcher = make_watcher(write(tls_folder / "web.yml", text))
    async with serve_tls(watcher) as url:
        with pytest.raises(aiohttp.ClientError):
            await fetch_status(url, client_context(ca))
        assert await fetch_status(url, client_context(ca, ca.issue_cert("scraper"))) == 200


async def test_new_certificate_is_served_after_the_files_change(
    tls_folder: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(tls_folder / "web.yml", tls_yaml()))
    new_ca = trustme.CA()
    async with serve_tls(watcher) as url:
        write_pair(tls_folder, new_ca.issue_cert("127.0.0.1"))
        assert watcher.maybe_reload()
        assert await fetch_status(url, client_context(new_ca)) == 200


async def test_client_ca_added_to_the_file_is_trusted_without_restart(
    tls_folder: Path, ca: trustme.CA, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    text = tls_yaml(CLIENT_CERT_REQUIRED)
    watcher = make_watcher(write(tls_folder / "web.yml", text))
    second_ca = trustme.CA()
    async with serve_tls(watcher) as url:
        write(tls_folder / "ca.crt", ca.cert_pem.bytes() + second_ca.cert_pem.bytes())
        assert watcher.maybe_reload()
        scraper = second_ca.issue_cert("scraper")
        assert await fetch_status(url, client_context(ca, scraper)) == 200


def test_client_ca_removed_from_the_file_warns_that_a_restart_is_needed(
    tls_folder: Path,
    ca: trustme.CA,
    make_watcher: Callable[[Path], WebConfigWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    text = tls_yaml(CLIENT_CERT_REQUIRED)
    watcher = make_watcher(write(tls_folder / "web.yml", text))
    write(tls_folder / "ca.crt", trustme.CA().cert_pem.bytes())
    assert watcher.maybe_reload()
    assert "removed from the file stay trusted until a restart" in caplog.text


# --- basic auth --------------------------------------------------------------------------


async def test_request_without_credentials_gets_401_with_the_realm(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        response = await client.get("/metrics")
        assert response.status == 401
        assert response.headers["WWW-Authenticate"] == REALM_HEADER


async def test_right_credentials_get_200(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        assert (await client.get("/metrics", headers=basic("alice", ALICE_PASSWORD))).status == 200


@pytest.mark.parametrize(
    ("user", "password"),
    [("alice", "wrong"), ("mallory", ALICE_PASSWORD), ("bob", BOB_PASSWORD)],
    ids=["wrong_password", "unknown_user", "user_of_another_file"],
)
async def test_wrong_credentials_get_401(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher], user: str, password: str
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        response = await client.get("/metrics", headers=basic(user, password))
        assert response.status == 401
        assert password not in await response.text()


@pytest.mark.parametrize(
    "header", ["Bearer abc", "Basic !!!not-base64", "Basic " + "YWxpY2U=", "Basic"]
)
async def test_malformed_authorization_header_gets_401(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher], header: str
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        assert (await client.get("/metrics", headers={"Authorization": header})).status == 401


async def test_every_path_but_the_probes_needs_credentials(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        statuses = {path: (await client.get(path)).status for path in ("/", "/metrics")}
        probes = {path: (await client.get(path)).status for path in ("/-/healthy", "/-/ready")}
    assert statuses == {"/": 401, "/metrics": 401}
    assert probes == {"/-/healthy": 200, "/-/ready": 200}


async def test_without_users_every_path_is_open(
    tls_folder: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(tls_folder / "web.yml", "http_server_config:\n  http2: false\n"))
    async with http_client(watcher) as client:
        assert (await client.get("/metrics")).status == 200


async def test_configured_headers_are_set_on_every_answer(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    text = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n" + users_yaml(
        alice=ALICE_HASH
    )
    watcher = make_watcher(write(web_yml, text))
    async with http_client(watcher) as client:
        denied = await client.get("/metrics")
        probe = await client.get("/-/healthy")
    assert denied.headers["X-Frame-Options"] == "deny"
    assert probe.headers["X-Frame-Options"] == "deny"


async def test_verified_credentials_are_cached_so_bcrypt_runs_once(
    checkpw_calls: list[bytes],
) -> None:
    auth = BasicAuth({"alice": ALICE_HASH})
    try:
        assert await auth.verify("alice", ALICE_PASSWORD.encode()) is Verdict.ALLOWED
        assert await auth.verify("alice", ALICE_PASSWORD.encode()) is Verdict.ALLOWED
    finally:
        auth.close()
    assert checkpw_calls == [ALICE_HASH.encode()]


async def test_failures_are_not_cached(checkpw_calls: list[bytes]) -> None:
    auth = BasicAuth({"alice": ALICE_HASH})
    try:
        assert await auth.verify("alice", b"wrong") is Verdict.DENIED
        assert await auth.verify("alice", b"wrong") is Verdict.DENIED
    finally:
        auth.close()
    assert len(checkpw_calls) == 2


async def test_unknown_user_pays_a_bcrypt_round_at_the_configured_cost(
    checkpw_calls: list[bytes],
) -> None:
    costly = "$2b$07$" + ALICE_HASH[7:]
    auth = BasicAuth({"alice": ALICE_HASH, "bob": costly})
    try:
        assert await auth.verify("mallory", b"whatever") is Verdict.DENIED
    finally:
        auth.close()
    assert len(checkpw_calls) == 1
    assert checkpw_calls[0].startswith(b"$2b$07$")


async def test_cache_is_bounded(checkpw_calls: list[bytes]) -> None:
    auth = BasicAuth({"alice": ALICE_HASH, "bob": BOB_HASH}, cache_size=1)
    try:
        for user, password in [("alice", ALICE_PASSWORD), ("bob", BOB_PASSWORD)] * 2:
            assert await auth.verify(user, password.encode()) is Verdict.ALLOWED
    finally:
        auth.close()
    assert len(checkpw_calls) == 4


async def test_password_beyond_72_bytes_is_truncated_like_go_and_htpasswd() -> None:
    long_password = b"p" * 72
    auth = BasicAuth({"alice": bcrypt.hashpw(long_password, bcrypt.gensalt(4)).decode()})
    try:
        assert await auth.verify("alice", long_password + b"-ignored-by-bcrypt") is Verdict.ALLOWED
    finally:
        auth.close()


async def test_passwords_never_reach_the_logs(
    web_yml: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        await client.get("/metrics", headers=basic("alice", ALICE_PASSWORD))
        await client.get("/metrics", headers=basic("alice", "typo-" + ALICE_PASSWORD))
    assert ALICE_PASSWORD not in caplog.text


# --- reload ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after", "probes"),
    [
        (
            {"alice": ALICE_HASH},
            {"alice": ALICE_HASH, "bob": BOB_HASH},
            [("bob", BOB_PASSWORD, 401, 200)],
        ),
        (
            {"alice": ALICE_HASH, "bob": BOB_HASH},
            {"alice": ALICE_HASH},
            [("bob", BOB_PASSWORD, 200, 401)],
        ),
        (
            {"alice": ALICE_HASH},
            {"alice": BOB_HASH},
            [("alice", ALICE_PASSWORD, 200, 401), ("alice", BOB_PASSWORD, 401, 200)],
        ),
    ],
    ids=["added user", "removed user", "rotated password"],
)
async def test_a_reload_changes_who_is_let_in_despite_the_cache(
    web_yml: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    before: dict[str, str],
    after: dict[str, str],
    probes: list[tuple[str, str, int, int]],
) -> None:
    """Each probe: a user, a password, and the status it gets before and after the reload."""
    watcher = make_watcher(write(web_yml, users_yaml(**before)))
    async with http_client(watcher) as client:

        async def statuses() -> list[int]:
            return [
                (await client.get("/metrics", headers=basic(user, password))).status
                for user, password, _, _ in probes
            ]

        assert await statuses() == [status for _, _, status, _ in probes]
        write(web_yml, users_yaml(**after))
        assert await statuses() == [status for _, _, _, status in probes]


async def test_broken_file_keeps_the_old_users_and_logs_one_error(
    web_yml: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        write(web_yml, "basic_auth_users:\n  alice: not-a-hash\n")
        alice = basic("alice", ALICE_PASSWORD)
        statuses = [(await client.get("/metrics", headers=alice)).status for _ in range(3)]
    assert statuses == [200, 200, 200]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "keeping the previous web config" in errors[0].getMessage()
    assert "basic_auth_users.alice: not a bcrypt hash" in errors[0].getMessage()


def test_fixed_file_is_loaded_after_a_broken_one(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    write(web_yml, "basic_auth_users: [\n")
    assert not watcher.maybe_reload()
    write(web_yml, users_yaml(bob=BOB_HASH))
    assert watcher.maybe_reload()
    assert set(watcher.config.basic_auth_users) == {"bob"}


def test_files_are_checked_at_most_once_per_interval(web_yml: Path) -> None:
    now = [100.0]
    path = write(web_yml, users_yaml(alice=ALICE_HASH))
    watcher = WebConfigWatcher(str(path), clock=lambda: now[0])
    try:
        write(path, users_yaml(bob=BOB_HASH))
        now[0] += 0.5
        assert not watcher.maybe_reload()
        now[0] += 0.6
        assert watcher.maybe_reload()
        assert set(watcher.config.basic_auth_users) == {"bob"}
    finally:
        watcher.close()


def test_unchanged_files_are_not_reloaded(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    assert not watcher.maybe_reload()
    assert watcher.maybe_reload(force=True)


def test_turning_tls_on_needs_a_restart_and_warns(
    tls_folder: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write(tls_folder / "web.yml", users_yaml(alice=ALICE_HASH))
    watcher = make_watcher(path)
    write(path, tls_yaml() + users_yaml(alice=ALICE_HASH))
    assert watcher.maybe_reload()
    assert watcher.ssl_context is None
    assert "turning TLS on or off needs a restart; TLS stays off" in caplog.text


def test_changed_tls_setting_needs_a_restart_and_warns(
    tls_folder: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = write(tls_folder / "web.yml", tls_yaml())
    watcher = make_watcher(path)
    write(path, tls_yaml("  min_version: TLS13\n"))
    assert watcher.maybe_reload()
    assert watcher.ssl_context is not None
    assert watcher.ssl_context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert "tls_server_config.min_version changed; restart to apply" in caplog.text


def test_reload_never_raises(
    web_yml: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))

    def explode(_: str) -> WebConfig:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(loader, "load_web_config", explode)
    write(web_yml, users_yaml(bob=BOB_HASH))
    assert not watcher.maybe_reload()
    assert "reload failed: RuntimeError: disk on fire" in caplog.text
    assert set(watcher.config.basic_auth_users) == {"alice"}


async def test_checks_of_clients_that_left_are_dropped_unchecked(
    checkpw_calls: list[bytes],
) -> None:
    auth = BasicAuth({"alice": ALICE_HASH})
    try:
        gone = [auth.verify("alice", b"wrong", wanted=lambda: False) for _ in range(20)]
        here = auth.verify("alice", ALICE_PASSWORD.encode())
        verdicts = await asyncio.gather(*gone, here)
    finally:
        auth.close()
    assert verdicts == [Verdict.DENIED] * 20 + [Verdict.ALLOWED]
    assert checkpw_calls == [ALICE_HASH.encode()]


async def test_a_full_bcrypt_queue_answers_busy(checkpw_calls: list[bytes]) -> None:
    auth = BasicAuth({"alice": ALICE_HASH}, max_waiting=3)
    try:
        verdicts = await asyncio.gather(*(auth.verify("alice", b"wrong") for _ in range(5)))
    finally:
        auth.close()
    assert verdicts.count(Verdict.BUSY) == 2
    assert verdicts.count(Verdict.DENIED) == 3


async def test_a_full_queue_first_sheds_the_clients_that_left(
    checkpw_calls: list[bytes],
) -> None:
    auth = BasicAuth({"alice": ALICE_HASH}, max_waiting=3)
    try:
        gone = [auth.verify("alice", b"wrong", wanted=lambda: False) for _ in range(3)]
        verdicts = await asyncio.gather(*gone, auth.verify("alice", ALICE_PASSWORD.encode()))
    finally:
        auth.close()
    assert verdicts[-1] is Verdict.ALLOWED


@pytest.mark.parametrize(
    "caught_mid_write", ["", "basic_auth_users:\n", "basic_auth_users: {}\n"], ids=repr
)
async def test_a_reload_that_would_remove_authentication_keeps_the_users(
    web_yml: Path,
    make_watcher: Callable[[Path], WebConfigWatcher],
    caplog: pytest.LogCaptureFixture,
    caught_mid_write: str,
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    async with http_client(watcher) as client:
        write(web_yml, caught_mid_write)
        assert (await client.get("/metrics")).status == 401
        assert (await client.get("/metrics", headers=basic("alice", ALICE_PASSWORD))).status == 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert ["removing authentication needs a restart" in r.getMessage() for r in warnings] == [True]


def test_reload_now_reports_a_broken_file_in_one_line(
    web_yml: Path, make_watcher: Callable[[Path], WebConfigWatcher]
) -> None:
    watcher = make_watcher(write(web_yml, users_yaml(alice=ALICE_HASH)))
    write(web_yml, "basic_auth_users:\n  alice: not-a-hash\n")
    problem = watcher.reload()
    assert problem is not None
    assert "basic_auth_users.alice: not a bcrypt hash" in problem
    write(web_yml, users_yaml(bob=BOB_HASH))
    assert watcher.reload() is None
    assert set(watcher.config.basic_auth_users) == {"bob"}
