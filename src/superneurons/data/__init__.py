"""Sample records, loading, validation and balancing; one module per published dataset."""

from superneurons.data.samples import (
    NO,
    YES,
    Sample,
    balanced_sample,
    load_samples,
    parse_label,
    validate_samples,
    write_samples,
)

__all__ = ["NO", "YES", "Sample", "balanced_sample", "load_samples", "parse_label", "validate_samples",
           "write_samples"]
