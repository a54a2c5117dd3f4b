"""A stateful GitHub REST API on 127.0.0.1 for PyGithub to talk to, with fault injection."""

from .server import Emulator, Fault

__all__ = ["Emulator", "Fault"]
