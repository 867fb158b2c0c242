"""What operators watch all day: Prometheus metrics computed from the evidence store, the
alerting rules mirroring the criteria, and the Grafana dashboard over them. No Dagster here."""
