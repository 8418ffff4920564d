"""labelplan: turn a written sampling plan into the order in which Label Studio serves work.

The pipeline is the layout: ``snapshot -> plan -> queue -> Label Studio`` and
``annotations -> ledger -> metrics -> report``. Only :mod:`labelplan.labelstudio` talks to
Label Studio; only the store talks to the database; everything else is pure.
"""

__version__ = "0.1.0"
