"""Package discovery only; all metadata is in pyproject.toml.

The role folders sit at the top of the repository (``train/``, ``convert/``,
``edge_runtime/``, ``hil_tests/``, ``boards/``) and install under one distinctive
namespace, ``ppg_edge.<role>``, so nothing called plainly ``train`` or
``convert`` lands in site-packages.
"""
from setuptools import find_packages, setup

ROLE_FOLDERS = ("train", "convert", "edge_runtime", "hil_tests", "boards")

packages = find_packages(include=["ppg_edge", "ppg_edge.*"])
package_dir = {"ppg_edge": "ppg_edge"}
for folder in ROLE_FOLDERS:
    name = f"ppg_edge.{folder}"
    package_dir[name] = folder
    packages.append(name)
    packages.extend(f"{name}.{sub}" for sub in find_packages(where=folder))

setup(packages=packages, package_dir=package_dir)
