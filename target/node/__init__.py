"""The Lightning node mock: invoices, a simulated network with faults, and the truth of payments."""
