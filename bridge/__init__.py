"""asiou-bridge: sync the ASIOU school journal to the regional e-diary portal."""

from importlib import metadata

try:
    __version__ = metadata.version("asiou-bridge")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
"""The installed release (the package's metadata: one version, written once, in pyproject)."""
