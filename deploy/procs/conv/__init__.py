"""Conv: a weight-shared projection with exactly the arithmetic of our Dense (weight exponent, graded messages)."""
