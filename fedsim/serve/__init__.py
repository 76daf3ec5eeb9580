"""``fedsim serve``: a read-only live web view of run directories (see :mod:`fedsim.serve.app`).

Kept import-light: the CLI imports :mod:`fedsim.serve.during`, which loads starlette and uvicorn only when a
server starts.
"""
