"""AI Bridge: a self-hosted gateway between developers' AI tools and LLM providers."""

__version__ = "0.1.0"
