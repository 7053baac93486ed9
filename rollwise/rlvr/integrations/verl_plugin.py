"""Importing this module registers rollwise into verl (``register_with_verl``).

For every process verl starts (driver and Ray workers): ``VERL_USE_EXTERNAL_MODULES=
rollwise.rlvr.integrations.verl_plugin`` (tested in a fresh process).
"""

from rollwise.rlvr.integrations.verl import register_with_verl

register_with_verl()
