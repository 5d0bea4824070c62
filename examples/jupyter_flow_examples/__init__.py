"""Example model services, models, sample documents and the clause corpus used by the
notebooks and tests (``services``, ``models``, ``samples``, ``corpus``).

Not part of the core API: nothing in the core package imports from here.
"""
