"""oddsbatch: batched ingestion of The Odds API v4 snapshots from GCS into BigQuery.

Both Cloud Functions vendor this package. Importing it must stay cheap: the ignore path
of a function (an object outside its prefix) must not pull in the BigQuery or Firestore
clients, so submodules import Google clients lazily.
"""

__version__ = "0.1.0"
