"""Fakes of the ports for tests and benchmarks: an in-memory source and state store, and the
reference portal's rules in memory without HTTP. Nothing in the running service imports it.
"""
