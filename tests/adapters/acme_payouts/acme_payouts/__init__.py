"""ACME Payouts' adapter for lnchaos (docs/adapters.md)."""
