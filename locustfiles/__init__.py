"""The Locust suite of lnchaos; the entry point is locustfiles/lnchaos_suite.py."""
