"""lmbuild: a declarative build system for language models.

The library behind the DVC pipeline in dvc.yaml: every stage script in stages/ is a thin
wrapper that validates its params and calls into these modules.
"""

__version__ = "0.1.0"
