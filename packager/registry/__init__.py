"""The registry: a store of published builds, channel pointers and TUF metadata.

Layout (the same on a local folder and on S3)::

    artifacts/sha256/<hex>                          immutable, content-addressed
    models/<model>/versions/<version>.json          immutable: the variants of one build
    models/<model>/channels/<channel>.json          mutable pointer (the latest, for readers)
    models/<model>/channels/<sha256>.<channel>.json immutable copy of each pointer (what TUF signs)
    tuf/root.json, tuf/<n>.root.json, tuf/<n>.targets.json, tuf/<n>.snapshot.json, tuf/timestamp.json
"""
