"""The shared contract: canonical tables and the datafix file model."""
