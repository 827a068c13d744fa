"""Sanctions and PEP screening: list loaders, name matching, bands, dismissals, re-screening, wallets.

Domain code only (no Temporal, no HTTP). Activities and routes call `services.screening.service`.
"""
