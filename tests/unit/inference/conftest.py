from ..models.conftest import _few_threads, tiny_dataset  # noqa: F401  (shared fixtures)
