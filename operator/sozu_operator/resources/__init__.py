"""The operator's Kubernetes resources: SozuCluster, SozuFrontend and SozuCertificate.

`schema` is the single source of truth for their shape (the CRDs in `crds/` are generated from
it), `models` holds the parsed, typed specs, `validate` turns raw objects into those models or
into field errors, and `loader` reads them from YAML files for the CLI.
"""
