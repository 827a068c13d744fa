"""Adapters to the outside world: exchanges (ccxt), OTC desk, bank rail, email."""
