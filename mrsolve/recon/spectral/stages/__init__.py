"""Stages of the spectral reconstruction, each with its configuration dataclass."""
