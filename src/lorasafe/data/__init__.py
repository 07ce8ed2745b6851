"""Data: records with stable ids, JSONL I/O, chat rendering, think/answer splitting, suites."""
