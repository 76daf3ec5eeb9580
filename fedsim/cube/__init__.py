"""Cubes: one container spec (:mod:`.spec`) parsed from ``mlcube.yaml`` (:mod:`.mlcube`) or MedPerf's
``container_config.yaml`` (:mod:`.container_config`), and the binding of a task to host paths (:mod:`.invocation`)."""

from fedsim.cube.invocation import BoundParameter, Invocation, Isolation, Mount, bind, container_mounts
from fedsim.cube.load import image_only_cube, load_cube, with_image_settings
from fedsim.cube.origin import CubeOrigin
from fedsim.cube.spec import CallConvention, CubeSpec, ImageKind, ImageSource, Parameter

__all__ = [
    "BoundParameter",
    "CallConvention",
    "CubeOrigin",
    "CubeSpec",
    "ImageKind",
    "ImageSource",
    "Invocation",
    "Isolation",
    "Mount",
    "Parameter",
    "bind",
    "container_mounts",
    "image_only_cube",
    "load_cube",
    "with_image_settings",
]
