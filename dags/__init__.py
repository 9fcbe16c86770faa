"""DAG files shipped with causalscene (package data, read through ``importlib.resources``)."""
