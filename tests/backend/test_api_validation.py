"""Bad requests get 4xx with the field and the reason; every mutating route needs the token."""

from __future__ import annotations

import re

import httpx
import pytest
from backend_fixture import Backend, new_token

from flowerbed.api.main import create_app
from flowerbed.settings import Settings

# (payload, field named in `loc`)
INVALID = [
    ({"model": "vgg"}, "model"),
    ({"strategy": "fedsgd"}, "strategy"),
    ({"selection": "greedy"}, "selection"),
    ({"dp": "global"}, "dp"),
    ({"dp_delta": 1.0}, "dp_delta"),
    ({"compression": "zip"}, "compression"),
    ({"compression_ratio": 0}, "compression_ratio"),
    ({"trim_beta": 0.5}, "trim_beta"),
    # invalid combinations: domain rules from RunSettings, named by their field
    ({"dp": "local", "compression": "topk"}, "compression"),
    ({"strategy": "krum", "krum_num_malicious": 1, "min_nodes": 2}, "krum_num_malicious"),
    ({"num_rounds": 0}, "num_rounds"),
    ({"num_rounds": 1001}, "num_rounds"),
    ({"num_rounds": "three"}, "num_rounds"),
    ({"num_rounds": 2.5}, "num_rounds"),
    ({"num_rounds": True}, "num_rounds"),
    ({"fraction_train": 0}, "fraction_train"),
    ({"fraction_train": 1.5}, "fraction_train"),
    ({"fraction_evaluate": -0.1}, "fraction_evaluate"),
    ({"min_nodes": 0}, "min_nodes"),
    ({"min_available_nodes": 0}, "min_available_nodes"),
    ({"min_nodes": 3, "min_available_nodes": 2}, "min_available_nodes"),  # domain rule from RunSettings
    ({"partitioner": "shards"}, "partitioner"),
    ({"alpha": 0}, "alpha"),
    ({"learning_rate": -1}, "learning_rate"),
    ({"momentum": 1.0}, "momentum"),
    ({"momentum": -0.5}, "momentum"),
    ({"local_epochs": 0}, "local_epochs"),
    ({"local_epochs": 101}, "local_epochs"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 5000}, "batch_size"),
    ({"seed": -1}, "seed"),
    ({"round_timeout": 0}, "round_timeout"),
    ({"node_wait_timeout": -3}, "node_wait_timeout"),
    ({"evaluate_every": -1}, "evaluate_every"),
    ({"max_train_examples": -1}, "max_train_examples"),
    ({"from_checkpoint": "nope"}, "from_checkpoint"),  # malformed model id
    ({"from_checkpoint": "abc123-round-0007"}, "from_checkpoint"),  # well-formed, unknown
    ({"from_checkpoint": 12}, "from_checkpoint"),
    ({"learning_rat": 0.1}, "learning_rat"),  # typo: extra fields are forbidden
]


@pytest.mark.parametrize(("payload", "field"), INVALID, ids=[f"{f}-{i}" for i, (_, f) in enumerate(INVALID)])
def test_invalid_training_config_is_422_naming_the_field(backend: Backend, payload: dict, field: str) -> None:
    with backend.client() as client:
        response = client.post("/training/start", json=payload)
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list) and detail
    assert any(error["loc"] == ["body", field] for error in detail), detail
    assert all(error["msg"] for error in detail)


def test_malformed_json_and_non_object_bodies_are_422(backend: Backend) -> None:
    with backend.client() as client:
        for body in (b"{not json", b"[1, 2]", b'"text"', b"NaN"):
            response = client.post("/training/start", content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 422, (body, response.text)
            assert response.json()["detail"][0]["loc"][0] == "body"
        response = client.post(
            "/training/start", content=b'{"round_timeout": Infinity}', headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "round_timeout"]


def test_unknown_run_and_model_are_404_and_bad_filters_422(backend: Backend) -> None:
    with backend.client() as client:
        for path in ("/training/nope", "/training/nope/logs", "/training/nope/events"):
            response = client.get(path)
            assert response.status_code == 404
            assert response.json() == {"detail": "run nope not found"}
        assert client.post("/training/nope/stop").json() == {"detail": "run nope not found"}
        assert client.get("/models/abc-round-0001").status_code == 404
        assert client.get("/models/abc-round-0001/download").status_code == 404
        assert client.get("/models/not-a-model").status_code == 422
        assert client.get("/training", params={"status": "exploded"}).status_code == 422
        assert client.get("/training", params={"limit": 0}).status_code == 422
        assert client.get("/models", params={"run_id": "../etc"}).status_code == 422


def _mutating_routes() -> list[tuple[str, str]]:
    """Every (method, path) of the app that changes state: new routes are covered automatically."""
    app = create_app(Settings(api_token=new_token(), data_dir="/tmp/flowerbed-route-listing"))  # not started: no DB opened
    routes = []
    for path, methods in _walk(app.routes):
        for method in sorted(methods - {"GET", "HEAD", "OPTIONS"}):
            routes.append((method, re.sub(r"\{[^}]+\}", "someid", path)))
    return sorted(set(routes))


def _walk(routes: list) -> list[tuple[str, set[str]]]:
    """(path, methods) of plain routes and of routers included lazily (FastAPI >= 0.13x)."""
    found = []
    for route in routes:
        if hasattr(route, "effective_candidates"):
            found += _walk(route.effective_candidates())
            continue
        original = getattr(route, "original_route", route)
        methods = getattr(original, "methods", None)
        if methods:
            found.append((getattr(route, "path", "") or original.path, set(methods)))
    return found


MUTATING = _mutating_routes()


def test_there_are_mutating_routes_to_check() -> None:
    assert ("POST", "/training/start") in MUTATING
    assert ("POST", "/training/someid/stop") in MUTATING
    assert ("POST", "/training/someid/resume") in MUTATING
    assert ("DELETE", "/training/someid") in MUTATING
    assert ("POST", "/auth/login-codes") in MUTATING


@pytest.mark.parametrize(("method", "path"), MUTATING)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", "Basic dXNlcjpwdw==", "Bearer"])
def test_mutating_routes_need_the_token(backend: Backend, method: str, path: str, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.request(method, backend.base_url + path, headers=headers, json={}, timeout=30)
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["detail"].startswith("missing or invalid bearer token — pass 'Authorization: Bearer <token>'")


def test_reads_are_open_and_health_ready_work(backend: Backend) -> None:
    assert httpx.get(backend.base_url + "/training").status_code == 200
    assert httpx.get(backend.base_url + "/health").json() == {"status": "ok"}
    assert httpx.get(backend.base_url + "/ready").json() == {"database": True, "superlink": True}
    nodes = httpx.get(backend.base_url + "/nodes").json()["items"]
    assert len(nodes) == 2 and all(isinstance(n["node_id"], str) for n in nodes)
    schema = httpx.get(backend.base_url + "/training/schema").json()
    assert schema["properties"]["num_rounds"]["maximum"] == 1000
    assert schema["additionalProperties"] is False
