"""Built-in discrete samplers (importing this module registers them)."""
