"""The method's math: ranking consistency between reward tables, and preference pairs."""
