"""/fhir/R4: a FHIR R4 read and search facade over the platform's own data.

It reads through the same use cases and access rules as ``/v1`` (the same services,
guards, caches and audit rows) and only changes the shape: ``resources`` maps the core's
records to FHIR resources, ``search`` reads FHIR search parameters, ``outcome`` turns
every error into an ``OperationOutcome`` and ``routes`` serves them, with a
``CapabilityStatement`` built from what is routed.
"""
