"""Reports: the results table, the Markdown report and the refusal-vs-reasoning plot."""
