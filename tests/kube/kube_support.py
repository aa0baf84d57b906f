"""Helpers shared by the Kubernetes API emulator tests."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
HAVE_KUBECTL = Path(KUBECTL).exists()
NO_KUBECTL = "kubectl is not installed (expected at /usr/bin/kubectl or on PATH)"

# A small CRD with what the emulator has to get right: printer columns (incl. a filter
# expression and a date), a status subresource, defaults, an enum, a CEL rule, short names and
# a category.
WIDGET_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.sozu.io"},
    "spec": {
        "group": "example.sozu.io",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget",
                  "shortNames": ["wd"], "categories": ["sozu-test"]},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "subresources": {"status": {}},
            "additionalPrinterColumns": [
                {"name": "Color", "type": "string", "jsonPath": ".spec.color"},
                {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                {"name": "Ready", "type": "string",
                 "jsonPath": '.status.conditions[?(@.type=="Ready")].status'},
                {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
            ],
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["color"],
                        "x-kubernetes-validations": [{
                            "rule": "!has(self.size) || self.size <= 10 || self.color == 'red'",
                            "message": "only red widgets may be bigger than 10",
                        }],
                        "properties": {
                            "color": {"type": "string", "enum": ["red", "green", "blue"]},
                            "size": {"type": "integer", "minimum": 1, "default": 1},
                            "tags": {"type": "array", "items": {"type": "string"},
                                     "x-kubernetes-list-type": "set"},
                        },
                    },
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                },
            }},
        }],
    },
}
WIDGETS = "/apis/example.sozu.io/v1/namespaces/default/widgets"


def widget(name: str, color: str = "green", size: int | None = 3,
           labels: dict[str, str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"color": color}
    if size is not None:
        spec["size"] = size
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "example.sozu.io/v1", "kind": "Widget", "metadata": meta,
            "spec": spec}


@dataclass
class Result:
    code: int
    out: str
    err: str


class Kubectl:
    """The real kubectl, run without blocking the loop the emulator serves on."""

    def __init__(self, kubeconfig: Path, cache: Path) -> None:
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
        self.cache = cache

    async def __call__(self, *args: str, stdin: str | None = None,
                       check: bool = True) -> Result:
        process = await asyncio.create_subprocess_exec(
            KUBECTL, f"--cache-dir={self.cache}", *args, env=self.env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(
            process.communicate(stdin.encode() if stdin is not None else None), timeout=30)
        result = Result(process.returncode or 0, out.decode(), err.decode())
        if check and result.code != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({result.code}): "
                                 f"{result.err}{result.out}")
        return result

    async def apply(self, *documents: dict[str, Any], check: bool = True) -> Result:
        return await self("apply", "-f", "-", stdin=yaml.safe_dump_all(documents), check=check)
