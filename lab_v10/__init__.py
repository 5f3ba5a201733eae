"""HRM Dual-Book Trading Lab."""
