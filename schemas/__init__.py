"""JSON Schemas (2020-12) for qna.yaml leaves, one folder per format version.

Installed as the ``sprout_schemas`` package so that a wheel carries them too.
"""

from importlib.resources import files


def schema_dir():
    return files(__name__)
