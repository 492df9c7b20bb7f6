"""Compile the model protector in place: ``python build_protector.py``.

``{{ cookiecutter.package_name }}/dependency/model_protector.pyx`` becomes
``model_protector.<python tag>.so`` next to it, for the Python that runs this script. The
post-gen hook, ``make protector`` and the image's builder stage run it. The generated C
file and the build folder are temporary; the ``.so`` is all that the atom needs.
Needs Cython and setuptools (requirements-dev.txt), a C compiler and the Python headers.
"""

import os
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = {{ cookiecutter.package_name | tojson }}
MODULE = f"{PACKAGE}.dependency.model_protector"
SOURCE = Path(PACKAGE, "dependency", "model_protector.pyx")
INSTALL_HINT = (
    "the protector needs Cython and setuptools (pip install -r requirements-dev.txt), "
    "a C compiler and the Python headers (Debian: apt-get install gcc python3-dev)"
)


def built_module(root: Path = ROOT) -> Path:
    """Where the compiled protector of this Python is (or will be)."""
    return root / SOURCE.with_suffix(sysconfig.get_config_var("EXT_SUFFIX"))


def build(root: Path = ROOT, *, quiet: bool = True) -> Path:
    """Cythonize and compile the protector next to its source; return the module's path."""
    from Cython.Build import cythonize  # noqa: PLC0415 - a clear message when missing
    from setuptools import Extension, setup  # noqa: PLC0415

    os.chdir(root)  # setuptools builds in place relative to the working directory
    with tempfile.TemporaryDirectory(prefix="build-protector-") as tmp:
        extension = Extension(MODULE, [str(SOURCE)], extra_compile_args=["-O2", "-g0"])
        modules = cythonize([extension], build_dir=tmp, quiet=quiet, language_level=3)
        arguments = ["build_ext", "--inplace", "--build-temp", tmp, "--build-lib", tmp]
        setup(
            name=MODULE,
            ext_modules=modules,
            packages=[],  # only the extension: no discovery of the project's folders
            py_modules=[],
            script_args=["--quiet", *arguments] if quiet else arguments,
        )
    module = built_module(root)
    if not module.is_file():
        raise RuntimeError(f"the build ended without {module}")
    return module


def main() -> int:
    """Build, then print the module's path; on a missing tool, say what to install."""
    try:
        module = build(quiet="-v" not in sys.argv[1:])
    except ImportError as exc:
        sys.stderr.write(f"build_protector: {exc.name or exc} is missing: {INSTALL_HINT}\n")
        return 1
    except (SystemExit, Exception) as exc:  # noqa: BLE001 - setuptools exits on compiler errors
        sys.stderr.write(f"build_protector: the build failed ({exc}): {INSTALL_HINT}\n")
        return 1
    sys.stdout.write(f"{module.relative_to(ROOT)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
