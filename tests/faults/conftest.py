"""The fault scenarios run on the end-to-end fixtures: an API emulator, Sōzu emulators and
operators, torn down in the right order (see tests/e2e/conftest.py)."""

from tests.e2e.conftest import (
    api,
    crds,
    kube,
    kubeconfig,
    sozu,
    start_operator,
    start_sozu,
    workdir,
)

__all__ = ["api", "crds", "kube", "kubeconfig", "sozu", "start_operator", "start_sozu",
           "workdir"]
