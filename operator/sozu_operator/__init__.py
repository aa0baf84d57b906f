"""sozu-operator: programs Sōzu reverse proxies from Kubernetes resources or YAML files."""

__version__ = "0.1.0"
