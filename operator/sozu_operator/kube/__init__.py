"""The Kubernetes edge: kopf wiring, the reconcile loop, status, Events, metrics."""
