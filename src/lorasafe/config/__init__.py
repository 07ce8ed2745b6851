"""Typed experiment configs: the schema and the YAML loader with dotted overrides."""
