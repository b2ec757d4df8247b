"""Plugin hooks of the text plugin (entry point polydiff: text)."""
