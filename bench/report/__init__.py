"""Tables, figures, claims and the Markdown report, rendered from stored results only (no training; no
torch and no method code is imported here).

Entry points (every one takes the results and plots directories as parameters):

* ``tables.write_tables(results_dir, dataset=None, formats="all", accuracy="final", ...)``
* ``figures.write_figures(results_dir, plots_dir, dataset=None, accuracy="final", sparsity=None, ...)``
* ``claims_render.write_claims(results_dir, plots_dir, dataset=None, known=NAMES, accuracy="final", ...)``
  (``known``: the method names in the harness, which the caller takes from the registry)
* ``report.write_report(results_dir, plots_dir, out=None, known=NAMES, ...)``
* ``cli.register(subparsers, method_names)`` adds ``table``, ``plot``, ``claims`` and ``report`` to
  ``python -m bench``.

Modules, by concern: records to numbers (``aggregate``; the phase groups are ``bench/phases.py``),
statistics (``stats``), formatting (``format``, ``style``), tables (``accuracy_table``,
``latency_table``, ``tables``), published numbers (``references``), claims (``claims_file``: the
file; ``claims``: pairing and verdicts; ``claims_render``: tables and forest plot), figures
(``plotting``: the shared helpers; ``figures``, ``accuracy_figure``, ``rounds``), the page
(``report``) and the commands (``cli``).

Accuracy is the final epoch's by default; ``accuracy="best"`` (the maximum over the epochs, i.e. an
epoch selected on the test set: optimistic) is available and always named as such. See docs/reporting.md.
"""
