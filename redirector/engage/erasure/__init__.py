"""Forgetting a recipient (engage forget) and what privacy settings mask before storage."""
