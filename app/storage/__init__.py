"""The web app's database: tables (``models``), the gallery table kept in step with the index, and history."""
