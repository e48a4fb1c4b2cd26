"""Finding weights and datasets: local paths, offline mirrors (``$YOLOX_SDK_ASSETS``), the cache, downloads."""
