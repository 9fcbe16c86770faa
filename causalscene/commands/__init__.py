"""CLI verbs. Every module here defines ``register(subparsers)``; ``cli.py`` discovers them."""
