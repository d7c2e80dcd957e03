"""Portfolio API, one module per area; each exposes ``urls`` (mounted by ``apps.portfolios.api_urls``)."""
