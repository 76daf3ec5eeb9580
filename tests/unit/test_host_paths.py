"""Host-path translation for a fedsim that runs in a container next to the host's Docker engine (pure)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import pytest

from fedsim.errors import RuntimeUnavailable, SpecError
from fedsim.runtimes.paths import (
    HostPaths,
    PathMapping,
    host_paths,
    mappings_from_mounts,
    own_container_id,
    parse_host_root,
)

CID = "3f" * 32


def test_parse_host_root_pairs_like_docker_run_v() -> None:
    assert parse_host_root("/srv/fedsim:/work") == (PathMapping(PurePosixPath("/srv/fedsim"), PurePosixPath("/work")),)
    two = parse_host_root(" /srv/a/ : /work , /mnt/data:/data/ ")
    assert [(str(m.host), str(m.container)) for m in two] == [("/srv/a", "/work"), ("/mnt/data", "/data")]
    assert parse_host_root("") == () and parse_host_root("none") == () and parse_host_root("NONE") == ()


@pytest.mark.parametrize("bad", ["/srv/fedsim", "srv:/work", "/srv:work", "/a:/b:/c", ":/work"])
def test_parse_host_root_rejects_what_is_not_host_container(bad: str) -> None:
    with pytest.raises(SpecError, match="FEDSIM_HOST_ROOT"):
        parse_host_root(bad)


def test_translation_uses_the_longest_container_prefix() -> None:
    hp = HostPaths(parse_host_root("/srv/work:/work,/fast/runs:/work/runs"), origin="test")
    assert hp.to_host("/work/cache/site_a/case1") == "/srv/work/cache/site_a/case1"
    assert hp.to_host("/work/runs/r1/sites/s0/prepared") == "/fast/runs/r1/sites/s0/prepared"
    assert hp.to_host("/work/runs") == "/fast/runs"
    assert hp.to_host("/work/runs/../cache") == "/srv/work/cache"  # normalised before matching
    with pytest.raises(RuntimeUnavailable):  # a prefix is a whole path component, not a string prefix
        hp.to_host("/workshop/x")


def test_a_path_under_no_mount_is_an_error_naming_it() -> None:
    hp = HostPaths(parse_host_root("/srv/work:/work"), origin="FEDSIM_HOST_ROOT")
    with pytest.raises(
        RuntimeUnavailable, match=r"/opt/fedsim/data is not under any directory mounted.*/srv/work:/work"
    ):
        hp.to_host("/opt/fedsim/data")


def test_no_mapping_is_the_identity() -> None:
    assert HostPaths().to_host("/anything/at/all") == "/anything/at/all"


def test_mappings_from_inspect_mounts_skip_the_socket_and_tmpfs() -> None:
    mounts = [
        {"Type": "bind", "Source": "/var/run/docker.sock", "Destination": "/var/run/docker.sock"},
        {"Type": "bind", "Source": "/home/me/fedsim", "Destination": "/work", "RW": True},
        {"Type": "volume", "Name": "cache", "Source": "/var/lib/docker/volumes/cache/_data", "Destination": "/cache"},
        {"Type": "tmpfs", "Destination": "/tmp"},
    ]
    hp = HostPaths(mappings_from_mounts(mounts))
    assert hp.to_host("/work/runs/x") == "/home/me/fedsim/runs/x"
    assert hp.to_host("/cache/a") == "/var/lib/docker/volumes/cache/_data/a"


def test_own_container_id_from_mountinfo_else_hostname() -> None:
    line = f"612 590 8:1 /var/lib/docker/containers/{CID}/hostname /etc/hostname rw,relatime - ext4 /dev/sda1 rw\n"
    assert own_container_id("1 0 0:1 / / rw\n" + line, "myhost") == CID
    assert own_container_id("1 0 0:1 / / rw\n", "abc123") == "abc123"
    assert own_container_id("", "") is None


class _Api:
    def __init__(self, attrs: dict[str, Any] | None) -> None:
        self.attrs = attrs

    def inspect_container(self, cid: str) -> dict[str, Any]:
        if self.attrs is None:
            raise LookupError(cid)
        return self.attrs


class _Client:
    def __init__(self, attrs: dict[str, Any] | None) -> None:
        self.api = _Api(attrs)


def test_environment_wins_over_discovery() -> None:
    hp = host_paths(_Client(None), {"FEDSIM_HOST_ROOT": "/srv:/work"})
    assert hp.to_host("/work/a") == "/srv/a" and hp.origin == "FEDSIM_HOST_ROOT"
    assert host_paths(_Client(None), {"FEDSIM_HOST_ROOT": "none"}).to_host("/x") == "/x"


def test_discovery_reads_the_own_container_mounts(monkeypatch: pytest.MonkeyPatch) -> None:
    import fedsim.runtimes.paths as paths

    monkeypatch.setattr(paths, "in_container", lambda root=None: True)
    monkeypatch.setattr(paths.socket, "gethostname", lambda: "orch")
    attrs = {"Config": {"Hostname": "orch"}, "Mounts": [{"Type": "bind", "Source": "/h/w", "Destination": "/work"}]}
    assert host_paths(_Client(attrs), {}).to_host("/work/runs") == "/h/w/runs"
    # a container of another name, or an engine that does not know us: no translation
    other = {"Config": {"Hostname": "someone-else"}, "Mounts": attrs["Mounts"]}
    assert host_paths(_Client(other), {}).to_host("/work/runs") == "/work/runs"
    assert host_paths(_Client(None), {}).to_host("/work/runs") == "/work/runs"
