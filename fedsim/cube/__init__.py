"""MLCube support: ``mlcube.yaml`` parsing and MLCube's task invocation scheme."""

from fedsim.cube.invocation import BoundParameter, Invocation, Isolation, Mount, bind, container_mounts
from fedsim.cube.mlcube import CubeSpec, Parameter, image_only_cube, load_cube
from fedsim.cube.origin import CubeOrigin

__all__ = [
    "BoundParameter",
    "CubeOrigin",
    "CubeSpec",
    "Invocation",
    "Isolation",
    "Mount",
    "Parameter",
    "bind",
    "container_mounts",
    "image_only_cube",
    "load_cube",
]
