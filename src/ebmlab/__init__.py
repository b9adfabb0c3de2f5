"""ebmlab: energy-based models with MCMC and amortized samplers."""
