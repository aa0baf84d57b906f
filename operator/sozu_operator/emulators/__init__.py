"""Stand-ins for the systems the operator talks to, for tests and local end-to-end runs."""

from sozu_operator.emulators.sozu import BootReport, SozuEmulator, run_emulator, serve

__all__ = ["BootReport", "SozuEmulator", "run_emulator", "serve"]
