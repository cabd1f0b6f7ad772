"""Builds crosswire's one optional C extension; everything else is in pyproject.toml.

``src/crosswire/adapters/_picows_read.py`` is written for Cython's pure-Python mode (its
``.pxd`` gives the C types): compiled, picows' ``on_ws_frame`` reaches crosswire without a
Python frame. The build needs Cython and picows (``[build-system] requires``) and a C
compiler. Without a compiler, when Cython cannot translate it, or with
``CROSSWIRE_NO_EXTENSIONS=1``, crosswire installs without it and runs the same file as
Python. The extension carries what it was built from (``_build_stamp.py``): the adapter uses
it only with that picows release and that source.
"""

import importlib.util
import os
from importlib.metadata import version
from pathlib import Path

from setuptools import Extension, setup

ADAPTERS = Path("src", "crosswire", "adapters")


def build_stamp() -> str:
    """``_build_stamp.build_stamp`` for the picows of this build (the file is loaded alone:
    crosswire's package cannot be imported here)."""
    spec = importlib.util.spec_from_file_location("_build_stamp", ADAPTERS / "_build_stamp.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    stamp: str = module.build_stamp(version("picows"), ADAPTERS)
    return stamp


def extensions() -> list[Extension]:
    if os.environ.get("CROSSWIRE_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize

        stamp = build_stamp()
        module = Extension(
            "crosswire.adapters._picows_read",
            [str(ADAPTERS / "_picows_read.py")],
            define_macros=[("CROSSWIRE_BUILT_FOR", f'"{stamp}"')],
            optional=True,  # a C compiler that fails: installed without it
        )
        # The generated C goes to build/, not beside the source: setuptools would put a .c in
        # the package folder into the wheel as package data.
        return cythonize(
            [module],
            compiler_directives={"language_level": 3},
            build_dir="build/cython",
            quiet=True,
        )
    except Exception as exc:  # no Cython or picows (a build without isolation), or Cython failed
        print(f"crosswire: building without the C extension ({exc!r})")
        return []


setup(ext_modules=extensions())
