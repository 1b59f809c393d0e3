"""What the product does, in plain Python with no web framework: the engine (model and index), search,
segmentation, gallery changes. Errors are ``services.errors``; ``app.errors`` turns them into HTTP."""
