"""The one place fedsim opens a Docker engine client, so "no engine" means one thing and reads as one line.

Every caller (the docker runtime, the singularity runtime's image conversion, the orphan sweep, the RAM probe of
``check-submission``, :func:`fedsim.runtimes.select.docker_available`) gets its client from :func:`docker_client`:
the client has answered a ping, and anything the SDK raises on the way (no socket, no permission, an old API,
a timeout — several unrelated exception types) arrives as :class:`RuntimeUnavailable`. Errors of later calls on
the client stay the SDK's ``docker.errors``: each caller knows what its call meant.
"""

from __future__ import annotations

import contextlib
from typing import Any

from fedsim.errors import RuntimeUnavailable

# Seconds an engine call may take before the client gives up (whole seconds, as the SDK types them), by use.
PROBE_TIMEOUT_S = 2  # "is there an engine?": a ping, answered at once when there is one
CONTAINERS_TIMEOUT_S = 10  # listing or removing containers
SWEEP_TIMEOUT_S = 30  # removing a run's leftover containers (the engine may be busy stopping them)
RUNTIME_TIMEOUT_S = 120  # builds, pulls, image exports and container waits of the runtimes


def docker_client(timeout_s: int = RUNTIME_TIMEOUT_S, *, client: Any = None) -> Any:
    """A Docker SDK client (``client`` when one is given, e.g. a test's) that answered a ping.

    Raises :class:`RuntimeUnavailable` ("no Docker engine answers: <the SDK's words>") when it cannot be made
    or does not answer; a client made here is closed before that.
    """
    made = None
    try:
        if client is None:
            import docker

            client = made = docker.from_env(timeout=timeout_s)
        client.ping()
    except Exception as exc:  # the SDK raises several unrelated types for "no engine"
        if made is not None:
            with contextlib.suppress(Exception):
                made.close()
        raise RuntimeUnavailable(f"no Docker engine answers: {exc}") from exc
    return client


__all__ = [
    "CONTAINERS_TIMEOUT_S",
    "PROBE_TIMEOUT_S",
    "RUNTIME_TIMEOUT_S",
    "SWEEP_TIMEOUT_S",
    "docker_client",
]
