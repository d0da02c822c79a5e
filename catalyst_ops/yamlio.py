"""YAML reading through libyaml (CSafeLoader) where PyYAML was built with it: the config and the
profile are read by every run, and the pure-Python loader costs several times more CPU."""

from __future__ import annotations


def safe_load(text):
    """yaml.safe_load, on libyaml when available (same constructor, same errors: yaml.YAMLError)."""
    import yaml

    return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
