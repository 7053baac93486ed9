"""Typed dataclass configs, TOML loading, dotted ``--set a.b=c`` overrides and validation.

Every error names the key, the value and the valid choices.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration is invalid: unknown key, wrong type, bad value or an illegal combination."""
