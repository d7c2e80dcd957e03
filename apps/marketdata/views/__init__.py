"""Market data pages: the Markets page (markets.py), bar imports (imports.py), data quality (quality.py)."""
