"""The branch directory: sources (CNAPS sample, gazetteer, synthetic) and loading them into PostgreSQL."""
