"""The compiled part of the atom: the model protector, a Cython extension.

Everything else about the package is in pyproject.toml; this file only declares the
extension, for every way of building it:

    pip install -e .                      a checkout: the module lands next to its .pyx
    pip wheel --no-deps -w dist .         a wheel holding the module, not the .pyx or .c
    python setup.py build_ext --inplace   in place, with this Python's Cython (make, the hook)

pip gets Cython and setuptools itself (``[build-system]`` of pyproject.toml); the in-place
build needs them installed (requirements-dev.txt). The generated C file stays in build/.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

PACKAGE = {{ cookiecutter.package_name | tojson }}
PROTECTOR = Extension(
    f"{PACKAGE}.protection.model_protector",
    [f"{PACKAGE}/protection/model_protector.pyx"],
    extra_compile_args=["-O2", "-g0"],
)

setup(ext_modules=cythonize([PROTECTOR], build_dir="build/cython", language_level=3, quiet=True))
