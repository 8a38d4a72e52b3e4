"""Shipped presets (TOML). Read-only: nothing writes here at run time."""
