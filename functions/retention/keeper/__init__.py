"""The retention function: every stage bucket's lifecycle true to policy, every expired version deleted, prod kept permanent."""
