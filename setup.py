"""Builds crosswire's one optional C extension; everything else is in pyproject.toml.

``src/crosswire/adapters/_picows_read.py`` is written for Cython's pure-Python mode (its
``.pxd`` gives the C types): compiled, picows' ``on_ws_frame`` reaches crosswire without a
Python frame. The build needs Cython and picows (``[build-system] requires``) and a C
compiler. Without a compiler, or with ``CROSSWIRE_NO_EXTENSIONS=1``, crosswire installs
without it and runs the same file as Python.
"""

import os

from setuptools import Extension, setup


def extensions() -> list[Extension]:
    if os.environ.get("CROSSWIRE_NO_EXTENSIONS"):
        return []
    try:
        from Cython.Build import cythonize
    except ImportError:  # e.g. a build without isolation, in an environment without Cython
        print("crosswire: Cython is not installed; building without the C extension")
        return []
    source = "src/crosswire/adapters/_picows_read.py"
    module = Extension("crosswire.adapters._picows_read", [source], optional=True)
    return cythonize([module], compiler_directives={"language_level": 3}, quiet=True)


setup(ext_modules=extensions())
