"""The built-in targets, one module (or package) each: `cpu`, `gemmini`. They are registered by name
in ``pyproject.toml`` (entry points ``exo_egraph.targets``); nothing else names them."""
