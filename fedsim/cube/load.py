"""Load a cube from whichever file declares it: ``mlcube.yaml`` or MedPerf's ``container_config.yaml``.

The one place that looks at a file's format; everything after it sees only :class:`~fedsim.cube.spec.CubeSpec`.
"""

from __future__ import annotations

from pathlib import Path

from fedsim.cube.container_config import CONTAINER_CONFIG_FILE, is_container_config, load_container_config
from fedsim.cube.mlcube import load_mlcube
from fedsim.cube.spec import MLCUBE_FILE, CallConvention, CubeSpec, ImageKind, ImageSource
from fedsim.errors import SpecError


def load_cube(path: Path, workspace: Path | None = None) -> CubeSpec:
    """A cube directory (holding ``mlcube.yaml`` or ``container_config.yaml``) or the file itself.

    ``workspace`` is MLCube's ``--workspace``; a container config has none (its files lie beside it), so giving
    one for it is an error rather than an option that silently does nothing.
    """
    path = Path(path)
    if path.is_dir() and (path / MLCUBE_FILE).is_file() and (path / CONTAINER_CONFIG_FILE).is_file():
        raise SpecError(
            f"{path} holds both {MLCUBE_FILE} and {CONTAINER_CONFIG_FILE}; fix: give the path of the one to use",
            file=str(path),
        )
    if path.is_dir() and not (path / MLCUBE_FILE).exists() and not (path / CONTAINER_CONFIG_FILE).exists():
        raise SpecError(
            f"no {MLCUBE_FILE} or {CONTAINER_CONFIG_FILE} in {path}; fix: give a cube directory or the file itself",
            file=str(path / MLCUBE_FILE),
        )
    if is_container_config(path):
        if workspace is not None:
            raise SpecError(
                "a workspace cannot take effect for a container config (its parameters and additional files lie "
                "beside it); fix: drop the workspace option",
                file=str(path),
            )
        return load_container_config(path)
    return load_mlcube(path, workspace)


def image_only_cube(name: str, image: str, contract: str = "fets2022") -> CubeSpec:
    """A submission given as a bare image, called by the benchmark's ``image_contract``: ``fets2022`` (the FeTS
    MLCube arguments: ``infer --data_path=... --output_path=...``) or ``medperf`` (MedPerf's model template:
    the data at ``/mlcommons/volumes/data``, predictions to ``/mlcommons/volumes/predictions``, the image's own
    command)."""
    if contract == "medperf":
        return CubeSpec.model_validate(
            {
                "name": name,
                "docker": {"image": image, "build_strategy": "pull"},
                "tasks": {
                    "infer": {
                        "parameters": {
                            "inputs": {
                                "data_path": {"type": "directory", "opts": "ro", "mount_path": MEDPERF_DATA},
                            },
                            "outputs": {
                                "output_path": {"type": "directory", "opts": "rw", "mount_path": MEDPERF_PREDICTIONS},
                            },
                        }
                    }
                },
                "convention": CallConvention.MOUNT_PATHS,
                "image_source": {"kind": ImageKind.REGISTRY, "location": image},
                "spec_file": "<image>",
            }
        )
    return CubeSpec.model_validate(
        {
            "name": name,
            "docker": {"image": image, "build_strategy": "pull"},
            "tasks": {
                "infer": {
                    "parameters": {
                        "inputs": {"data_path": {"type": "directory", "default": "data/"}},
                        "outputs": {"output_path": {"type": "directory", "default": "predictions/"}},
                    }
                }
            },
        }
    )


MEDPERF_DATA = "/mlcommons/volumes/data"
MEDPERF_PREDICTIONS = "/mlcommons/volumes/predictions"


def with_image_settings(
    cube: CubeSpec, key: Path | None, digest: str | None, file: Path | None, field: str
) -> CubeSpec:
    """The cube with what the benchmark says of its image: the decryption key of an encrypted one and an expected
    digest. A key for an image that is not encrypted, or none for one that is, cannot be right: one-line errors."""
    src = cube.image_source
    encrypted = src is not None and src.encrypted
    where = str(file) if file else None
    if key is not None and not encrypted:
        raise SpecError(
            f"a decryption key cannot take effect: {cube.name!r}'s image is not encrypted; fix: remove it",
            file=where,
            field=f"{field}.decryption_key",
        )
    if encrypted and key is None:
        raise SpecError(
            f"{cube.name!r} is an encrypted image ({cube.spec_file}) and no decryption key is given; fix: add "
            "'decryption_key: FILE' to the model, or --decryption-key MODEL=FILE",
            file=where,
            field=f"{field}.decryption_key",
        )
    if digest is None and key is None:
        return cube
    if src is None:  # an MLCube: its docker image is the one a digest can pin
        ref = cube.image_ref
        if ref is None:
            raise SpecError(
                f"image_digest cannot take effect: {cube.name!r} has no docker image", file=where, field=field
            )
        src = ImageSource(kind=ImageKind.REGISTRY, location=ref)
    update = {"digest": digest or src.digest, "decryption_key": key}
    return cube.model_copy(update={"image_source": src.model_copy(update=update)})


__all__ = ["MEDPERF_DATA", "MEDPERF_PREDICTIONS", "image_only_cube", "load_cube", "with_image_settings"]
