"""Market-data providers behind one interface (see base.py): simulated, files, Alpaca."""
