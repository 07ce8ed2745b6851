"""Reports: the results table, the Markdown report and the safety-vs-reasoning plot."""
