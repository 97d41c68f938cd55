"""Fakes of the third-party services lockbridge talks to, speaking their real wire formats."""
