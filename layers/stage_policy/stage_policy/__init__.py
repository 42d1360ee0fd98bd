"""stage_policy: the Stagewarden stage policy model, shared by every function and the CLI.

Import what you need from the submodules (``stage_policy.model``, ``.loader``,
``.mapping``, ``.findings``, ``.publish``); this package root stays import-light.
"""

__all__ = ["__version__"]
__version__ = "0.1.0"
