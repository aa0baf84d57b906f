"""`sozu-operator run`: arguments → operator configuration → the kopf-based operator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket

from sozu_operator.kube.operator import Endpoints, run_operator
from sozu_operator.kube.reconciler import OperatorConfig
from sozu_operator.reconcile import ownership


def config_from_args(args: argparse.Namespace) -> OperatorConfig:
    ownership.check_owner(args.owner)
    if not 0.0 <= args.max_removal_share <= 1.0:
        raise ValueError(f"--max-removal-share {args.max_removal_share} is not within 0..1")
    return OperatorConfig(
        socket=args.socket,
        pod_name=args.pod_name or os.environ.get("POD_NAME") or socket.gethostname(),
        sozu_version=args.sozu_version,
        owner=args.owner,
        class_name=args.class_name,
        default_class=args.default_class,
        resync=args.resync,
        debounce=args.debounce,
        restart_check=args.restart_check,
        timeout=args.timeout,
        max_removal_share=args.max_removal_share,
        connections=args.connections,
    )


def run_operator_command(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = config_from_args(args)
    except ValueError as error:
        print(f"error: {error}")
        return 1
    namespaces = args.namespace or [os.environ.get("POD_NAMESPACE") or "default"]
    endpoints = Endpoints(
        health_port=args.health_port or None, metrics_port=args.metrics_port or None
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            run_operator(
                config, namespaces=namespaces, clusterwide=args.all_namespaces,
                endpoints=endpoints,
            )
        )
    return 0
