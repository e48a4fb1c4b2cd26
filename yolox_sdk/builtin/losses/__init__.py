"""Built-in loss terms (``register_loss_terms``)."""
