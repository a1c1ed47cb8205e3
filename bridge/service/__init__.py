"""The service: the engine (plan, guard, deliver, record), the run history and the one-run
lock, the daemon and its schedule, metrics, systemd notification, configuration, and what the
admin commands find out.

The service may import the core, the ports and the adapters; never the CLI.
"""
