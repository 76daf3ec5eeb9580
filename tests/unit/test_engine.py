"""The one docker client factory: a client that answers, else one ``RuntimeUnavailable`` line; and no module of
fedsim opens a client of its own."""

from __future__ import annotations

import re
from pathlib import Path

import docker
import pytest

import fedsim
from fedsim.errors import RuntimeUnavailable
from fedsim.runtimes import engine, select
from fedsim.runtimes.docker import DockerRuntime

# a port nobody listens on (TCP: the SDK's unix-socket adapter leaks its socket when the path is missing)
NO_ENGINE = "tcp://127.0.0.1:9"


def test_no_engine_at_docker_host_is_runtime_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)
    with pytest.raises(RuntimeUnavailable, match=r"^no Docker engine answers: "):
        engine.docker_client(engine.PROBE_TIMEOUT_S)
    assert select.docker_available.__wrapped__() is False  # the uncached probe says the same


def test_a_given_client_that_does_not_answer_is_runtime_unavailable() -> None:
    client = docker.DockerClient(base_url=NO_ENGINE, version="1.41", timeout=2)  # a version: no call yet
    with pytest.raises(RuntimeUnavailable, match=r"^no Docker engine answers: "):
        engine.docker_client(client=client)
    with pytest.raises(RuntimeUnavailable, match=r"^no Docker engine answers: "):
        DockerRuntime(client)  # the runtime's own refusal is the factory's


@pytest.mark.docker
def test_a_running_engine_gives_a_client_with_the_asked_timeout() -> None:
    client = engine.docker_client(engine.CONTAINERS_TIMEOUT_S)
    try:
        assert client.api.timeout == engine.CONTAINERS_TIMEOUT_S
        assert client.ping() is True
    finally:
        client.close()
    assert select.docker_available.__wrapped__() is True


def test_only_the_factory_opens_a_client() -> None:
    root = Path(fedsim.__file__).parent
    opening = re.compile(r"\bfrom_env\(|\bDockerClient\(|\bAPIClient\(")
    found = {str(p.relative_to(root)) for p in root.rglob("*.py") if opening.search(p.read_text(encoding="utf-8"))}
    assert found == {"runtimes/engine.py"}
