"""The Amrutam operator: ``kopf run -m amrutam_operator``.

Importing the package registers every handler with kopf.
"""

from amrutam_operator import (  # noqa: F401
    audit_partitions,
    backups,
    forgetting,
    lifecycle,
    restores,
    scaling,
)
