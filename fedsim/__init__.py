"""fedsim: simulate a FeTS-style federated evaluation of segmentation models on one machine.

Kept deliberately light: the reference cubes import ``fedsim.metrics`` and friends inside
Debian-based images (pydantic 1.x, no typer), so nothing heavy is imported here.
"""

__version__ = "0.1.0"
