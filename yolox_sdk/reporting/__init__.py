"""A run's report: training curves in ``<run>/plots/`` and one self-contained ``report.html``.

``run_report.report(run_dir)`` (``yolox_sdk.report``, ``yolox-sdk report RUN_DIR``) rebuilds both from the
run directory's files; ``yolox-sdk run`` calls it at its end.
"""
