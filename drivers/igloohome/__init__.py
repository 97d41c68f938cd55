"""Igloohome locks through the iglooaccess cloud API (algoPINs and bridge jobs)."""
