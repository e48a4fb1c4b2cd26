"""Built-in loss terms (``register_losses``)."""
