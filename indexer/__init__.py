"""The offline side: from a folder of pictures to a searchable index. No web framework here.

- ``scan``: which files are pictures; ``formats``: which image formats are accepted.
- ``embedding``: pixels to unit embeddings, as the weights' descriptor (the recipe) says.
- ``plan``: what a build or a change has to do (hashes, id collisions, duplicates, file facts); ``options``:
  how it runs; ``builder``: incremental, resumable builds (plan, embed, publish); ``changes``: the same on the
  files named, appended as a segment.
- ``generations``: the published index (embeddings, paths, manifest), switched atomically.
- ``ids``: every picture's public id; ``vector_index``: the search backends (NumPy, FAISS, Milvus).
- ``fetch`` and ``download``: pictures from URLs; ``demo``: the demo gallery; ``evaluate``: retrieval metrics.
"""
