"""Only the C extension is declared here; everything else is in pyproject.toml.

``optional=True``: without a C compiler the package installs without it and runs the
pure-Python loops (the same numbers, slower; see streams/native.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streams._native",
            ["streams/_native.c"],
            optional=True,
            extra_compile_args=["-O2", "-Wall", "-Wno-unused-parameter"],
        )
    ]
)
