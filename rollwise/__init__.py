"""rollwise: learning from rollouts.

The public API is small on purpose; heavy pieces (transformers, optional engines) are imported by the
subpackages that need them, never here. Importing ``rollwise`` never imports ray, vllm or verl.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
