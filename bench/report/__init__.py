"""Tables, figures and the Markdown report, rendered from stored results only (no training).

Entry points (every one takes the results and plots directories as parameters):

* ``tables.write_tables(results_dir, dataset=None, formats="all", accuracy="final", ...)``
* ``figures.write_figures(results_dir, plots_dir, dataset=None, accuracy="final", sparsity=None, ...)``
* ``claims.write_claims(results_dir, plots_dir, dataset=None, accuracy="final", claims_path=None, ...)``
* ``report.write_report(results_dir, plots_dir, out=None, ...)``
* ``cli.register(subparsers)`` adds ``table``, ``plot``, ``claims`` and ``report`` to ``python -m bench``.

Modules: ``aggregate`` (which runs count, means, phase groups and times), ``format`` (number
formatting, dialects, Markdown/booktabs/CSV primitives), ``accuracy_table``, ``latency_table``,
``tables`` (per-dataset files; re-exports the table API), ``figures``, ``accuracy_figure``, ``claims`` (the paper's claims
tested on paired runs), ``report``, ``references``,
``style``, ``cli``.

Accuracy is the final epoch's by default; ``accuracy="best"`` (the maximum over the epochs, i.e. an
epoch selected on the test set: optimistic) is available and always named as such. See docs/reporting.md.
"""
