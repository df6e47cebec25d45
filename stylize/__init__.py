"""styleaxis.stylize: the stylisation methods behind the style spaces, and their training."""
