"""``ppg-edge deploy``: bundle a release, push it over ssh, switch atomically, smoke-check, roll back.

Standard library only (the smoke check, run on the device, adds numpy and the
TFLite interpreter), so this package installs with the core.
"""
from .bundle import Bundle, build_bundle, release_name, systemd_unit
from .deployer import Deployer, DeployReport
from .remote import DeployError, DryRunner, HostKeyError, Result, SSHRunner

__all__ = ["Bundle", "build_bundle", "release_name", "systemd_unit", "Deployer", "DeployReport",
           "DeployError", "DryRunner", "HostKeyError", "Result", "SSHRunner"]
