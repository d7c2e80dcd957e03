"""Portfolio pages, one module per page family; each exposes ``urls`` (mounted by ``apps.portfolios.urls``)."""
