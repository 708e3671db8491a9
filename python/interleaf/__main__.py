"""``python -m interleaf`` is the ``interleaf`` command."""


from interleaf.cli import entry

if __name__ == "__main__":
    entry()
