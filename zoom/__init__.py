"""Powers-of-Ten zoom stacks."""
