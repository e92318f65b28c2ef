"""The local API's gate on a real server on 127.0.0.1: Host, Origin, key, JSON, size.

No model is needed: the gate refuses before any route runs, and the routes answer 404 for
a model the (empty) library does not have. schemathesis fuzzes /openapi.json here too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema_rs
import pytest

from app.api.security import host_name
from app.api.server import ApiServer, ServeConfig
from app.paths import hearth_paths
from app.store.db import open_database

KEY = "hearth-test-key-0123456789abcdef"
TRUSTED = "http://localhost:3000"
SCHEMAS = Path(__file__).parent / "data" / "openai"
ERROR = jsonschema_rs.validator_for(json.loads((SCHEMAS / "error.json").read_text()))
CHAT = {"model": "any", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    paths = hearth_paths({"HEARTH_HOME": str(tmp_path_factory.mktemp("api-empty"))}).ensure()
    srv = ApiServer(
        ServeConfig(port=0, key=KEY, allowed_origins=(TRUSTED,), max_body_bytes=64 * 1024),
        open_db=lambda: open_database(paths.database),
    )
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def http(server: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10
    ) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    ERROR.validate(body)
    assert body["error"]["code"] == code


def test_the_key_is_required_on_every_route(server: ApiServer) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as anonymous:
        for response in (
            anonymous.get("/v1/models"),
            anonymous.get("/openapi.json"),
            anonymous.post("/v1/chat/completions", json=CHAT),
            anonymous.get("/v1/models", headers={"Authorization": "Bearer wrong"}),
            anonymous.get("/v1/models", headers={"Authorization": KEY}),  # no scheme
        ):
            assert_error(response, 401, "invalid_api_key")
            assert response.headers["www-authenticate"] == "Bearer"


def test_a_foreign_host_is_refused_against_dns_rebinding(http: httpx.Client) -> None:
    response = http.get("/v1/models", headers={"Host": "attacker.example:4567"})
    assert_error(response, 403, "host_not_allowed")
    for host in ("localhost:1", "127.0.0.1", "[::1]:4567", "LOCALHOST"):
        assert http.get("/v1/models", headers={"Host": host}).status_code == 200, host


def test_an_empty_host_is_a_bad_request(http: httpx.Client) -> None:
    assert_error(http.get("/v1/models", headers={"Host": ""}), 400, "missing_host")


def test_host_header_parsing() -> None:
    assert host_name("[::1]:80") == "::1"
    assert host_name("Example.COM.") == "example.com"
    assert host_name("a@b") is None
    assert host_name("[::1") is None
    assert host_name("host:port") is None


def test_a_foreign_origin_is_refused_and_gets_no_cors_headers(http: httpx.Client) -> None:
    response = http.post(
        "/v1/chat/completions", json=CHAT, headers={"Origin": "https://evil.example"}
    )
    assert_error(response, 403, "origin_not_allowed")
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-origin" not in http.get("/v1/models").headers


def test_cors_preflight_from_a_foreign_origin_gets_no_allow_header(server: ApiServer) -> None:
    preflight = {
        "Origin": "https://evil.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type",
    }
    response = httpx.options(f"{server.url}/v1/chat/completions", headers=preflight, timeout=10)
    assert response.status_code == 403
    assert not any(h.startswith("access-control-") for h in response.headers)


def test_a_trusted_origin_gets_cors_and_still_needs_the_key(server: ApiServer) -> None:
    preflight = httpx.options(
        f"{server.url}/v1/models",
        headers={"Origin": TRUSTED, "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == TRUSTED
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    anonymous = httpx.get(f"{server.url}/v1/models", headers={"Origin": TRUSTED}, timeout=10)
    assert anonymous.status_code == 401
    keyed = httpx.get(
        f"{server.url}/v1/models",
        headers={"Origin": TRUSTED, "Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert keyed.status_code == 200
    assert keyed.headers["access-control-allow-origin"] == TRUSTED


def test_a_text_plain_post_is_refused_before_it_reaches_a_model(http: httpx.Client) -> None:
    # The "simple request" a web page can send without a preflight.
    response = http.post(
        "/v1/chat/completions", content=json.dumps(CHAT), headers={"Content-Type": "text/plain"}
    )
    assert_error(response, 415, "unsupported_media_type")
    form = http.post("/v1/chat/completions", data={"model": "x"})
    assert_error(form, 415, "unsupported_media_type")


def test_a_body_over_the_cap_is_refused(http: httpx.Client) -> None:
    big = {**CHAT, "messages": [{"role": "user", "content": "x" * 70_000}]}
    assert_error(http.post("/v1/chat/completions", json=big), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the cap counts what arrives
        yield b'{"model": "x", "messages": [{"role": "user", "content": "'
        for _ in range(80):
            yield b"y" * 1024
        yield b'"}]}'

    streamed = http.post(
        "/v1/chat/completions", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_error(streamed, 413, "body_too_large")


def test_an_unknown_model_is_a_404_in_openai_s_envelope(http: httpx.Client) -> None:
    assert_error(http.post("/v1/chat/completions", json=CHAT), 404, "model_not_found")
    assert_error(
        http.post("/v1/completions", json={"model": "x", "prompt": "a"}), 404, "model_not_found"
    )
    assert_error(
        http.post("/v1/embeddings", json={"model": "x", "input": "a"}), 404, "model_not_found"
    )


def test_an_invalid_request_is_a_400_naming_the_field(http: httpx.Client) -> None:
    response = http.post("/v1/chat/completions", json={**CHAT, "temperature": 9})
    assert_error(response, 400, "invalid_request")
    assert response.json()["error"]["param"] == "temperature"
    assert_error(
        http.post(
            "/v1/chat/completions", content=b"{", headers={"Content-Type": "application/json"}
        ),
        400,
        "invalid_request",
    )


def test_there_are_no_pull_or_delete_routes(http: httpx.Client) -> None:
    paths = set(http.get("/openapi.json").json()["paths"])
    assert paths == {
        "/v1/models",
        "/v1/models/{model_id}",
        "/v1/chat/completions",
        "/v1/completions",
        "/v1/embeddings",
        "/v1/images/generations",
    }
    assert http.delete("/v1/models/x").status_code == 405
    assert_error(http.get("/api/pull"), 404, "http_404")


def test_schemathesis_finds_no_server_error_or_schema_violation(
    server: ApiServer, tmp_path: Path
) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("schemathesis")),
            "run",
            f"{server.url}/openapi.json",
            "-H",
            f"Authorization: Bearer {KEY}",
            "--checks",
            "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples",
            "10",
            "--phases",
            "fuzzing",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,  # its cache folder (.schemathesis/) goes there, not into the checkout
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
