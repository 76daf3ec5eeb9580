"""Reading a finished task's file outputs back as MedPerf does, for cubes of the ``mount_paths`` convention.

MedPerf reads statistics' ``output_path`` (``commands/dataset/prepare.py``: "Statistics file is empty.") and
evaluate's ``output_path`` (``commands/execution/container_execution.py`` ``get_results``: "Results file does not
exist", "Results file is empty") with ``yaml.safe_load`` right after the container exits. A declared file output
is touched before the run, so a container that writes nothing leaves an empty file: a failed task, not a run
with no metrics. Invalid YAML, which MedPerf lets escape as a traceback, is a failure with its reason here.
"""

from __future__ import annotations

from fedsim.cube import Invocation
from fedsim.errors import SpecError
from fedsim.yamlsafe import safe_load_file

# task -> (key, MedPerf's name for the file)
READ_BACK = {"statistics": ("output_path", "Statistics"), "evaluate": ("output_path", "Results")}


def read_back_problem(inv: Invocation) -> str | None:
    """Why the task's file output is not what MedPerf accepts (None: it is, or nothing is read back)."""
    if not inv.mount_paths or inv.task not in READ_BACK:
        return None
    key, label = READ_BACK[inv.task]
    param = next((p for p in inv.parameters if p.name == key and p.io == "output"), None)
    if param is None or param.type != "file":
        return None
    if not param.host_path.is_file():
        return f"{label} file does not exist (MedPerf's words): {param.host_path}"
    try:
        data = safe_load_file(param.host_path, data_file=True)
    except SpecError as exc:
        return f"{label} file is not YAML: {exc}"
    if data is None:
        return f"{label} file is empty (MedPerf's words): the container wrote nothing to {param.host_path}"
    return None


__all__ = ["READ_BACK", "read_back_problem"]
