"""The image permission scan: the hardening of its container, its deadline, and which engine errors fall back.

A fake docker client stands in for the engine; ``tests/integration/test_check_submission.py`` runs the real scan.
"""

from __future__ import annotations

import io
import tarfile
from typing import Any

import pytest
import requests

from fedsim.errors import RuntimeUnavailable
from fedsim.spec.models import DEFAULT_MAX_PIDS
from fedsim.submission import image

docker = pytest.importorskip("docker")


def test_the_scan_container_has_the_infer_hardening() -> None:
    cfg = image.scan_config("sub:1", (65534, 65534), {"fedsim.check": "k"})
    assert cfg["entrypoint"] == ["find"] and cfg["user"] == "65534:65534"
    assert cfg["network_mode"] == "none"
    assert cfg["cap_drop"] == ["ALL"] and cfg["security_opt"] == ["no-new-privileges"]
    assert cfg["pids_limit"] == DEFAULT_MAX_PIDS
    assert cfg["mem_limit"] == cfg["memswap_limit"] == image.SCAN_RAM_BYTES
    assert cfg["read_only"] is True and "size=" in cfg["tmpfs"]["/tmp"] and "nosuid" in cfg["tmpfs"]["/tmp"]
    assert cfg["init"] is True and "mounts" not in cfg and "volumes" not in cfg
    assert cfg["labels"] == {"fedsim": "1", "fedsim.check": "k"}


class FakeContainer:
    def __init__(self, client: FakeClient, *, start_error: Exception | None = None) -> None:
        self.client = client
        self.start_error = start_error
        self.removed = self.killed = False

    def start(self) -> None:
        if self.start_error is not None:
            raise self.start_error

    def wait(self, timeout: float) -> dict[str, int]:
        self.client.waited_with = timeout
        if self.client.hang:
            raise requests.exceptions.ReadTimeout("read timed out")
        return {"StatusCode": self.client.code}

    def logs(self, stdout: bool, stderr: bool) -> bytes:
        return (self.client.out if stdout else self.client.err).encode()

    def kill(self) -> None:
        self.killed = True

    def remove(self, force: bool) -> None:
        self.removed = True

    def export(self) -> list[bytes]:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("mlcube_project/weights.bin")
            info.mode, info.uid, info.gid, info.size = 0o600, 0, 0, 0
            tar.addfile(info, io.BytesIO(b""))
        return [buf.getvalue()]


class FakeContainers:
    def __init__(self, client: FakeClient) -> None:
        self.client = client

    def create(self, *args: Any, **kwargs: Any) -> FakeContainer:
        if kwargs.get("entrypoint") == ["find"]:
            self.client.scan_kwargs = kwargs
            if self.client.create_error is not None:
                raise self.client.create_error
            c = FakeContainer(self.client, start_error=self.client.start_error)
        else:
            self.client.exported = True
            c = FakeContainer(self.client)
        self.client.made.append(c)
        return c


class FakeClient:
    def __init__(self, **kw: Any) -> None:
        self.code, self.out, self.err, self.hang = 0, "", "", False
        self.create_error: Exception | None = None
        self.start_error: Exception | None = None
        self.__dict__.update(kw)
        self.containers = FakeContainers(self)
        self.made: list[FakeContainer] = []
        self.exported = False
        self.scan_kwargs: dict[str, Any] = {}
        self.waited_with: float | None = None


def _scan(client: FakeClient) -> list[str]:
    return image.unreadable_files(client, "sub:1", (65534, 65534), {})


def test_find_lists_unreadable_files_under_its_deadline() -> None:
    client = FakeClient(code=1, out="/mlcube_project/w.bin\n/etc/shadow\n", err="find: '/root': Permission denied\n")
    assert _scan(client) == ["/mlcube_project/w.bin"]
    assert client.waited_with == image.SCAN_TIMEOUT_S and client.scan_kwargs["cap_drop"] == ["ALL"]
    assert not client.exported and all(c.removed for c in client.made)


def test_no_find_in_the_image_falls_back_to_the_export() -> None:
    missing = docker.errors.APIError('exec: "find": executable file not found in $PATH: unknown')
    client = FakeClient(start_error=missing)
    assert _scan(client) == ["/mlcube_project/weights.bin"]
    assert client.exported and all(c.removed for c in client.made)


def test_a_find_that_cannot_scan_falls_back_to_the_export() -> None:
    """busybox's find rejects -readable: exit 1 with no 'Permission denied' lines is not an empty answer."""
    client = FakeClient(code=1, err="find: unrecognized: -readable\n")
    assert _scan(client) == ["/mlcube_project/weights.bin"]


def test_other_engine_errors_are_reported_not_read_as_no_find() -> None:
    client = FakeClient(create_error=docker.errors.APIError("500 Server Error: no space left on device"))
    with pytest.raises(RuntimeUnavailable, match="no space left on device"):
        _scan(client)
    assert not client.exported


def test_a_scan_past_its_deadline_is_killed_and_fails_the_check() -> None:
    client = FakeClient(hang=True)
    with pytest.raises(image.ScanTimeout):
        _scan(client)
    assert client.made[0].killed and client.made[0].removed
    check = image.permissions_check(FakeClient(hang=True), "sub:1", (65534, 65534), {})
    assert check.status.value == "failed" and "deadline" in check.cause
