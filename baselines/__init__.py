"""Methods from other papers. A module here that defines ``NAME`` is a method (bench/registry.py);
``selfdistill_rows.py`` registers the nine self-distillation rows from one table; ``pai.py`` and
``selfdistill.py`` are helper libraries (no ``NAME``: they register config sections, not methods)."""
