"""The offline side: from a folder of pictures to a searchable index. No web framework here.

- ``scan``: which files are pictures; ``formats``: which image formats are accepted.
- ``embedding``: pixels to unit descriptors; ``builder``: incremental, resumable builds.
- ``generations``: the published index (features, paths, manifest), switched atomically.
- ``ids``: every picture's public id; ``vector_index``: the search backends (NumPy, FAISS, Milvus).
- ``fetch`` and ``download``: pictures from URLs; ``demo``: the demo gallery; ``evaluate``: retrieval metrics.
"""
