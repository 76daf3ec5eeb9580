"""Run directory layout and durable writes."""

from fedsim.store.atomic import write_bytes_atomic, write_json_atomic, write_text_atomic, write_yaml_atomic
from fedsim.store.rundir import RunDirectory, SiteDirectory, new_run_id

__all__ = [
    "RunDirectory",
    "SiteDirectory",
    "new_run_id",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
    "write_yaml_atomic",
]
