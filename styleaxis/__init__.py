"""styleaxis: separate style and content similarity spaces for a short-video catalogue."""
__version__ = "0.1.0"
