"""Evaluation: metrics of generated CTs against their masks, reports and real CTs, and the report page."""
