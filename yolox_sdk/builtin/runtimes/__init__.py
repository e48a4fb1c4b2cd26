"""runtimes: what runs a model file for predict, eval and benchmark."""
