"""The error every configuration step raises, so `python -m gateway` can report it in one line."""


class ConfigError(ValueError):
    """The descriptor set or the settings cannot make a valid Envoy configuration."""
