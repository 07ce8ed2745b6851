"""Judges: the Judge protocol, its Verdict, and the registry of judges."""
