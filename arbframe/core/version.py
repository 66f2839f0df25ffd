"""The kernel's version: one place, read by the package, the CLI and the build-info metric."""

__version__ = "0.1.0"
