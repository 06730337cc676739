"""The OCI Distribution API, one module per resource (as CNCF Distribution's handlers/)."""
