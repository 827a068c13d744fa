"""AML transaction monitoring (issue 16): rules as versioned data, features from SQL window aggregates,
evaluation to an outcome, and the alerts and cases it raises. Cases, SARs and freezes build on these
(services/aml/cases*.py, sar*.py, freeze*.py)."""
