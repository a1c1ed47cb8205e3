"""asiou-bridge: sync the ASIOU school journal to the regional e-diary portal."""

__version__ = "0.1.0"
