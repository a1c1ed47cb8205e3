"""The ``asiou-bridge`` command: argument parsing, the commands, and every word printed for
people (``render``). The top layer: it may import anything but the reference portal's
internals, and nothing imports it.
"""
