"""Tests that compare pgolf with the records' own code, imported at run time from ../shared/reference."""
