"""Exporting a checkpoint through the exporter plugins (``runner.export_checkpoint``); imports no engine module."""
