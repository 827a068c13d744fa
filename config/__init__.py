"""Configuration: one settings class for every process of the broker."""

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
