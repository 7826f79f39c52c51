"""The methods of this project (ours and controls); ``baselines`` holds those of other papers.

A module here that defines ``NAME`` is a method; bench/registry.py finds and registers it (and
says what a method defines). Adding a method is adding a file, or passing ``--plugin FILE``; see
docs/adding-a-method.md.
"""
