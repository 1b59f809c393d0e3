"""The offline half of the product: scanning image folders, embedding them, and the index files."""
