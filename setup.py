"""Build the Cython extensions; metadata lives in pyproject.toml."""
import os

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# (module, source): every hot loop of the project is one of these.
EXTENSIONS = [
    ("damoncore._regions", "src/damoncore/_regions.pyx"),
    ("damoncore._adapt", "src/damoncore/_adapt.pyx"),
    ("damoncore.linux._syscalls", "src/damoncore/linux/_syscalls.pyx"),
    ("damoncore.linux._frames", "src/damoncore/linux/_frames.pyx"),
    ("damoncore.ops._idle_sample", "src/damoncore/ops/_idle_sample.pyx"),
]

ext_modules = [
    Extension(
        name,
        [src],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=["-O3"],
    )
    for name, src in EXTENSIONS
    if os.path.exists(os.path.join(HERE, src))
]

setup(
    ext_modules=cythonize(
        ext_modules,
        language_level=3,
        compiler_directives={"boundscheck": False, "wraparound": False, "cdivision": True},
    ),
)
