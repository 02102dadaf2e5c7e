"""The Amrutam operator: ``kopf run -m amrutam_operator``.

Importing the package registers every handler with kopf.
"""

from amrutam_operator import audit_partitions, lifecycle, scaling  # noqa: F401
