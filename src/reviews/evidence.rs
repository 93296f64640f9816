//! The evidence record's exports: CSV, JSON and a self-contained HTML report.
